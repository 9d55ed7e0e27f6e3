"""Reading a `/metrics` exposition in tests, with prometheus_client's own parser.

What belongs here: `parse` (text -> `Scrape`, failing on a duplicate series or a histogram that is
not cumulative) and the lookups the tests make (`value`, `total`, `label_values`, `types`). The
parser is the library's, not Sluice's: a rendering bug fails here instead of being read back by
the code that wrote it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Scrape:
    text: str
    types: dict[str, str] = field(default_factory=dict)  # by the name on the TYPE line
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when absent (a counter not yet moved)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of `name` whose labels include these."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def label_values(self, label: str) -> set[str]:
        return {v for (_, ls) in self.samples for k, v in ls if k == label}


def parse(text: str) -> Scrape:
    """Parse an exposition (text format 0.0.4) with prometheus_client's parser."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    scrape = Scrape(text)
    for family in text_string_to_metric_families(text):
        # The parser names a counter family without `_total`; the TYPE line (and README) with it.
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name not in scrape.types, f"a family twice (or split): {name}"
        scrape.types[name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in scrape.samples, f"duplicate series: {sample}"
            scrape.samples[key] = sample.value
    check_histograms(scrape)
    return scrape


def check_histograms(scrape: Scrape) -> None:
    for name, kind in scrape.types.items():
        if kind != "histogram":
            continue
        series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
        for (sample, labels), value in scrape.samples.items():
            if sample == f"{name}_bucket":
                le = dict(labels)["le"]
                rest = frozenset(p for p in labels if p[0] != "le")
                series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), value))
        for labels, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{name} buckets not cumulative"
            assert buckets[-1][0] == math.inf, f"{name} without +Inf"
            assert scrape.samples[(f"{name}_count", labels)] == counts[-1]
            assert (f"{name}_sum", labels) in scrape.samples


async def scrape_of(http: httpx.AsyncClient, headers: dict[str, str]) -> Scrape:
    """`GET /metrics` with these headers: a 200 in the text format, parsed."""
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)
