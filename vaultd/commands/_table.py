"""Plain-text tables for the commands' text output: a header row, then aligned columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def columns(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """``header`` and ``rows`` as lines of left-aligned columns two spaces apart (not yet made
    terminal-safe: callers pass each line through ``terminal_safe``)."""
    cells = [tuple(header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
