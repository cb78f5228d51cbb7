"""What one worker's index answers for a search, and the merge of several answers into one."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from index.ann.hnsw import Hit


@dataclass(frozen=True)
class LocalResult:
    """One worker's answer: per query, hits best first; the partitions it answered for; and the
    partitions it was asked for but whose copy had not yet applied the offsets the query needs."""

    hits: list[list[Hit]]
    partitions: list[int]
    behind: list[int] = field(default_factory=list)


def merge_hits(lists: list[list[Hit]], k: int) -> list[Hit]:
    """Global top-k of several answers; one id of one partition counts once (two workers can
    answer for the same partition while it moves)."""
    seen: set[tuple[str, int]] = set()
    merged: list[Hit] = []
    for hit in heapq.merge(*lists, key=lambda h: -h.score):
        if (hit.id, hit.partition) not in seen:
            seen.add((hit.id, hit.partition))
            merged.append(hit)
            if len(merged) == k:
                break
    return merged
