"""Plain, aligned text tables for the terminal."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    indent: str = "",
) -> list[str]:
    """Lines of a table; every cell is already a string; columns in `right` (indices) are
    right-aligned (numbers), the others left-aligned."""
    columns = list(zip(headers, *rows, strict=True))
    widths = [max(len(cell) for cell in column) for column in columns]
    return [indent + _line(line, widths, right).rstrip() for line in (headers, *rows)]


def _line(cells: Sequence[str], widths: Sequence[int], right: Collection[int]) -> str:
    return "  ".join(
        cell.rjust(width) if index in right else cell.ljust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
