"""Settings from the environment, and HTTP request validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.search.query import RequestError
from app.http.requests import parse_batch, parse_search, parse_watchlist_check, query_params, recommendation_params
from app.settings import Settings, SettingsError, describe


def test_settings_come_from_prefixed_variables_and_flags_win() -> None:
    settings = Settings.from_env({"STREAMVEC_PARTITIONS": "4", "STREAMVEC_DATADIR": "/tmp/x", "HOME": "/root"})
    assert settings.partitions == 4 and settings.datadir == Path("/tmp/x")
    assert settings.model_cache_dir == Path.home() / ".cache" / "streamvec" / "models"  # one per machine
    assert settings.replace(model_cache="/srv/models").model_cache_dir == Path("/srv/models")
    assert settings.replace(partitions="2", web_port=None).partitions == 2


@pytest.mark.parametrize(("environ", "message"), [
    ({"STREAMVEC_PARTITONS": "4"}, "unknown setting STREAMVEC_PARTITONS"),
    ({"STREAMVEC_PARTITIONS": "four"}, "not a valid int"),
    ({"STREAMVEC_PARTITIONS": "0"}, "at least 1"),
    ({"STREAMVEC_WEB_PORT": "70000"}, "TCP port"),
    ({"STREAMVEC_ALERT_THRESHOLD": "1.5"}, "ALERT_THRESHOLD is a cosine"),
    ({"STREAMVEC_NOVELTY_THRESHOLD": "-0.1"}, "NOVELTY_THRESHOLD one from 0"),
    ({"STREAMVEC_DRIFT_THRESHOLD": "0"}, "DRIFT_THRESHOLD is 1 − cosine"),
    ({"STREAMVEC_HEALTH_WINDOW": "1"}, "HEALTH_WINDOW must be at least 2"),
    ({"STREAMVEC_ACTION_WEIGHTS": "view:1,buy"}, "'buy' is not `action:number`"),
    ({"STREAMVEC_ACTION_WEIGHTS": "view:inf"}, "finite weight"),
    ({"STREAMVEC_CDC_TOPIC": "streamvec-activity", "STREAMVEC_CDC_TEXT_COLUMNS": "t"}, "not streamvec's own"),
])
def test_bad_settings_say_which_variable_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_a_search_request_is_validated() -> None:
    request, after = parse_search({"text": "cats", "k": 3, "filter": {"lang": "en"}}, dim=4)
    assert request.k == 3 and request.predicate is not None and request.predicate({"lang": "en"})
    assert request.include == ("metadata", "text") and after == {}
    request, after = parse_search({"vector": [1, 0, 0, 0], "include": ["text"], "after": {"3": 120}}, dim=4)
    assert request.k == 10 and request.include == ("text",) and after == {3: 120}
    assert request.vector is not None and request.vector.dtype == np.float32


@pytest.mark.parametrize(("body", "message"), [
    ({"text": "a", "vector": [1, 0, 0, 0]}, "exactly one"),
    ({}, "exactly one"),
    ({"text": "a", "k": 0}, '"k": Input should be greater than or equal to 1'),
    ({"text": "a", "k": "5"}, '"k": Input should be a valid integer'),
    ({"text": "a", "k": 5.0}, '"k": Input should be a valid integer'),
    ({"text": "a", "ef": 10**6}, '"ef": Input should be less than or equal to 10000'),
    ({"text": None}, '"text": Input should be a valid string'),
    ({"text": ""}, '"text": String should have at least 1 character'),
    ({"vector": [1, 0, 0, "x"]}, '"vector" must be a list of numbers'),
    ({"vector": "1,0,0,0"}, '"vector": Input should be a valid array'),
    ({"text": "a", "include": ["vector"]}, '"include.0": Input should be'),
    ({"text": "a", "after": {"x": 1}}, '"after": keys are partition numbers'),
    ({"text": "a", "after": {"1": -1}}, "cannot be negative"),
    ({"text": "a", "filter": [1]}, '"filter": Input should be an object'),
    ({"vector": [1, 0]}, "4 dimensions"),
    ({"text": "a", "filter": {"x": {"$foo": 1}}}, "unknown operator"),
    ({"text": "a", "limit": 3}, "unknown field"),
    ([1, 2], "the request body must be a JSON object"),
    (b"{not json", "not valid JSON"),
    (b"", "must be a JSON object"),
])
def test_bad_search_requests_say_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_search(body if isinstance(body, bytes) else json.dumps(body).encode(), dim=4)


@pytest.mark.parametrize("levels", [65, 300, 1000])
def test_a_body_nested_too_deep_is_a_400_whatever_the_parser_takes(levels: int) -> None:
    """SP-22: orjson reads 1,024 levels and writes about 255; 300 levels in an unknown field was a 500."""
    body = b'{"text": "a", "deep": ' + b"[" * levels + b"]" * levels + b"}"
    for parse in (parse_search, parse_batch):
        with pytest.raises(RequestError, match="nested more than 64 levels deep") as raised:
            parse(body, dim=4)
        assert raised.value.status == 400
    with pytest.raises(RequestError, match='"deep": unknown field'):  # 64 levels: read, then refused by name
        parse_search(b'{"text": "a", "deep": ' + b"[" * 63 + b"]" * 63 + b"}", dim=4)
    assert parse_search(b'{"text": "a", "filter": {"$and": [{"$or": [{"a": 1}]}]}}', dim=4)[0].predicate


def test_a_batch_names_the_bad_query() -> None:
    good = {"vector": [1, 0, 0, 0]}
    assert len(parse_batch(json.dumps({"queries": [good, good]}).encode(), dim=4)[0]) == 2
    with pytest.raises(RequestError, match=r'queries\[0\]: "after" belongs at the top level'):
        parse_batch(json.dumps({"queries": [{**good, "after": {"1": 2}}]}).encode(), dim=4)
    with pytest.raises(RequestError, match=r"queries\[1\]: .*4 dimensions"):
        parse_batch(json.dumps({"queries": [good, {"vector": [1, 0]}]}).encode(), dim=4)
    with pytest.raises(RequestError, match='"queries": List should have at least 1 item'):
        parse_batch(b'{"queries": []}', dim=4)


def test_get_search_parameters() -> None:
    assert query_params({"q": "cats", "k": "3"}) == {"text": "cats", "k": 3}
    with pytest.raises(RequestError, match='"q"'):
        query_params({"k": "3"})
    with pytest.raises(RequestError, match="integer"):
        query_params({"q": "x", "k": "many"})


def test_action_weights_are_read_into_a_map() -> None:
    settings = Settings.from_env({"STREAMVEC_ACTION_WEIGHTS": " view:1, dislike:-2.5 ,"})
    assert settings.action_weight_map == {"view": 1.0, "dislike": -2.5}


def test_recommendation_parameters() -> None:
    request = recommendation_params("u", {"k": "5", "filter": '{"category": "food"}'})
    assert (request.k, request.filter, request.vector, request.id) == (5, {"category": "food"}, None, None)
    assert request.predicate is not None and request.predicate({"category": "food"})
    assert recommendation_params("u", {}).k == 10
    for query, message in (({"k": "0"}, "from 1 to 1000"), ({"k": "x"}, "must be an integer"),
                           ({"filter": "[1]"}, "JSON object"), ({"filter": "{"}, "JSON object"),
                           ({"filter": '{"a": {"$near": 1}}'}, "near"), ({"q": "x"}, "unknown parameter"),
                           ({"filter": " " * 501}, "longer than 500")):
        with pytest.raises(RequestError, match=message):
            recommendation_params("u", query)
    with pytest.raises(RequestError, match="longer than 512"):
        recommendation_params("u" * 513, {})


def test_a_watchlist_check_takes_a_text_or_a_vector() -> None:
    assert parse_watchlist_check(b'{"text": "a tiger"}', 3) == ("a tiger", None)
    text, vector = parse_watchlist_check(b'{"vector": [3, 0, 4]}', 3)
    assert text is None and vector is not None and vector.tolist() == pytest.approx([0.6, 0, 0.8])
    for body, message in ((b'{"text": "a", "vector": [1, 0, 0]}', "exactly one"), (b"{}", "exactly one"),
                          (b'{"vector": [1, 0]}', "3 dimensions"), (b'{"text": "a", "k": 3}', "unknown field")):
        with pytest.raises(RequestError, match=message):
            parse_watchlist_check(body, 3)


def test_the_configuration_doc_lists_every_setting_as_the_code_describes_it() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name, default, meaning in describe():
        row = f"| `{name}` | {f'`{default}`' if default else ''} | {meaning} |"
        assert row in doc, f"docs/configuration.md settings table is out of date for {name}: expected {row}"
