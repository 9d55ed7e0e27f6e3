"""Effective facts of one deployment: catalog entry, then model overrides, then attestations.

What belongs here: the operator's attestations as domain objects, which attestation a
channel can accept, and `effective_facts()`, which folds the three layers into one frozen
value that the engine and badge derivation read. Each fact carries its own sources, the date
its staleness counts from (the oldest date its sources state, an undated source counting as the
entry's `as_of`), its confidence and whether its sources conflict; where they conflict, the
least private reading is the value. Pure and deterministic: "today" is a value carried by
`EffectiveFacts` and replaced per request with `.on(day)`, never read from a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Generic, TypeVar

from policies.hosts import host_allowed, self_hosted_problem
from policies.schema import (
    AttestationFact,
    Channel,
    Confidence,
    FactName,
    FeatureFacts,
    FeatureId,
    HumanReview,
    Kind,
    ModelOverride,
    Publisher,
    Region,
    RetentionQualifier,
    Source,
    TrainingDefault,
    ZdrAvailability,
    parse_retention_reading,
)

STALE_AFTER = timedelta(days=180)

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class Origin(StrEnum):
    CATALOG = "catalog"
    MODEL_OVERRIDE = "model_override"
    ATTESTATION = "attestation"
    OPERATOR = "operator"  # a self-hosted channel: the operator owns the fact; it never goes stale


@dataclass(frozen=True)
class Attestation:
    """A fact the operator declares for their own account; shown as attested, never merged silently."""

    provider: str
    fact: AttestationFact
    evidence: str
    channel: str | None = None
    models: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def applies_to(self, channel: Channel, model: str) -> bool:
        if self.provider != channel.provider:
            return False
        if self.channel is not None and self.channel != channel.id:
            return False
        bare = model.split("/", 1)[-1]
        return not self.models or any(fnmatchcase(model, g) or fnmatchcase(bare, g) for g in self.models)


@dataclass(frozen=True)
class Fact(Generic[T_co]):
    """One judged fact: its value, sources, where it came from, and what its age and confidence are.

    `dated` is the day staleness counts from; None means the fact never goes stale (attested by
    the operator, or about the operator's own host).
    """

    value: T_co
    src: tuple[str, ...]
    origin: Origin = Origin.CATALOG
    evidence: str | None = None
    dated: date | None = None
    confidence: Confidence = Confidence.HIGH
    conflicted: bool = False

    @property
    def attested(self) -> bool:
        return self.origin is Origin.ATTESTATION

    def stale(self, today: date) -> bool:
        return self.dated is not None and today - self.dated > STALE_AFTER

    def unreliable(self, today: date) -> bool:
        """Low confidence and stale: DESIGN.md treats such a fact as unknown."""
        return self.stale(today) and self.confidence is Confidence.LOW


@dataclass(frozen=True)
class RetentionValue:
    days: int | None
    qualifier: RetentionQualifier

    @property
    def is_zero(self) -> bool:
        return self.qualifier is RetentionQualifier.NONE or (
            self.days == 0 and self.qualifier is not RetentionQualifier.UNKNOWN
        )

    def describe(self, *, unknown: str, zero: str) -> str:
        """The period in words for a reason; `unknown` and `zero` word the two ends."""
        if self.qualifier is RetentionQualifier.UNKNOWN:
            return unknown
        if self.is_zero:
            return zero
        if self.days is not None:
            return f"keeps data {self.qualifier.replace('_', ' ')} {self.days} days"
        return f"keeps data {self.qualifier.replace('_', ' ')}"

    def within(self, limit: int) -> bool:
        return self.is_zero or (
            self.days is not None
            and self.days <= limit
            and self.qualifier in (RetentionQualifier.UP_TO, RetentionQualifier.EXACTLY)
        )


@dataclass(frozen=True)
class RegionsValue:
    processing: frozenset[Region]
    storage: frozenset[Region]


@dataclass(frozen=True)
class FeatureFact:
    """One request feature on one deployment. `known` is False when the catalog has no facts for it."""

    feature: FeatureId
    known: bool
    offered: bool
    retention: Fact[RetentionValue]
    third_party: bool | None
    zdr_eligible: bool | None
    notes: str | None = None


@dataclass(frozen=True)
class EffectiveFacts:
    channel: Channel
    model: str
    host: str | None
    host_ok: bool
    training: Fact[TrainingDefault]
    retention: Fact[RetentionValue]
    human_review: Fact[HumanReview]
    regions: Fact[RegionsValue]
    zdr: Fact[ZdrAvailability]
    today: date
    sources: Mapping[str, Source] = field(repr=False)
    host_problem: str | None = None
    missing_attestations: tuple[AttestationFact, ...] = ()
    attestations: tuple[Attestation, ...] = ()
    overrides: tuple[ModelOverride, ...] = ()
    routes_onward: bool = False
    features: Mapping[FeatureId, FeatureFact] = field(default_factory=dict, repr=False)

    def on(self, day: date) -> EffectiveFacts:
        """The same facts judged on `day` (staleness is a matter of the request's date)."""
        return self if day == self.today else replace(self, today=day)

    @property
    def zdr_available(self) -> ZdrAvailability:
        return self.zdr.value

    def judged(self) -> dict[FactName, Fact[object]]:
        return {
            FactName.TRAINING: self.training,
            FactName.RETENTION: self.retention,
            FactName.ZDR: self.zdr,
            FactName.HUMAN_REVIEW: self.human_review,
            FactName.REGIONS: self.regions,
        }

    def is_unreliable(self, fact: Fact[object]) -> bool:
        return fact.unreliable(self.today)

    @property
    def stale_facts(self) -> tuple[FactName, ...]:
        return tuple(name for name, fact in self.judged().items() if fact.stale(self.today))

    @property
    def stale(self) -> bool:
        return bool(self.stale_facts)

    @property
    def conflicted_facts(self) -> tuple[FactName, ...]:
        return tuple(name for name, fact in self.judged().items() if fact.conflicted)

    @property
    def unreliable(self) -> bool:
        """Some judged fact is low-confidence and stale (it counts as unknown)."""
        return any(fact.unreliable(self.today) for fact in self.judged().values())

    @property
    def attested(self) -> bool:
        return bool(self.attestations)

    def feature(self, feature: FeatureId) -> FeatureFact:
        found = self.features.get(feature)
        if found is not None:
            return found
        unknown = Fact(RetentionValue(None, RetentionQualifier.UNKNOWN), ())
        return FeatureFact(feature, False, False, unknown, None, None)


def _opt_choice(channel: Channel) -> bool:
    return channel.router or any(o.routes_onward for o in channel.model_overrides)


def attestation_problem(channel: Channel, attestation: Attestation) -> str | None:
    """Why `attestation` cannot apply to `channel`, or None. Used to refuse bad configs at start-up."""
    name = channel.name
    training = channel.training.default
    match attestation.fact:
        case AttestationFact.TRAINING_OPTED_OUT if (
            training is not TrainingDefault.OPT_OUT and not _opt_choice(channel)
        ):
            return f"{name} has no training opt-out to attest (training: {training})"
        case AttestationFact.TRAINING_OPTED_IN if training not in (
            TrainingDefault.OPT_IN,
            TrainingDefault.OPT_OUT,
        ) and not _opt_choice(channel):
            return f"{name} has no training opt-in to attest (training: {training})"
        case AttestationFact.ZERO_DATA_RETENTION if channel.zdr.availability in (
            ZdrAvailability.NOT_AVAILABLE,
            ZdrAvailability.UNKNOWN,
        ):
            return f"{name} offers no zero-data-retention agreement (zdr: {channel.zdr.availability})"
        case AttestationFact.PAID_TIER if AttestationFact.PAID_TIER not in channel.requires_attestation:
            return f"{name} is not a paid tier that needs attesting"
        case AttestationFact.OPERATOR_HOST if channel.kind is not Kind.SELF_HOSTED:
            return f"{name} is not self-hosted; operator_host applies to self-hosted channels only"
        case AttestationFact.OPERATOR_HOST if not attestation.hosts:
            return "operator_host must name the hosts it attests (hosts: [...])"
    if attestation.hosts and attestation.fact is not AttestationFact.OPERATOR_HOST:
        return "only operator_host attestations name hosts"
    if channel.kind is Kind.CONSUMER:
        return f"{name} is a consumer channel; attestations do not make it routable"
    return None


def _override_matches(override: ModelOverride, model: str) -> bool:
    bare = model.split("/", 1)[-1]
    return any(fnmatchcase(model, glob) or fnmatchcase(bare, glob) for glob in override.models)


# Less private last: a conflict is judged by the highest rank among its readings.
_TRAINING_RANK = [
    TrainingDefault.NEVER,
    TrainingDefault.OPT_IN,
    TrainingDefault.OPT_OUT,
    TrainingDefault.ALWAYS,
]
_REVIEW_RANK = [HumanReview.NONE, HumanReview.FLAGGED_ONLY, HumanReview.SAMPLED, HumanReview.YES]
_ZDR_RANK = [
    ZdrAvailability.DEFAULT,
    ZdrAvailability.SELF_SERVE,
    ZdrAvailability.APPROVAL_REQUIRED,
    ZdrAvailability.ENTERPRISE_ONLY,
    ZdrAvailability.NOT_AVAILABLE,
]


def _rank(order: Sequence[object], value: object) -> int:
    return order.index(value) if value in order else len(order)  # unknown is the least private


def _retention_rank(value: RetentionValue) -> float:
    if value.qualifier is RetentionQualifier.UNKNOWN:
        return float("inf")
    if value.is_zero:
        return 0.0
    if value.qualifier in (RetentionQualifier.UNTIL_DELETED, RetentionQualifier.AS_LONG_AS_NECESSARY):
        return 1e9
    return float(value.days if value.days is not None else 1e9)


def _source_date(sid: str, sources: Mapping[str, Source], as_of: date) -> date:
    found = sources.get(sid)
    return found.date_stated if found is not None and found.date_stated is not None else as_of


def fact_date(src: Iterable[str], sources: Mapping[str, Source], as_of: date) -> date:
    """The oldest date among a fact's sources (a source without a date counts as the entry's as_of).

    The oldest, not the newest: a fact that rests on an old page partly rests on what that page
    said then, so it is due for re-verification from that page's date (fail closed).
    """
    dates = [_source_date(sid, sources, as_of) for sid in src]
    return min(dates) if dates else as_of


def fact_confidence(
    src: Iterable[str], sources: Mapping[str, Source], *, explicit: Confidence | None, conflicted: bool
) -> Confidence:
    """Explicit, else low on a conflict or with only secondary sources, medium with some, else high."""
    if conflicted:
        return Confidence.LOW
    if explicit is not None:
        return explicit
    publishers = [sources[sid].publisher for sid in src if sid in sources]
    secondary = sum(p is Publisher.SECONDARY for p in publishers)
    if not publishers or secondary == len(publishers):
        return Confidence.LOW
    return Confidence.MEDIUM if secondary else Confidence.HIGH


class _Builder:
    """Dates, confidence and conflicts of one channel's facts."""

    def __init__(self, channel: Channel, sources: Mapping[str, Source]) -> None:
        self.channel = channel
        self.sources = sources
        self.operator = channel.kind is Kind.SELF_HOSTED

    def readings(self, name: FactName) -> list[str]:
        return [r for c in self.channel.conflicts if c.fact is name for r in c.readings]

    def conflicted(self, name: FactName) -> bool:
        return any(c.fact is name for c in self.channel.conflicts)

    def fact(
        self,
        name: FactName | None,
        value: T,
        src: Sequence[str],
        *,
        origin: Origin = Origin.CATALOG,
        explicit: Confidence | None = None,
    ) -> Fact[T]:
        conflicted = name is not None and self.conflicted(name)
        if self.operator and origin is Origin.CATALOG:
            return Fact(value, tuple(src), Origin.OPERATOR, None, None, Confidence.HIGH, conflicted)
        return Fact(
            value,
            tuple(src),
            origin,
            None,
            fact_date(src, self.sources, self.channel.as_of),
            fact_confidence(src, self.sources, explicit=explicit, conflicted=conflicted),
            conflicted,
        )

    def catalog_fact(self, name: FactName, value: T) -> Fact[T]:
        explicit = self.channel.fact_confidence(name)
        return self.fact(name, value, self.channel.fact_src(name), explicit=explicit)


def _least_private(
    builder: _Builder, channel: Channel
) -> tuple[TrainingDefault, RetentionValue, HumanReview, RegionsValue, ZdrAvailability]:
    training = channel.training.default
    for r in builder.readings(FactName.TRAINING):
        training = max(training, TrainingDefault(r), key=lambda v: _rank(_TRAINING_RANK, v))
    retention = RetentionValue(channel.retention.days, channel.retention.qualifier)
    for r in builder.readings(FactName.RETENTION):
        qualifier, days = parse_retention_reading(r)
        retention = max(retention, RetentionValue(days, qualifier), key=_retention_rank)
    review = channel.human_review.value
    for r in builder.readings(FactName.HUMAN_REVIEW):
        review = max(review, HumanReview(r), key=lambda v: _rank(_REVIEW_RANK, v))
    zdr = channel.zdr.availability
    for r in builder.readings(FactName.ZDR):
        zdr = max(zdr, ZdrAvailability(r), key=lambda v: _rank(_ZDR_RANK, v))
    extra = frozenset(Region(r) for r in builder.readings(FactName.REGIONS))
    regions = RegionsValue(
        frozenset(channel.regions.processing) | extra, frozenset(channel.regions.storage) | extra
    )
    return training, retention, review, regions, zdr


def _features(
    builder: _Builder, channel: Channel, *, unknown: bool, zdr_attested: Attestation | None
) -> Mapping[FeatureId, FeatureFact]:
    out: dict[FeatureId, FeatureFact] = {}
    if unknown:
        return MappingProxyType(out)
    for feature, facts in channel.features.items():
        out[feature] = _feature(builder, feature, facts, zdr_attested)
    return MappingProxyType(out)


def _feature(
    builder: _Builder, feature: FeatureId, facts: FeatureFacts, zdr_attested: Attestation | None
) -> FeatureFact:
    retention = builder.fact(
        None,
        RetentionValue(facts.retention_days, facts.retention_qualifier),
        facts.src,
        explicit=facts.confidence,
    )
    if zdr_attested is not None and facts.zdr_eligible:
        zero = RetentionValue(0, RetentionQualifier.NONE)
        retention = Fact(zero, (), Origin.ATTESTATION, zdr_attested.evidence)
    return FeatureFact(
        feature, True, facts.offered, retention, facts.third_party, facts.zdr_eligible, facts.notes
    )


def effective_facts(
    channel: Channel,
    *,
    model: str,
    sources: Mapping[str, Source],
    today: date,
    host: str | None = None,
    attestations: Iterable[Attestation] = (),
    public_hosts: Iterable[tuple[str, str]] = (),
) -> EffectiveFacts:
    """Fold the catalog entry, the model overrides and the operator's attestations for one deployment.

    `public_hosts` ((pattern, channel id) of the catalog's API channels, `Catalog.public_hosts()`)
    lets the self-hosted host rule refuse a public provider's host even when attested.
    """
    b = _Builder(channel, sources)
    worst_training, worst_retention, worst_review, worst_regions, worst_zdr = _least_private(b, channel)
    training = b.catalog_fact(FactName.TRAINING, worst_training)
    retention = b.catalog_fact(FactName.RETENTION, worst_retention)
    review = b.catalog_fact(FactName.HUMAN_REVIEW, worst_review)
    regions = b.catalog_fact(FactName.REGIONS, worst_regions)
    zdr = b.catalog_fact(FactName.ZDR, worst_zdr)

    overrides = tuple(o for o in channel.model_overrides if _override_matches(o, model))
    zdr_locked = False
    locked: set[FactName] = set()
    unknown_retention = RetentionValue(None, RetentionQualifier.UNKNOWN)
    unknown_regions = RegionsValue(frozenset({Region.UNKNOWN}), frozenset({Region.UNKNOWN}))
    onward = False
    for override in overrides:
        src = tuple(override.src)
        over = Origin.MODEL_OVERRIDE
        if override.routes_onward:
            # The channel hands these model ids on; its own facts say nothing about where they go.
            onward = True
            training = b.fact(None, TrainingDefault.UNKNOWN, src, origin=over)
            retention = b.fact(None, unknown_retention, src, origin=over)
            review = b.fact(None, HumanReview.UNKNOWN, src, origin=over)
            regions = b.fact(None, unknown_regions, src, origin=over)
            continue
        if override.training is not None:
            training = b.fact(None, override.training, src, origin=over)
        if override.retention_days is not None or override.retention_qualifier is not None:
            qualifier = override.retention_qualifier or RetentionQualifier.UP_TO
            retention = b.fact(None, RetentionValue(override.retention_days, qualifier), src, origin=over)
        if override.human_review is not None:
            review = b.fact(None, override.human_review, src, origin=over)
        if override.shares_with is not None:
            # The data goes to a third party under its terms: no attestation about this account
            # changes what that party does, and where it processes the data is not known.
            regions = b.fact(None, unknown_regions, src, origin=over)
            locked |= {FactName.TRAINING, FactName.HUMAN_REVIEW, FactName.REGIONS}
        zdr_locked = zdr_locked or override.overrides_zdr

    if channel.router:
        # A router forwards to upstreams that vary per request: its own policy says nothing about
        # theirs, so these facts are unknown unless the operator attests an account-wide setting.
        onward = True
        training = b.fact(None, TrainingDefault.UNKNOWN, channel.training.src)
        retention = b.fact(None, unknown_retention, channel.retention.src)
        review = b.fact(None, HumanReview.UNKNOWN, channel.human_review.src)

    applied = tuple(
        a for a in attestations if a.applies_to(channel, model) and attestation_problem(channel, a) is None
    )
    zdr_attested: Attestation | None = None
    att_origin = Origin.ATTESTATION
    for att in applied:
        ev = att.evidence
        match att.fact:
            case AttestationFact.TRAINING_OPTED_OUT if FactName.TRAINING not in locked:
                training = Fact(TrainingDefault.NEVER, training.src, att_origin, ev)
            case AttestationFact.ZERO_DATA_RETENTION if not zdr_locked:
                retention = Fact(RetentionValue(0, RetentionQualifier.NONE), (), att_origin, ev)
                zdr_attested = att
            case AttestationFact.NO_HUMAN_REVIEW if FactName.HUMAN_REVIEW not in locked:
                review = Fact(HumanReview.NONE, (), att_origin, ev)
            case AttestationFact.EU_RESIDENCY if FactName.REGIONS not in locked:
                eu = frozenset({Region.EU})
                regions = Fact(RegionsValue(eu, eu), (), att_origin, ev)
    for att in applied:
        # Opting in wins over any opt-out: the account's data is trained on.
        if att.fact is AttestationFact.TRAINING_OPTED_IN:
            training = Fact(TrainingDefault.ALWAYS, training.src, att_origin, att.evidence)

    host_problem = _host_problem(channel, host, applied, public_hosts)
    attested_facts = {a.fact for a in applied}
    missing = tuple(f for f in channel.requires_attestation if f not in attested_facts)
    return EffectiveFacts(
        channel=channel,
        model=model,
        host=host,
        host_ok=host_problem is None,
        training=training,
        retention=retention,
        human_review=review,
        regions=regions,
        zdr=zdr,
        today=today,
        sources=sources,
        host_problem=host_problem,
        missing_attestations=missing,
        attestations=applied,
        overrides=overrides,
        routes_onward=onward,
        features=_features(b, channel, unknown=onward, zdr_attested=zdr_attested),
    )


def _host_problem(
    channel: Channel,
    host: str | None,
    applied: Sequence[Attestation],
    public_hosts: Iterable[tuple[str, str]],
) -> str | None:
    if channel.kind is Kind.SELF_HOSTED:
        owned = [h for a in applied if a.fact is AttestationFact.OPERATOR_HOST for h in a.hosts]
        return self_hosted_problem(host, public_hosts=public_hosts, operator_hosts=owned)
    if channel.kind is Kind.CONSUMER:
        return "a consumer product, never an API channel"
    if host is None or host_allowed(channel, host):
        return None
    return f"host {host} is not one of the channel's official API hosts"


__all__ = [
    "STALE_AFTER",
    "Attestation",
    "EffectiveFacts",
    "Fact",
    "FeatureFact",
    "Origin",
    "RegionsValue",
    "RetentionValue",
    "attestation_problem",
    "effective_facts",
    "fact_confidence",
    "fact_date",
]
