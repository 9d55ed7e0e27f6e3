"""Rules: which detectors to run on a request, and which policies their findings add.

What belongs here: `Rule` (detectors -> policies to require, enforced or only reported),
`Tightening`, which runs the detectors the rules need over a request's text once and returns an
`Outcome`, and the `Outcome` itself: detector ids and policy names only, never matched text.
A rule can only add policies (tighten); nothing here removes one. The config (`sensitive:`, and a
key's own `sensitive:` rules) is turned into these by `gateway.config`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.core.sensitive.detectors import BUILTIN, Detector, DetectorId
from gateway.core.sensitive.extract import EXTRACTORS

SEPARATOR = "\n\n"  # between texts: no pattern matches across a line break, so none spans two parts


class Mode(StrEnum):
    ENFORCE = "enforce"  # findings add the rule's policies
    REPORT = "report"  # a dry run: findings are recorded in the ledger, nothing is added


@dataclass(frozen=True)
class Rule:
    detectors: frozenset[DetectorId]
    require: tuple[str, ...]
    enforce: bool = True


@dataclass(frozen=True)
class Outcome:
    """What detection found and did. `tightened`: detector ids whose enforced rules added
    `policies`; `reported`: detector ids that matched report-mode rules only (nothing added)."""

    tightened: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()

    def ledger(self) -> dict[str, Any]:
        """The ledger's `extra` fields: detector ids only."""
        found: dict[str, Any] = {}
        if self.tightened:
            found["sensitive"] = list(self.tightened)
        if self.reported:
            found["sensitive_report"] = list(self.reported)
        return found

    @property
    def header(self) -> str:
        return ", ".join(self.tightened)


NOTHING = Outcome()


@dataclass(frozen=True)
class Tightening:
    """The operator's rules, ready to run. `per_key`: extra rules of keys from the config file."""

    rules: tuple[Rule, ...] = ()
    per_key: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    detectors: Mapping[DetectorId, Detector] = field(default_factory=lambda: dict(BUILTIN))

    def rules_for(self, key_name: str | None) -> tuple[Rule, ...]:
        extra = self.per_key.get(key_name, ()) if key_name is not None else ()
        return (*self.rules, *extra)

    def check(self, endpoint: str, fields: Mapping[str, Any], key_name: str | None) -> Outcome:
        """Run the detectors that `key_name`'s rules need over the request's text."""
        job = self.prepare(endpoint, fields, key_name)
        return job.run() if job is not None else NOTHING

    def prepare(self, endpoint: str, fields: Mapping[str, Any], key_name: str | None) -> Job | None:
        """The request's text and the rules to apply to it (None: no rule applies to this key), so
        the caller can choose where to run it: a large text is better scanned off the event loop."""
        rules = self.rules_for(key_name)
        if not rules:
            return None
        return Job(SEPARATOR.join(EXTRACTORS[endpoint](fields)), rules, self.detectors)

    def scan(self, texts: Iterable[str], wanted: Iterable[DetectorId]) -> frozenset[DetectorId]:
        return scan(SEPARATOR.join(texts), wanted, self.detectors)


def scan(
    text: str, wanted: Iterable[DetectorId], detectors: Mapping[DetectorId, Detector]
) -> frozenset[DetectorId]:
    if not text:
        return frozenset()
    lower = text.lower()
    return frozenset(d for d in wanted if d in detectors and detectors[d].found(text, lower))


@dataclass(frozen=True)
class Job:
    """One request's detection, ready to run (`run()` is pure CPU: no I/O, no shared state)."""

    text: str
    rules: tuple[Rule, ...]
    detectors: Mapping[DetectorId, Detector]

    def run(self) -> Outcome:
        wanted = {d for r in self.rules for d in r.detectors}
        return decide(self.rules, scan(self.text, wanted, self.detectors))


def decide(rules: Sequence[Rule], found: frozenset[DetectorId]) -> Outcome:
    """The outcome of `rules` given the detectors that matched."""
    tightened: set[str] = set()
    policies: dict[str, None] = {}
    reported: set[str] = set()
    for rule in rules:
        hits = rule.detectors & found
        if not hits:
            continue
        if rule.enforce:
            tightened.update(hits)
            policies.update(dict.fromkeys(rule.require))
        else:
            reported.update(hits)
    return Outcome(tuple(sorted(tightened)), tuple(policies), tuple(sorted(reported - tightened)))
