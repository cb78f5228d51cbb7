"""The bytes of text and metadata one search answer may carry (STREAMVEC_MAX_RESPONSE_BYTES, SP-13)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from app.search.service import ResponseBudget, ResponseTooLarge


def test_text_and_metadata_are_paid_for_as_json_bytes_the_index_read_only_views_included() -> None:
    budget = ResponseBudget(limit=1024)
    budget.spend(MappingProxyType({"lang": "en", "deep": {"n": 1}}), "é" * 100)  # 28 + 200 bytes
    assert budget.left == 1024 - 28 - 200
    budget.spend(None, None)
    assert budget.left == 1024 - 228


def test_past_the_limit_the_search_is_refused_with_a_413_that_says_how_to_ask_for_less() -> None:
    budget = ResponseBudget(limit=1024)
    budget.spend(None, "x" * 1024)
    with pytest.raises(ResponseTooLarge, match=r"more than STREAMVEC_MAX_RESPONSE_BYTES \(1,024 bytes\).*fewer "
                                               r"results \(k\).*\"include\": \[\"metadata\"\]") as refused:
        budget.spend({"a": 1}, None)
    assert refused.value.status == 413
