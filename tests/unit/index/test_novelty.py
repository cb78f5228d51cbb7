"""Novelty's nearest-earlier-document rule on small hand-made batches."""

from __future__ import annotations

import numpy as np

from index.uses.novelty import Nearest, Recent, nearest_before
from index.ann.hnsw import Hit


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(doc_id, score, 0, {}) for doc_id, score in pairs]


def test_each_document_is_compared_with_the_index_and_the_earlier_documents_of_its_batch() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(1, 0.1, 0), unit(0, 0, 1)])
    index = [hits(("old", 0.5)), hits(("old", 0.4)), hits(("old", 0.1))]
    first, second, third = nearest_before(["a", "b", "c"], vectors, index, k=4, recent=Recent.empty(3))
    assert first == Nearest("old", 0.5)
    assert second is not None and second.id == "a" and second.score > 0.99  # a came before b
    assert third == Nearest("old", 0.1)  # a and b are orthogonal to c


def test_hits_of_the_batches_are_left_to_the_exact_part_and_the_document_never_meets_itself() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    recent = Recent(("a", "r"), np.stack([unit(1, 0, 0), unit(0.6, 0.8, 0)]))
    # The index already holds b (later in the batch) and r; a's old version equals a itself.
    index = [hits(("b", 0.0), ("r", 0.6), ("a", 1.0), ("old", 0.2)), hits(("b", 1.0), ("old", 0.3))]
    first, second = nearest_before(["a", "b"], vectors, index, k=4, recent=recent)
    assert first is not None and (first.id, round(first.score or 0, 3)) == ("r", 0.6)
    assert second is not None and (second.id, round(second.score or 0, 3)) == ("r", 0.8)


def test_a_row_whose_every_hit_was_left_out_asks_for_a_deeper_search() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(1, 0, 0)])
    index = [hits(("b", 1.0), ("a", 1.0)), hits(("a", 1.0))]
    first, second = nearest_before(["a", "b"], vectors, index, k=2, recent=Recent.empty(3))
    assert first is None  # both hits are batch documents, and there may be more below them
    assert second is not None and second.id == "a"  # fewer hits than k: the index has nothing else
    first, _ = nearest_before(["a", "b"], vectors, index, k=None, recent=Recent.empty(3))
    assert first == Nearest(None, None)  # all the index holds, and all of it from the batch


def test_the_very_first_document_has_nothing_to_compare_with() -> None:
    [only] = nearest_before(["a"], unit(1, 0, 0)[None, :], [[]], k=4, recent=Recent.empty(3))
    assert only == Nearest(None, None)
