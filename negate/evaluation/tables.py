"""Plain-text table helpers with no heavy imports (usable from small scripts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def format_cell(v) -> str:
    """One Markdown cell: 3-decimal floats, "–" for NaN, [lo, hi] pairs, escaped text."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(v) else f"{v:.3f}"
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, (float, int)) for x in v):
        return f"[{format_cell(v[0])}, {format_cell(v[1])}]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | Mapping[str, str]) -> str:
    """GitHub Markdown table of ``rows``. ``columns`` is a list of keys, or a mapping key -> header text.

    Floats get 3 decimals, NaN shows as "–", missing keys as empty cells, "|" in text is escaped.
    """
    headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    lines = ["| " + " | ".join(format_cell(h) for h in headers.values()) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(k)) for k in headers) + " |")
    return "\n".join(lines) + "\n"
