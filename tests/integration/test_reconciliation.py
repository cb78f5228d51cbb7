"""Reconciliation under fuzzing: every produced event ends as exactly the outcome a model predicts.

Hypothesis generates batches of valid and invalid events over a small pool of document
ids, so updates, deletes, stale versions and identical re-sends collide. Each batch goes
through a real Kafka to two real worker processes (8 partitions). After each batch the
outcome counts of GET /stats, the stored documents and the search answers must be what a
reference model of the event contract (docs/architecture.md "Contracts", docs/events.md "Events") predicts;
at the end the dead-letter topic must hold exactly the invalid events, each with its
reason. One cluster serves every example, so the model's state carries over from batch to
batch.

Both workers are running and the consumer group is stable before the first event is
produced: a rebalance replays uncommitted events (at-least-once), which would count them
twice. The test would report that as an over-count, and it checks that no worker restarted.

The per-outcome prediction is exact: the ingest agent (agents/ingest.py) decides each
event from the stored record or, within a batch, from what earlier events of the same
batch leave, and both give the same answer as processing the events one by one in
partition order; events of one id share a partition, so their produce order is their
processing order. The prediction relies on two behaviours of the agent that the contract
leaves open, both modelled below: ``ts`` is ignored when deciding "unchanged", and a text
upsert whose text equals the stored document's keeps the stored vector (even one a
producer brought), rather than embedding the text again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.group import Group, OnGroup, new_app_id
from tests.support.kafka import RawRecord, read_topic, sample_texts, send_records
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 8
DIM = 384
MAX_TEXT_CHARS = 100_000  # STREAMVEC_MAX_TEXT_CHARS's default: longer texts are cut, not refused
EXAMPLES = 8
MIN_EVENTS = 2000
POOL = tuple(f"doc-{n:03d}" for n in range(90)) + ("文書-7", "naïve café", "with space", "emoji-🙂")
GLOSSES = tuple(doc["text"] for doc in sample_texts(200))
METADATA: tuple[dict[str, Any], ...] = (
    {}, {"color": "red"}, {"color": "blue", "n": 1}, {"tags": ["a", "b"], "nested": {"x": 1.5}},
    {"note": "naïve ☕", "n": None},
)
FILLER = "and then it goes on " * 6_000  # makes a text of over 120,000 characters: cut to 100,000
RESTART_KEYS = ("pid", "started")
OUTCOMES = ("indexed", "deleted", "stale", "unchanged", "dead_lettered")  # the contract's names


# ---- events and the reference model ---------------------------------------------------

@dataclass(frozen=True)
class Upsert:
    id: str
    text: str | None = None
    vector_seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    ts: float | None = None

    def record(self) -> RawRecord:
        body: dict[str, Any] = {"id": self.id}
        if self.text is not None:
            body["text"] = self.text
        if self.vector_seed is not None:
            body["vector"] = vector_for(self.id, self.vector_seed)
        if self.metadata:
            body["metadata"] = self.metadata
        if self.version is not None:
            body["version"] = self.version
        if self.ts is not None:
            body["ts"] = self.ts
        return self.id.encode(), _json(body)


@dataclass(frozen=True)
class Delete:
    id: str
    version: int | None = None
    tombstone: bool = False  # a null value: the contract's other way to delete

    def record(self) -> RawRecord:
        if self.tombstone:
            return self.id.encode(), None
        body: dict[str, Any] = {"id": self.id, "op": "delete"}
        if self.version is not None:
            body["version"] = self.version
        return self.id.encode(), _json(body)


Event = Upsert | Delete


@dataclass(frozen=True)
class Doc:
    """A document as the model stores it; ``look`` names its vector: equal looks, equal vectors."""

    live: bool
    version: int | None
    text: str | None = None  # as kept: cut to MAX_TEXT_CHARS
    metadata: dict[str, Any] = field(default_factory=dict)
    look: tuple[Any, ...] = ()


class Model:
    """The event contract applied to one event at a time, in produce order."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.last_upsert: dict[str, Upsert] = {}  # what a producer re-sending a document would send

    def apply(self, event: Event) -> str:
        prior = self.docs.get(event.id)
        if isinstance(event, Upsert):
            self.last_upsert[event.id] = event
        if event.version is not None and prior is not None and prior.version is not None \
                and event.version <= prior.version:
            return "stale"
        # Versions only grow: an event without one (a delete, or an upsert) keeps the stored one, so
        # that an older upsert cannot bring a deleted document back or overwrite a newer edit.
        version = event.version if event.version is not None else (prior.version if prior else None)
        if isinstance(event, Delete):
            if prior is not None or version is not None:
                self.docs[event.id] = Doc(live=False, version=version)
            return "deleted"
        text = None if event.text is None else event.text[:MAX_TEXT_CHARS]
        look = None if event.vector_seed is None else ("vector", event.id, event.vector_seed)
        same_content = prior is not None and prior.live and prior.text == text
        if same_content and prior.version == version and prior.metadata == event.metadata \
                and look in (None, prior.look):
            return "unchanged"
        if look is None:  # text only: the stored vector is reused when the text did not change
            look = prior.look if same_content else ("text", text)
        self.docs[event.id] = Doc(live=True, version=version, text=text, metadata=event.metadata, look=look)
        return "indexed"

    def live(self) -> dict[str, Doc]:
        return {doc_id: doc for doc_id, doc in self.docs.items() if doc.live}


def vector_for(doc_id: str, seed: int) -> list[float]:
    """A vector of its own for each (id, seed): two ids never share one by chance."""
    rng = np.random.default_rng([zlib.crc32(doc_id.encode()), seed])
    return [round(float(x), 6) for x in rng.normal(size=DIM)]


def query_for(look: tuple[Any, ...]) -> dict[str, Any]:
    if look[0] == "vector":
        return {"vector": vector_for(look[1], look[2])}
    # The model reads only the first 256 tokens, so the head of a long text finds it as well.
    return {"text": look[1][:5_000]}


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


# ---- invalid events: (key, value) and the reason they must be dead-lettered with --------

def _gloss(variant: int) -> str:
    return GLOSSES[variant % len(GLOSSES)]


def _keyed(doc_id: str, body: Any) -> RawRecord:
    """A record keyed by ``doc_id`` whose value is ``body`` as JSON."""
    return doc_id.encode(), _json(body)


def _text_upsert(doc_id: str, variant: int, **fields: Any) -> dict[str, Any]:
    """A valid text upsert, with ``fields`` set or overridden: one defect at a time."""
    return {"id": doc_id, "text": _gloss(variant), **fields}


def _long(doc_id: str) -> str:
    """An id of 600 characters: over STREAMVEC_MAX_KEY_BYTES's default of 512 bytes."""
    return (doc_id * 600)[:600]


def _nested(depth: int) -> dict[str, Any]:
    """Metadata ``depth`` levels deep: over 32 (STREAMVEC_MAX_METADATA_DEPTH's default) is refused."""
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"in": value}
    return value


TOO_LARGE = {"blob": "x" * 20_000}  # STREAMVEC_MAX_METADATA_BYTES's default is 16,384
Invalid = Callable[[str, int], RawRecord]
INVALID: dict[str, tuple[str, Invalid]] = {
    "non-JSON bytes": ("bad_json", lambda d, v: (d.encode(), f"not json {{ {v}".encode())),
    "invalid UTF-8 value": ("bad_json", lambda d, v: (d.encode(), b'{"id": "' + d.encode() + b'", "text": "caf\xe9"}')),
    "invalid UTF-8 key": ("bad_key", lambda d, v: (b"\xff\xfe" + d.encode(), _json(_text_upsert(d, v)))),
    "invalid UTF-8 key, tombstone": ("bad_key", lambda d, v: (b"\xc3(" + d.encode(), None)),
    "JSON array": ("bad_json", lambda d, v: _keyed(d, [d, v])),
    "JSON number": ("bad_json", lambda d, v: _keyed(d, v)),
    # Python writes NaN as the bare word NaN, which is not JSON.
    "NaN in a vector": ("bad_json", lambda d, v: _keyed(d, {"id": d, "vector": [math.nan] * DIM})),
    "missing id, no key": ("bad_id", lambda d, v: (None, _json({"text": _gloss(v)}))),
    "empty id, no key": ("bad_id", lambda d, v: (None, _json(_text_upsert("", v)))),
    "key differs from id": ("key_mismatch", lambda d, v: _keyed(d, _text_upsert(d, v, id=d + "-other"))),
    "unknown field": ("unknown_field", lambda d, v: _keyed(d, _text_upsert(d, v, colour="red"))),
    "unknown op": ("bad_op", lambda d, v: _keyed(d, _text_upsert(d, v, op="merge"))),
    "id a number": ("bad_id", lambda d, v: (None, _json(_text_upsert(d, v, id=v)))),
    "version a string": ("bad_version", lambda d, v: _keyed(d, _text_upsert(d, v, version=str(v)))),
    "version a float": ("bad_version", lambda d, v: _keyed(d, _text_upsert(d, v, version=v + 0.5))),
    "delete, version a bool": ("bad_version", lambda d, v: _keyed(d, {"id": d, "op": "delete", "version": True})),
    "ts a string": ("bad_ts", lambda d, v: _keyed(d, {"id": d, "vector": vector_for(d, v), "ts": "today"})),
    "metadata a list": ("bad_metadata", lambda d, v: _keyed(d, _text_upsert(d, v, metadata=[v]))),
    "text a number": ("bad_text", lambda d, v: _keyed(d, _text_upsert(d, v, text=v))),
    "blank text": ("empty_text", lambda d, v: _keyed(d, _text_upsert(d, v, text=" \n\t"))),
    "vector of wrong dimension": ("bad_vector", lambda d, v: _keyed(d, {"id": d, "vector": vector_for(d, v)[1:]})),
    "vector of strings": ("bad_vector", lambda d, v: _keyed(d, {"id": d, "vector": [str(v)] * DIM})),
    "empty vector": ("bad_vector", lambda d, v: _keyed(d, {"id": d, "vector": []})),
    "all-zero vector": ("bad_vector", lambda d, v: _keyed(d, _text_upsert(d, v, vector=[0.0] * DIM))),
    "key too long": ("key_too_long", lambda d, v: _keyed(_long(d), _text_upsert(_long(d), v))),
    "metadata too large": ("metadata_too_large", lambda d, v: _keyed(d, _text_upsert(d, v, metadata=TOO_LARGE))),
    "metadata too deep": ("metadata_too_deep", lambda d, v: _keyed(d, _text_upsert(d, v, metadata=_nested(40)))),
    "no text and no vector": ("no_content", lambda d, v: _keyed(d, {"id": d, "metadata": {"n": v}})),
}


# ---- what hypothesis generates ----------------------------------------------------------

class Spec(NamedTuple):
    """One event to send, before it is made concrete (a re-send needs the model's state)."""

    kind: str
    doc: int
    variant: int
    version: int | None
    metadata: int
    with_ts: bool


# Repeats weight the kinds: mostly producer-vector upserts (they keep the test fast).
KINDS = ("vector",) * 8 + ("text",) * 3 + ("text+vector", "long text") + ("resend",) * 3 \
    + ("delete",) * 2 + ("tombstone",) + ("invalid",) * 4
specs = st.builds(Spec, kind=st.sampled_from(KINDS), doc=st.integers(0, len(POOL) - 1),
                  variant=st.integers(0, 10_000), version=st.none() | st.none() | st.integers(0, 20),
                  metadata=st.integers(0, len(METADATA) - 1), with_ts=st.booleans())


@st.composite
def batches(draw: st.DrawFn) -> list[Spec]:
    """About 270 events, with every kind of bad input at least once, at places hypothesis picks."""
    batch = draw(st.lists(specs, min_size=240, max_size=270))
    for position, _ in enumerate(INVALID):
        where = draw(st.integers(0, len(batch)))
        batch.insert(where, Spec("invalid", draw(st.integers(0, len(POOL) - 1)), position, None, 0, False))
    return batch


class Sent(NamedTuple):
    record: RawRecord
    outcome: str
    reason: str | None = None  # the dead-letter reason of an invalid event
    bad_input: str | None = None


def make_event(spec: Spec, model: Model) -> Sent:
    """The concrete record for ``spec``, and its outcome as the model predicts it."""
    doc_id = POOL[spec.doc]
    ts = 1_700_000_000.0 + spec.variant if spec.with_ts else None
    metadata = METADATA[spec.metadata]
    event: Event
    if spec.kind == "invalid":
        name = list(INVALID)[spec.variant % len(INVALID)]
        reason, build = INVALID[name]
        return Sent(build(doc_id, spec.variant), "dead_lettered", reason, name)
    if spec.kind == "delete":
        event = Delete(doc_id, spec.version)
    elif spec.kind == "tombstone":
        event = Delete(doc_id, tombstone=True)
    elif spec.kind == "resend" and doc_id in model.last_upsert:
        # The same event again, perhaps with another ts: unchanged, or stale if it has a version.
        previous = model.last_upsert[doc_id]
        event = previous if ts is None else dataclasses.replace(previous, ts=ts)
    elif spec.kind in ("text", "long text"):
        text = _gloss(spec.variant)
        event = Upsert(doc_id, text=f"{text} {FILLER}" if spec.kind == "long text" else text,
                       metadata=metadata, version=spec.version, ts=ts)
    else:  # "vector", "text+vector", and a "resend" of an id never sent yet
        text = _gloss(spec.variant) if spec.kind == "text+vector" else None
        event = Upsert(doc_id, text=text, vector_seed=spec.variant % 4, metadata=metadata, version=spec.version,
                       ts=ts)
    return Sent(event.record(), model.apply(event))


# ---- the cluster ----------------------------------------------------------------------

@dataclass
class Cluster(OnGroup):
    """The module's group, and each worker's identity at the start (a restart would replay events)."""

    group: Group
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)  # url -> pid and start time

    def stats(self, turn: int = 0) -> dict[str, Any]:
        return self.workers[turn % len(self.workers)].stats()


def _group_state(cluster: Cluster) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]] | None:
    """Each worker's identity (pid, start time) and partitions, once every worker is ready and
    together they serve every partition exactly once; else None."""
    stats = cluster.stats()
    bodies = stats["workers"]
    assignment = {url: body.get("partitions", []) for url, body in bodies.items()}
    owned = sorted(p for partitions in assignment.values() for p in partitions)
    if stats["partial"] or len(bodies) != len(cluster.workers) or owned != list(range(PARTITIONS)) \
            or not all(body.get("ready") and body.get("partitions") for body in bodies.values()):
        return None
    return {url: {key: body[key] for key in RESTART_KEYS} for url, body in bodies.items()}, assignment


def wait_for_stable_group(cluster: Cluster, polls: int = 3) -> dict[str, dict[str, Any]]:
    """The workers' identities, once the same complete assignment holds over ``polls`` checks
    a second apart: the group has settled, and no rebalance is about to replay events."""
    def stable() -> dict[str, dict[str, Any]] | None:
        states = []
        for _ in range(polls):
            states.append(_group_state(cluster))
            time.sleep(1)
        return states[0][0] if states[0] is not None and all(s == states[0] for s in states) else None
    return wait_for("both workers ready with a stable assignment of all partitions", stable, timeout=120)


@pytest.fixture(scope="module")
def cluster(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    group = Group(kafka_broker, new_app_id("fuzz"), tmp_path_factory.mktemp("reconciliation"), model_cache, PARTITIONS)
    cluster = Cluster(group)
    try:
        group.start("a").wait_ready(timeout=300)
        group.start("b").wait_ready(timeout=120)
        cluster.identities = wait_for_stable_group(cluster)
        yield cluster
    finally:
        group.stop_all()


# ---- checks ---------------------------------------------------------------------------

@dataclass
class Tally:
    """What was produced so far, and what the model expects of it."""

    produced: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[RawRecord] = field(default_factory=Counter)
    reason_of: dict[RawRecord, str] = field(default_factory=dict)
    bad_inputs: Counter[str] = field(default_factory=Counter)

    def add(self, sent: Sent) -> None:
        self.produced += 1
        self.outcomes[sent.outcome] += 1
        if sent.reason is not None:
            assert self.reason_of.setdefault(sent.record, sent.reason) == sent.reason, sent
            self.reasons[sent.reason] += 1
            self.dead_letters[sent.record] += 1
            self.bad_inputs[sent.bad_input or ""] += 1

    def expected(self) -> dict[str, int]:
        return {name: self.outcomes[name] for name in OUTCOMES}


def wait_for_outcomes(cluster: Cluster, tally: Tally, timeout: float = 120.0) -> dict[str, Any]:
    """Poll /stats until every produced event has an outcome; fail at once on an over-count."""
    deadline = time.monotonic() + timeout
    turn = 0
    while True:
        for worker in cluster.workers:
            assert worker.alive(), f"worker {worker.name} exited:\n{worker.log_tail()}"
        stats = cluster.stats(turn)
        counted = sum(stats["outcomes"].values())
        if counted >= tally.produced or time.monotonic() > deadline:
            break
        turn += 1
        time.sleep(0.3)
    diff = {name: stats["outcomes"].get(name, 0) - n for name, n in tally.expected().items()}
    assert counted == tally.produced, (
        f"{counted} outcomes counted for {tally.produced} events produced "
        f"({'more: replayed or counted twice' if counted > tally.produced else f'waited {timeout:.0f} s'}); "
        f"counted minus expected per outcome: {diff}; outcomes {stats['outcomes']}")
    return stats


def assert_reconciles(stats: dict[str, Any], tally: Tally) -> None:
    per_worker: Counter[str] = Counter()
    for url, body in stats["workers"].items():
        assert "outcomes" in body, f"{url} did not answer /stats: {body}"
        per_worker.update(body["outcomes"]["total"])
    assert dict(per_worker) == stats["outcomes"], "GET /stats totals are not the sum of the workers' totals"
    assert stats["outcomes"] == tally.expected(), \
        f"outcomes {stats['outcomes']} differ from the model's {tally.expected()}"
    assert tally.produced == sum(stats["outcomes"].values())
    assert stats["dead_letter_reasons"] == dict(tally.reasons)
    by_partition: Counter[str] = Counter()
    for counts in stats["per_partition"].values():
        by_partition.update({name: counts.get(name, 0) for name in tally.expected()})
    assert dict(by_partition) == tally.expected(), f"per-partition outcomes add up to {dict(by_partition)}"


def assert_no_restart(cluster: Cluster) -> None:
    for worker in cluster.workers:
        assert worker.alive(), f"worker {worker.name} exited:\n{worker.log_tail()}"
    bodies = cluster.stats()["workers"]
    now = {url: {key: body.get(key) for key in RESTART_KEYS} for url, body in bodies.items()}
    assert now == cluster.identities, f"a worker restarted: {cluster.identities} at the start, {now} now"


def document_mismatches(cluster: Cluster, model: Model) -> list[str]:
    """Every id the model knows: a live one is stored as modelled and found by its vector or
    text; any other one is absent (404)."""
    problems = []
    live = model.live()
    sharing = Counter(doc.look for doc in live.values())
    for turn, doc_id in enumerate(sorted(set(model.docs) | set(model.last_upsert))):
        worker = cluster.workers[turn % len(cluster.workers)]
        status, answer = worker.get("/documents/" + urllib.parse.quote(doc_id, safe=""))
        doc = live.get(doc_id)
        if doc is None:
            if status != 404:
                problems.append(f"{doc_id}: deleted or never indexed, but GET /documents answered {status}: {answer}")
            continue
        if status != 200 or (answer["version"], answer["metadata"]) != (doc.version, doc.metadata):
            problems.append(f"{doc_id}: expected version {doc.version} and metadata {doc.metadata}, got {status}: "
                            f"{answer}")
            continue
        # Documents with the same look have the same vector: any of them may come first.
        answer = worker.search(**query_for(doc.look), k=sharing[doc.look] + 2)
        hits = answer["results"]
        found = next((hit for hit in hits if hit["id"] == doc_id), None)
        if found is None or found["metadata"] != doc.metadata:
            problems.append(f"{doc_id}: not found by its {doc.look[0]} ({found}) through {worker.name}; top hits "
                            f"{[(h['id'], round(h['score'], 4)) for h in hits[:3]]}, partitions {answer['partitions']}")
    return problems


def assert_documents(cluster: Cluster, model: Model, timeout: float = 30.0) -> None:
    """The index may trail the outcome counters by one batch: retry for a while."""
    deadline = time.monotonic() + timeout
    while problems := document_mismatches(cluster, model):
        if time.monotonic() > deadline:
            copies = {w.name: w.stats()["workers"].get(w.url) for w in cluster.workers}
            raise AssertionError(f"{len(problems)} documents not as modelled, e.g.:\n" + "\n".join(problems[:10])
                                 + f"\nthe workers' copies: {copies}")
        time.sleep(1)
    stats = cluster.stats()
    assert stats["documents"] == len(model.live()) and not stats["partial"], \
        f"{stats['documents']} documents served, {len(model.live())} expected"


def assert_dead_letters(cluster: Cluster, tally: Tally) -> None:
    letters = read_topic(cluster.broker, f"{cluster.app_id}-dead-letters")
    got = Counter((record.key, record.value) for record in letters)
    missing, extra = tally.dead_letters - got, got - tally.dead_letters
    assert not missing and not extra, (f"dead-letter topic differs from the invalid events sent: "
                                       f"{sum(missing.values())} missing, e.g. {list(missing)[:3]}; "
                                       f"{sum(extra.values())} unexpected, e.g. {list(extra)[:3]}")
    for record in letters:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers["streamvec-reason"] == tally.reason_of[(record.key, record.value)], (record.key, headers)
        assert headers["streamvec-topic"] == f"{cluster.app_id}-events" and headers["streamvec-error"]


# ---- the test -------------------------------------------------------------------------

def test_every_event_reconciles_with_the_model(cluster: Cluster) -> None:
    model, tally = Model(), Tally()
    topic = f"{cluster.app_id}-events"
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    # Hypothesis tries the simplest batch first: the same vector upsert of one id, again and
    # again (one indexed, the rest unchanged), then batches of every kind.
    @given(batch=batches())
    def one_batch(batch: list[Spec]) -> None:
        sent = [make_event(spec, model) for spec in batch]
        send_records(cluster.broker, topic, [s.record for s in sent])
        for item in sent:
            tally.add(item)
        stats = wait_for_outcomes(cluster, tally)
        assert_reconciles(stats, tally)
        assert_documents(cluster, model)
        assert_no_restart(cluster)
        print(f"batch of {len(sent)}: {tally.produced} produced so far, outcomes {stats['outcomes']}, "
              f"{len(model.live())} live documents, {time.monotonic() - started:.0f} s")

    one_batch()

    assert tally.produced >= MIN_EVENTS, f"only {tally.produced} events produced"
    assert all(tally.outcomes[name] for name in tally.expected()), f"an outcome never occurred: {tally.expected()}"
    assert set(tally.bad_inputs) == set(INVALID)
    assert_reconciles(cluster.stats(), tally)  # nothing counted late, nothing replayed
    assert_dead_letters(cluster, tally)
    assert_no_restart(cluster)
    print(f"\nreconciliation: produced {tally.produced} = " +
          " + ".join(f"{name} {count}" for name, count in tally.expected().items()))
    print("dead letters by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(tally.reasons.items())))
    print(f"bad inputs sent ({len(INVALID)} kinds): " +
          ", ".join(f"{name} {n}" for name, n in tally.bad_inputs.items()))
    looks = Counter(doc.look[0] for doc in model.live().values())
    print(f"{len(model.live())} live documents (found by vector {looks['vector']}, by text {looks['text']}), "
          f"{time.monotonic() - started:.0f} s after the first batch")
