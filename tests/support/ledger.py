"""A ledger of what a test produced and what must show, a feed that produces while things break,
and the checks that the workers hold exactly that.

The fault cases (tests/faults/) and the integration tests of partition moves and snapshots end
with the same checks:

* the outcome counts reconcile: produced (the events topic's end offsets) = indexed + deleted +
  stale + unchanged + dead_lettered, and dead_lettered = the invalid events produced;
* every id shows its last version, deleted ids are absent (``POST /documents/batch``), and the
  index agrees: a live document's own vector finds it first, a deleted one's never finds it;
* no search answer holds an id twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from app.topics import bootstrap
from tests.support import kafka
from tests.support.group import DIM
from tests.support.workers import Worker, http, wait_for

PARTITIONS = 8
Record = tuple[bytes | None, bytes | None]


# ---- what was produced, and what must show ---------------------------------------------

@dataclass
class Expected:
    version: int | None
    live: bool
    vector_version: int | None  # the version of the last upserted vector (also for a document deleted since)


class Ledger:
    """The events a case produces, and the state the group must end in."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.expect: dict[str, Expected] = {}
        self.invalid = 0  # records that must end as dead letters
        self._versions: dict[str, int] = {}

    def vector_events(self, ids: Sequence[str], count: int, delete_share: float = 0.1) -> list[Record]:
        """``count`` upserts and deletes over ``ids`` with rising versions: the last event of an id
        decides its state, however often any of them is delivered."""
        records: list[Record] = []
        for _ in range(count):
            doc_id = self.rng.choice(ids)
            version = self._versions[doc_id] = self._versions.get(doc_id, 0) + 1
            previous = self.expect.get(doc_id)
            if previous is not None and previous.live and self.rng.random() < delete_share:
                records.append(_keyed(doc_id, {"id": doc_id, "op": "delete", "version": version}))
                self.expect[doc_id] = Expected(version, False, previous.vector_version)
                continue
            records.append(_keyed(doc_id, {"id": doc_id, "vector": vector_for(doc_id, version), "version": version,
                                           "metadata": {"v": version}}))
            self.expect[doc_id] = Expected(version, True, version)
        return records

    def upserts(self, ids: Sequence[str]) -> list[Record]:
        """One upsert per id (a bulk load)."""
        records = []
        for doc_id in ids:
            version = self._versions[doc_id] = self._versions.get(doc_id, 0) + 1
            records.append(_keyed(doc_id, {"id": doc_id, "vector": vector_for(doc_id, version), "version": version}))
            self.expect[doc_id] = Expected(version, True, version)
        return records

    def text_events(self, texts: Sequence[tuple[str, str]]) -> list[Record]:
        """Text upserts without versions, embedded by the workers' model."""
        for doc_id, _ in texts:
            self.expect[doc_id] = Expected(None, True, None)
        return [_keyed(doc_id, {"id": doc_id, "text": text}) for doc_id, text in texts]

    def invalid_record(self, record: Record) -> Record:
        self.invalid += 1
        return record

    def live(self) -> dict[str, Expected]:
        return {doc_id: e for doc_id, e in self.expect.items() if e.live}

    def vector(self, doc_id: str) -> list[float]:
        """The last vector upserted for ``doc_id``, computed again (100k kept as Python lists
        would hold over a gigabyte)."""
        version = self.expect[doc_id].vector_version
        assert version is not None, f"{doc_id} never had a vector"
        return vector_for(doc_id, version)


def vector_for(doc_id: str, version: int) -> list[float]:
    """A vector of its own for each (id, version): two never collide by chance."""
    rng = np.random.default_rng([zlib.crc32(doc_id.encode()), version])
    vector = rng.normal(size=DIM)
    return [round(float(x), 6) for x in vector / np.linalg.norm(vector)]


def _keyed(doc_id: str, body: dict[str, Any]) -> Record:
    return doc_id.encode(), json.dumps(body).encode()


# ---- producing while things break ------------------------------------------------------

class Feed:
    """Produces records in the background at about ``rate`` per second, in order, until all are
    acknowledged; a send that fails (the broker is down or stalled) is sent again, so the topic
    may hold a record twice: the checks count what is in the topic, not what was meant.

    ``records`` is a list, or a function giving the next ``n`` records: then the feed runs
    until :meth:`stop`, and asks for a chunk only after the last one was acknowledged, so what
    the function made (a ledger's expectations) is exactly what reached the topic."""

    def __init__(self, broker: str, topic: str, records: Sequence[Record] | Callable[[int], Sequence[Record]],
                 rate: float, retry: bool = True) -> None:
        self.broker, self.topic, self.rate, self.retry = broker, topic, rate, retry
        self._next = records if callable(records) else _chunks_of(list(records))
        self.sent = 0
        self.failures: list[str] = []
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> Feed:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End after the chunk being sent (a feed of a function runs until this)."""
        self._stopping.set()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the feed did not finish in {timeout:.0f} s ({self.sent} sent)"
        assert self.error is None, f"the feed failed: {self.error!r}"

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 — reported by wait()
            self.error = exc

    async def _produce(self) -> None:
        chunk = max(1, int(self.rate / 10))
        started = time.monotonic()
        while not self._stopping.is_set() and (batch := self._next(chunk)):
            while True:
                try:
                    await self._send(batch)
                    break
                except Exception as exc:  # the broker is hurt on purpose: send the chunk again
                    if not self.retry:
                        raise
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(1.0)
            self.sent += len(batch)
            await asyncio.sleep(max(0.0, started + self.sent / self.rate - time.monotonic()))

    async def _send(self, batch: Sequence[Record]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(self.broker), acks="all", linger_ms=5,
                                    request_timeout_ms=10_000, max_request_size=4 << 20)
        try:  # a start that fails (the broker is down on purpose) still closes the producer
            await asyncio.wait_for(producer.start(), 15)
            pending = [await producer.send(self.topic, key=key, value=value) for key, value in batch]
            await asyncio.wait_for(asyncio.gather(*pending), 20)
        finally:
            await asyncio.wait_for(producer.stop(), 15)


def _chunks_of(records: list[Record]) -> Callable[[int], list[Record]]:
    """The next ``n`` records of a list at each call; empty at the end."""
    position = 0

    def take(n: int) -> list[Record]:
        nonlocal position
        chunk = records[position:position + n]
        position += len(chunk)
        return chunk
    return take


def send_now(broker: str, topic: str, records: Sequence[Record]) -> None:
    """Produce ``records`` in order and wait for every ack (a healthy broker)."""
    feed = Feed(broker, topic, records, rate=1e9, retry=False)
    feed._run()
    assert feed.error is None, f"producing failed: {feed.error!r}"


def end_offsets(broker: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    """Each partition's end offset: the offset its next record will get."""
    return kafka.end_offsets(broker, topic, partitions)


def topic_size(broker: str, topic: str, partitions: int = PARTITIONS) -> int:
    """How many records ``topic`` holds: the sum of its partitions' end offsets."""
    return sum(end_offsets(broker, topic, partitions).values())


# ---- the checks -----------------------------------------------------------------------------

@dataclass
class Verdict:
    produced: int
    outcomes: dict[str, int]
    lost: list[str]
    resurrected: list[str]
    duplicates: int

    @property
    def sound(self) -> bool:
        return not self.lost and not self.resurrected and not self.duplicates


VERIFY_EF = 400
"""The ledger's vectors are isotropic (hnswlib's hardest case): at the default ef of 40, 3 of 200
sampled documents of 20,000 were not the first hit for their own vector in a fresh worker's graph.
That is recall, not loss; the searches that check for loss look wider."""


def verify(worker: Worker, ledger: Ledger, produced: int, sample: int = 200,
           last: Mapping[int, int] | None = None) -> Verdict:
    """The checks of the module docstring, through ``worker`` (every partition must answer).

    ``last``: each partition's last record offset, which searches ask to see; by default the one
    before its end offset (a transaction's marker takes the last offset: pass the acks' offsets)."""
    stats = worker.stats()
    assert not stats["partial"], f"partitions {stats['partitions']['missing']} did not answer"
    outcomes = stats["outcomes"]
    assert sum(outcomes.values()) == produced, \
        f"outcomes {outcomes} (sum {sum(outcomes.values())}) do not reconcile with {produced} produced"
    assert outcomes["dead_lettered"] == ledger.invalid, \
        f"{outcomes['dead_lettered']} dead letters, but {ledger.invalid} invalid events were produced"
    lost, resurrected = _check_documents(worker, ledger)
    # Outcomes count once a batch is in RocksDB; the index takes it just after (on its lanes).
    # Searches ask for every event first, the way a client reads its own writes.
    if last is None:
        ends = end_offsets(worker.env["STREAMVEC_BROKER"], f"{worker.env['STREAMVEC_APP_ID']}-events",
                           int(worker.env["STREAMVEC_PARTITIONS"]))
        last = {p: end - 1 for p, end in ends.items() if end}
    after = {str(p): offset for p, offset in last.items()}
    wait_for("the index to take every event", lambda: not worker.search(
        vector=[1.0] * DIM, k=1, after=after)["partitions"].get("behind"), timeout=60, interval=0.2)
    rng = random.Random(produced)
    live = {doc_id: e for doc_id, e in ledger.live().items() if e.vector_version is not None}
    gone = [doc_id for doc_id, e in ledger.expect.items() if not e.live and e.vector_version is not None]
    duplicates = 0
    for doc_id in rng.sample(sorted(live), min(sample, len(live))):
        ids = [hit["id"] for hit in worker.search(vector=ledger.vector(doc_id), k=20, ef=VERIFY_EF)["results"]]
        duplicates += len(ids) - len(set(ids))
        if not ids or ids[0] != doc_id:
            lost.append(f"{doc_id} (its vector finds {ids[:3]})")
    for doc_id in rng.sample(gone, min(sample, len(gone))):
        ids = [hit["id"] for hit in worker.search(vector=ledger.vector(doc_id), k=5, ef=VERIFY_EF)["results"]]
        duplicates += len(ids) - len(set(ids))
        if doc_id in ids:
            resurrected.append(f"{doc_id} (found by search)")
    return Verdict(produced, dict(outcomes), lost, resurrected, duplicates)


def _check_documents(worker: Worker, ledger: Ledger) -> tuple[list[str], list[str]]:
    ids = sorted(ledger.expect)
    lost, resurrected = [], []
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        status, answer = http("POST", worker.url + "/documents/batch", {"ids": chunk}, timeout=60)
        assert status == 200 and not answer["partial"], f"/documents/batch answered {status}: {str(answer)[:300]}"
        for doc_id, document in zip(chunk, answer["documents"], strict=True):
            expected = ledger.expect[doc_id]
            if expected.live and (document is None or document["version"] != expected.version):
                lost.append(f"{doc_id} (v{expected.version} expected, "
                            f"{'absent' if document is None else 'v' + str(document['version'])})")
            elif not expected.live and document is not None:
                resurrected.append(f"{doc_id} (deleted at v{expected.version}, shows v{document['version']})")
    return lost, resurrected


def assert_sound(verdict: Verdict, where: str) -> None:
    assert verdict.sound, (f"{where}: {len(verdict.lost)} lost {verdict.lost[:5]}, {len(verdict.resurrected)} "
                           f"resurrected {verdict.resurrected[:5]}, {verdict.duplicates} duplicate ids in results")
