"""``streamvec search`` output: a table that fits the terminal, one line per hit.

Columns: rank, score, id, then the text (when the workers return it) and the metadata,
shortened to the width left; ``--json`` prints the worker's answer instead.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence

from streamvec import Hit

_ID_WIDTH = 24
_MIN_DETAIL = 20


def format_hits(hits: Sequence[Hit], width: int | None = None) -> list[str]:
    """The table's lines, header first; ``width`` defaults to the terminal's."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    id_width = min(_ID_WIDTH, max([2] + [len(hit.id) for hit in hits]))
    with_text = any(hit.text for hit in hits)
    fixed = 4 + 2 + 6 + 2 + id_width + 2
    detail = max(_MIN_DETAIL, width - fixed)
    text_width = detail // 2 if with_text else 0
    metadata_width = detail - text_width - (2 if with_text else 0)
    header = ["   #", " SCORE", "ID".ljust(id_width)] + (["TEXT".ljust(text_width)] if with_text else []) + ["METADATA"]
    lines = ["  ".join(header)]
    for rank, hit in enumerate(hits, 1):
        row = [f"{rank:>4}", f"{hit.score:.4f}", _shorten(hit.id, id_width).ljust(id_width)]
        if with_text:
            row.append(_shorten(hit.text or "", text_width).ljust(text_width))
        row.append(_shorten(json.dumps(dict(hit.metadata), ensure_ascii=False), metadata_width))
        lines.append("  ".join(row).rstrip())
    return lines


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
