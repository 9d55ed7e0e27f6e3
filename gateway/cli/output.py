"""How `sluice` commands print: one console factory, so every table fits where it goes.

What belongs here: `console()` and the shape of cells every table shares (`reasons_cell`). In a
terminal, rich uses the terminal's width. Piped into a file, a pager or another program there is no
width to ask for, and rich would guess 80 (Sluice used to force 200, which wrapped every line in an
issue or an editor): tables are laid out for `PIPED_WIDTH` columns instead, long cells wrap inside
their column.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console

PIPED_WIDTH = 100


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr, soft_wrap=False)
    if not out.is_terminal:
        out.width = PIPED_WIDTH
    return out


def reasons_cell(reasons: Iterable[str]) -> str:
    """Reasons for a table cell, one per line, each citation (`[source G3]`) on a line of its own
    so that wrapping never splits it. Returned as plain text: escape it before rich sees it."""
    lines: list[str] = []
    for reason in reasons:
        text, cited, sources = reason.rpartition(" [source ")
        lines += [text, f"  [source {sources}"] if cited and sources.endswith("]") else [reason]
    return "\n".join(lines)
