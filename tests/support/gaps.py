"""Input partitions with offsets that never come as records: produce in transactions (some
aborted), compact a topic for real, delete records; and read the progress records back.

A transaction's commit or abort marker takes an offset, an aborted record is never delivered to
a ``read_committed`` consumer, and compaction and ``delete_records`` remove offsets: ingest must
pass them all (index/records/progress.py ``Progress.settle``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from app.topics import bootstrap
from index.records import progress
from tests.support.kafka import read_topic

Record = tuple[bytes | None, bytes | None]
Transaction = tuple[Sequence[Record], bool]  # its records, and whether it commits (else it aborts)


def send_transactions(broker: str, topic: str, transactions: Sequence[Transaction]) -> dict[int, int]:
    """Produce each transaction with one transactional producer, committing or aborting it; returns
    each partition's last committed record offset (what a client would pass as ``after``)."""
    async def run() -> dict[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), transactional_id=f"test-{uuid.uuid4()}",
                                    enable_idempotence=True, acks="all", linger_ms=5)
        await producer.start()
        last: dict[int, int] = {}
        try:
            for records, commits in transactions:
                await producer.begin_transaction()
                sent = [await producer.send(topic, key=key, value=value) for key, value in records]
                acks = await asyncio.gather(*sent)
                if commits:
                    await producer.commit_transaction()
                    for ack in acks:
                        last[ack.partition] = max(last.get(ack.partition, -1), ack.offset)
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()
        return last
    return asyncio.run(run())


def delete_records(broker: str, topic: str, before: Mapping[int, int]) -> None:
    """Delete every record of each partition below its offset in ``before`` (Kafka's ``delete-records``)."""
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, p): RecordsToDelete(offset) for p, offset in before.items()},
                                       timeout_ms=10_000)
        finally:
            await admin.close()
    asyncio.run(run())


def held_records(broker: str, topic: str) -> dict[int, list[int]]:
    """The offsets of each partition that still hold a record (compaction and deletion remove some)."""
    held: dict[int, list[int]] = {}
    for record in read_topic(broker, topic):
        held.setdefault(record.partition, []).append(record.offset)
    return held


def progress_records(broker: str, app_id: str) -> dict[int, bytes]:
    """Each vectors partition's last progress record, as the changelog holds it."""
    found: dict[int, bytes] = {}
    for record in read_topic(broker, f"{app_id}-vectors-changelog"):
        if record.key == progress.KEY and record.value is not None:
            found[record.partition] = record.value
    return found


def report_progress(broker: str, app_id: str, case: str) -> dict[int, bytes]:
    """Print each partition's progress record size in bytes; returns the records."""
    found = progress_records(broker, app_id)
    sizes = ", ".join(f"partition {p}: {len(value)} B" for p, value in sorted(found.items()))
    print(f"\n{case}: progress records {sizes}")
    return found
