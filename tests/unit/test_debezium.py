"""Debezium change events become streamvec events (pure parser, no broker), and the CDC settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.settings import Settings, SettingsError
from index.records.debezium import CdcMapping, parse_debezium
from index.records.events import Event, EventError
from tests.debezium_records import BASE_TS_MS, Column, Table, articles_table

DIM = 4
MAPPING = CdcMapping(text_columns=("title", "body"), metadata_columns=("category", "year"))
ROW = {"id": 7, "title": "Sea otters", "body": "They hold hands while sleeping.", "category": "animals",
       "year": 2024, "embedding": None}
SCHEMAS = pytest.mark.parametrize("schemas", [True, False], ids=["schemas", "no-schemas"])


def parse(record: tuple[bytes | None, bytes | None], mapping: CdcMapping = MAPPING) -> Event:
    return parse_debezium(record[0], record[1], DIM, mapping)


def reason_of(record: tuple[bytes | None, bytes | None], mapping: CdcMapping = MAPPING) -> str:
    with pytest.raises(EventError) as raised:
        parse(record, mapping)
    return raised.value.reason


@SCHEMAS
@pytest.mark.parametrize("op", ["snapshot_read", "insert", "update"])
def test_snapshot_reads_creates_and_updates_are_upserts_of_the_mapped_columns(schemas: bool, op: str) -> None:
    table = articles_table()
    key, value = getattr(table, op)(ROW, schemas=schemas)
    event = parse((key, value))
    assert (event.id, event.op, event.text) == ("7", "upsert", "Sea otters\nThey hold hands while sleeping.")
    assert dict(event.metadata) == {"category": "animals", "year": 2024}
    assert event.vector is None and event.version is None
    envelope = json.loads(value)["payload"] if schemas else json.loads(value)
    assert event.ts == envelope["ts_ms"] / 1000 and event.ts > BASE_TS_MS / 1000


def test_the_same_change_parses_the_same_with_and_without_schemas() -> None:
    with_schemas = parse(articles_table().insert(ROW, schemas=True))
    without = parse(articles_table().insert(ROW, schemas=False))
    assert (with_schemas.id, with_schemas.text, dict(with_schemas.metadata), with_schemas.ts) == \
        (without.id, without.text, dict(without.metadata), without.ts)


@SCHEMAS
def test_a_delete_and_its_tombstone_both_delete_the_row_by_its_key(schemas: bool) -> None:
    delete, tombstone = articles_table().delete(ROW, schemas=schemas)
    assert delete[1] is not None and tombstone[1] is None and tombstone[0] == delete[0]
    for record in (delete, tombstone):
        event = parse(record)
        assert (event.id, event.op, event.text, event.vector) == ("7", "delete", None, None)
    assert parse(delete).ts is not None and parse(tombstone).ts is None


def test_a_delete_without_before_takes_the_id_from_the_key() -> None:
    """REPLICA IDENTITY NOTHING: the delete event carries no previous values at all."""
    key, value = articles_table().delete(ROW, schemas=False)[0]
    envelope = json.loads(value)
    envelope["before"] = None
    assert parse((key, json.dumps(envelope).encode())).id == "7"


def test_an_old_style_null_envelope_is_a_tombstone() -> None:
    """Kafka Connect before KAFKA-3832 wrote a null value as {"schema": null, "payload": null}."""
    key = articles_table().key_bytes(ROW, schemas=True)
    assert parse((key, b'{"schema":null,"payload":null}')).op == "delete"


@SCHEMAS
def test_a_composite_key_joins_its_columns_with_colons_and_id_columns_override_it(schemas: bool) -> None:
    table = Table("shop", "skus", (Column("tenant", "string", optional=False), Column("sku", "int64", optional=False),
                                   Column("name", "string")), key=("tenant", "sku"))
    row = {"tenant": "acme", "sku": 42, "name": "red running shoe"}
    assert parse(table.insert(row, schemas=schemas), CdcMapping(text_columns=("name",))).id == "acme:42"
    assert parse(table.insert(row, schemas=schemas), CdcMapping(text_columns=("name",), id_columns=("sku",))).id == "42"
    for record in table.delete(row, schemas=schemas):  # the delete's before holds the key columns, as the key
        assert parse(record, CdcMapping(text_columns=("name",), id_columns=("sku", "tenant"))).id == "42:acme"


def test_null_and_blank_text_columns_are_skipped() -> None:
    assert parse(articles_table().insert({**ROW, "body": None}, schemas=False)).text == "Sea otters"
    assert parse(articles_table().insert({**ROW, "title": " \n"}, schemas=False)).text == ROW["body"]


@SCHEMAS
@pytest.mark.parametrize("stored", [[3.0, 0.0, 0.0, 4.0], "[3,0,0,4]"], ids=["DoubleVector", "pgvector-text"])
def test_a_vector_column_brings_a_ready_vector(schemas: bool, stored: object) -> None:
    mapping = CdcMapping(vector_column="embedding", metadata_columns=("title",))
    event = parse(articles_table().insert({**ROW, "embedding": stored}, schemas=schemas), mapping)
    assert event.text is None and np.allclose(event.vector, [0.6, 0, 0, 0.8])
    both = parse(articles_table().insert({**ROW, "embedding": stored}, schemas=schemas),
                 CdcMapping(text_columns=("title",), vector_column="embedding"))
    assert both.text == "Sea otters" and both.vector is not None


def test_the_envelope_timestamp_falls_back_to_the_source_commit_time() -> None:
    key, value = articles_table().insert(ROW, schemas=False)
    envelope = json.loads(value)
    del envelope["ts_ms"]
    assert parse((key, json.dumps(envelope).encode())).ts == envelope["source"]["ts_ms"] / 1000


def _edited(record: tuple[bytes, bytes], **changes: object) -> tuple[bytes, bytes]:
    envelope = {**json.loads(record[1]), **changes}
    return record[0], json.dumps(envelope).encode()


def _flattened(record: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """What the ExtractNewRecordState (unwrap) transform leaves: the bare row."""
    return record[0], json.dumps(json.loads(record[1])["after"]).encode()


def _key(record: tuple[bytes, bytes], key: bytes | None) -> tuple[bytes | None, bytes]:
    return key, record[1]


INSERT = articles_table().insert(ROW, schemas=False)
BAD_RECORDS = {
    "truncate": (articles_table().truncate(schemas=True), MAPPING, "cdc_unsupported_op"),
    "truncate-no-schemas": (articles_table().truncate(schemas=False), MAPPING, "cdc_unsupported_op"),
    "logical-message": (_edited(INSERT, op="m", before=None, after=None, message={"prefix": "foo", "content": "Ymfy"}),
                        MAPPING, "cdc_unsupported_op"),
    "unknown-op": (_edited(INSERT, op="x"), MAPPING, "bad_op"),
    "not-json": ((INSERT[0], b"Struct{id=7}"), MAPPING, "bad_json"),
    "flattened-row": (_flattened(INSERT), MAPPING, "cdc_not_envelope"),
    "create-without-after": (_edited(INSERT, after=None), MAPPING, "cdc_not_envelope"),
    "string-key": (_key(INSERT, b"Struct{id=7}"), MAPPING, "cdc_bad_key"),
    "scalar-key": (_key(INSERT, b"7"), MAPPING, "cdc_bad_key"),
    "no-key-no-id-columns": (_key(INSERT, None), MAPPING, "missing_key"),
    "tombstone-without-key": ((None, None), MAPPING, "missing_key"),
    "unknown-text-column": (INSERT, CdcMapping(text_columns=("titel",)), "cdc_missing_column"),
    "unknown-metadata-column": (INSERT, CdcMapping(text_columns=("title",), metadata_columns=("tags",)),
                                "cdc_missing_column"),
    "unknown-id-column": (INSERT, CdcMapping(text_columns=("title",), id_columns=("uuid",)), "cdc_missing_column"),
    "null-id-column": (INSERT, CdcMapping(text_columns=("title",), id_columns=("body", "embedding")),
                       "cdc_bad_column"),
    "object-text-column": (articles_table().insert({**ROW, "body": {"html": "<p>"}}, schemas=False), MAPPING,
                           "cdc_bad_column"),
    "all-text-empty": (articles_table().insert({**ROW, "title": "", "body": None}, schemas=False), MAPPING,
                       "no_content"),
    "vector-wrong-dim": (articles_table().insert({**ROW, "embedding": [1.0, 2.0]}, schemas=False),
                         CdcMapping(vector_column="embedding"), "bad_vector"),
    "vector-not-a-vector": (articles_table().insert({**ROW, "embedding": "(1,2,3,4)"}, schemas=False),
                            CdcMapping(vector_column="embedding"), "bad_vector"),
    "ts-not-a-number": (_edited(INSERT, ts_ms="yesterday"), MAPPING, "bad_ts"),
}


@pytest.mark.parametrize(("record", "mapping", "reason"), list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_records_streamvec_cannot_apply_are_refused_with_a_stable_reason(
        record: tuple[bytes | None, bytes | None], mapping: CdcMapping, reason: str) -> None:
    assert reason_of(record, mapping) == reason


def test_refusals_say_what_to_change() -> None:
    with pytest.raises(EventError, match="skipped.operations=t"):
        parse(articles_table().truncate(schemas=False))
    with pytest.raises(EventError, match="ExtractNewRecordState"):
        parse(_flattened(INSERT))
    with pytest.raises(EventError, match=r"'titel' is not in the row; its columns are \['body', 'category'"):
        parse(INSERT, CdcMapping(text_columns=("titel",)))
    with pytest.raises(EventError, match="STREAMVEC_CDC_ID_COLUMNS"):
        parse(_key(INSERT, None))


def test_cdc_settings_build_the_mapping_from_comma_separated_columns() -> None:
    settings = Settings().replace(cdc_topic="dbserver1.public.articles", cdc_text_columns="title, body",
                                  cdc_id_columns="id", cdc_metadata_columns="category,year",
                                  cdc_vector_column="embedding")
    assert settings.cdc_mapping == CdcMapping(text_columns=("title", "body"), id_columns=("id",),
                                              metadata_columns=("category", "year"), vector_column="embedding")
    assert Settings.from_env({"STREAMVEC_CDC_TOPIC": "t", "STREAMVEC_CDC_VECTOR_COLUMN": "v"}).cdc_mapping == \
        CdcMapping(vector_column="v")


@pytest.mark.parametrize(("changes", "message"), [
    ({"cdc_topic": "dbserver1.public.articles"}, "needs STREAMVEC_CDC_TEXT_COLUMNS"),
    ({"cdc_text_columns": "title"}, "STREAMVEC_CDC_TOPIC is empty"),
    ({"cdc_topic": "streamvec-events", "cdc_text_columns": "title"}, "not streamvec.s own"),
    ({"cdc_topic": "t", "cdc_text_columns": "title,,body"}, "empty column name"),
])
def test_cdc_settings_that_cannot_work_are_refused(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings().replace(**changes)
