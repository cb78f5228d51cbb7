"""Local brokers for tests, CI and demos: Apache Kafka 4.x from Maven jars, and in-memory Tansu.

Both are started as child processes on a loopback port and returned as a
:class:`BrokerHandle` whose ``url`` is a Kafka bootstrap address. Production uses any
Kafka >= 3 and none of this.
"""

from app.brokers.kafka import start_kafka
from app.brokers.process import BrokerError, BrokerHandle
from app.brokers.tansu import start_tansu

__all__ = ["BrokerError", "BrokerHandle", "start_kafka", "start_tansu"]
