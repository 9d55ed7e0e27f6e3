"""The Prometheus text exposition format 0.0.4, without a client library.

What belongs here: the three metric kinds Sluice needs (counter, gauge, histogram with fixed
buckets), their samples and their rendering, with the format's escaping and value spelling. Which
metrics exist, and which label values they may take, is `gateway.observability.metrics`.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Sample = tuple[str, tuple[tuple[str, str], ...], float]  # name suffix, labels, value


# -- the exposition format ------------------------------------------------------------------------
def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class Family:
    """One metric family: a name, its help, its label names and its samples."""

    kind: ClassVar[str] = "untyped"
    reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label in self.reserved:
                raise ValueError(f"invalid label name {label!r} for {name}")
        self.name = name
        self.help = help
        self.labels = tuple(labels)

    def _key(self, values: Sequence[str]) -> tuple[str, ...]:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {len(values)} values")
        return tuple(values)

    def samples(self) -> Iterator[Sample]:
        raise NotImplementedError


class _Values(Family):
    """A family with one number per label set: the storage of counters and gauges."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def value(self, *values: str) -> float:
        return self._values.get(self._key(values), 0.0)

    def samples(self) -> Iterator[Sample]:
        for key, value in sorted(self._values.items()):
            yield "", tuple(zip(self.labels, key, strict=True)), value


class Counter(_Values):
    kind = "counter"

    def inc(self, *values: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(values)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Values):
    kind = "gauge"

    def set(self, *values: str, value: float) -> None:
        self._values[self._key(values)] = value


class Histogram(Family):
    kind = "histogram"
    reserved = frozenset({"le"})

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]) -> None:
        super().__init__(name, help, labels)
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be finite and strictly increasing")
        self.buckets = bounds
        # Per label set: a count per bucket (not cumulative; the last is +Inf), and the sum.
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, *values: str, value: float) -> None:
        key = self._key(values)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[key] = self._sums.get(key, 0.0) + value

    def samples(self) -> Iterator[Sample]:
        for key, counts in sorted(self._counts.items()):
            labels = tuple(zip(self.labels, key, strict=True))
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += count
                yield "_bucket", (*labels, ("le", format_value(bound))), cumulative
            yield "_sum", labels, self._sums[key]
            yield "_count", labels, cumulative


def render(families: Iterable[Family]) -> str:
    """The text exposition format 0.0.4: HELP and TYPE, then one line per sample."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples():
            pairs = ",".join(f'{name}="{escape_label_value(v)}"' for name, v in labels)
            braces = "{" + pairs + "}" if pairs else ""
            lines.append(f"{family.name}{suffix}{braces} {format_value(value)}")
    return "\n".join(lines) + "\n"
