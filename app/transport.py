"""The worker's Kafka transport: Faust's aiokafka driver, reading its inputs committed.

Faust picks the consumer's isolation level itself: ``read_committed`` only under
``processing_guarantee="exactly_once"``, ``read_uncommitted`` otherwise
(faust/transport/drivers/aiokafka.py ``_create_worker_consumer``), and no setting changes it.
With ``read_uncommitted``, records of an upstream transaction that was aborted are delivered and
indexed. Faust's app takes a transport of one's own (the ``App.transport`` setter), and aiokafka
reads the level only when ``start()`` builds its fetcher (aiokafka/consumer/consumer.py
``AIOKafkaConsumer.start``), so the consumer Faust creates gets it before it starts.

One consumer reads the input topics and the changelogs alike, so the changelogs are read
committed too. streamvec writes them without transactions (agents/producer.py), so their last
stable offset is their end, and nothing changes there.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as driver

READ_COMMITTED = "read_committed"


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = READ_COMMITTED  # noqa: SLF001 — see the module docstring
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


def read_committed(app: faust.App) -> None:
    """Make ``app``'s worker consumer read committed; call it before anything uses ``app.transport``."""
    app.transport = _Transport(app.conf.broker_consumer, app)
