"""The report page's pictures: geometry of inline SVG charts, computed here and drawn by templates.

What belongs here: turning counts (`gateway.storage.report`) into positions and sizes in a chart's
own coordinates (its `viewBox`), with the numbers each shape stands for, so that the template
only writes `<rect>` and `<text>` elements and a table beside each chart says the same in words.
No colours here: the stylesheet gives each series its colour, for light and dark alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DECISIONS = ("allowed", "rerouted", "blocked")
WIDTH = 960  # a chart's own units; at about its drawn size on a wide screen, so 12-unit text reads as 12 px
BARS_WIDTH = 500  # bar charts drawn in half the page's width
LABEL_WIDTH = 170  # bar charts: room for the label left of each bar
ROW = 26  # bar charts: one row's height
MAX_BARS = 12


@dataclass(frozen=True)
class Segment:
    series: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class Column:
    x: float
    width: float
    start: datetime
    label: str | None  # written under the axis every few columns
    total: int
    segments: list[Segment]


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    left: int
    peak: int
    columns: list[Column]
    series: Sequence[str] = DECISIONS


def _label(moment: datetime, step: timedelta) -> str:
    return moment.strftime("%H:%M") if step < timedelta(days=1) else moment.strftime("%b %d")


def timeline(steps: Sequence[Mapping[str, int]], *, since: datetime, step: timedelta) -> Timeline:
    """Stacked columns, one per time step, by decision."""
    left, top, bottom, height = 44, 10, 170, 196
    peak = max((sum(s.get(d, 0) for d in DECISIONS) for s in steps), default=0)
    scale = (bottom - top) / peak if peak else 0.0
    slot = (WIDTH - left - 8) / max(len(steps), 1)
    every = max(1, round(len(steps) / 8))
    columns = []
    for i, counts in enumerate(steps):
        y = float(bottom)
        segments = []
        for series in DECISIONS:
            count = counts.get(series, 0)
            if count:
                h = count * scale
                y -= h
                segments.append(Segment(series, round(y, 2), round(h, 2), count))
        start = since + step * i
        columns.append(
            Column(
                x=round(left + i * slot + slot * 0.12, 2),
                width=round(slot * 0.76, 2),
                start=start,
                label=_label(start, step) if i % every == 0 else None,
                total=sum(counts.get(d, 0) for d in DECISIONS),
                segments=segments,
            )
        )
    return Timeline(WIDTH, height, top, bottom, left, peak, columns)


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    y: int
    width: float
    share: float  # of the chart's total, 0..1


@dataclass(frozen=True)
class Bars:
    width: int
    height: int
    label_width: int
    total: int
    bars: list[Bar]
    rest: int = 0  # counted in further rows not drawn (past MAX_BARS)
    rows: list[tuple[str, int]] = field(default_factory=list)  # every row, for the table


def bars(
    counts: Mapping[str, int],
    *,
    limit: int = MAX_BARS,
    width: int = BARS_WIDTH,
    label_width: int = LABEL_WIDTH,
) -> Bars:
    """Horizontal bars, largest first, at most `limit` of them."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values())
    peak = ordered[0][1] if ordered else 0
    room = width - label_width - 50
    drawn = [
        Bar(
            label,
            count,
            i * ROW,
            round(room * count / peak, 2) if peak else 0.0,
            count / total if total else 0.0,
        )
        for i, (label, count) in enumerate(ordered[:limit])
    ]
    rest = sum(count for _, count in ordered[limit:])
    return Bars(width, max(len(drawn), 1) * ROW, label_width, total, drawn, rest, ordered)


@dataclass(frozen=True)
class Share:
    label: str
    part: int
    whole: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.part / self.whole, 1) if self.whole else None
