"""Effective facts of one deployment: catalog entry, then model overrides, then attestations.

What belongs here: the operator's attestations as domain objects, which attestation a
channel can accept, and `effective_facts()`, which folds the three layers into one frozen
value that the engine and badge derivation read. Pure and deterministic: "today" is an
argument, never read from a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Generic, TypeVar

from policies.catalog import host_allowed
from policies.schema import (
    AttestationFact,
    Channel,
    Confidence,
    HumanReview,
    Kind,
    ModelOverride,
    Region,
    RetentionQualifier,
    Source,
    TrainingDefault,
    ZdrAvailability,
)

STALE_AFTER = timedelta(days=180)

T_co = TypeVar("T_co", covariant=True)


class Origin(StrEnum):
    CATALOG = "catalog"
    MODEL_OVERRIDE = "model_override"
    ATTESTATION = "attestation"


@dataclass(frozen=True)
class Attestation:
    """A fact the operator declares for their own account; shown as attested, never merged silently."""

    provider: str
    fact: AttestationFact
    evidence: str
    channel: str | None = None
    models: tuple[str, ...] = ()

    def applies_to(self, channel: Channel, model: str) -> bool:
        if self.provider != channel.provider:
            return False
        if self.channel is not None and self.channel != channel.id:
            return False
        bare = model.split("/", 1)[-1]
        return not self.models or any(fnmatchcase(model, g) or fnmatchcase(bare, g) for g in self.models)


@dataclass(frozen=True)
class Fact(Generic[T_co]):
    value: T_co
    src: tuple[str, ...]
    origin: Origin = Origin.CATALOG
    evidence: str | None = None

    @property
    def attested(self) -> bool:
        return self.origin is Origin.ATTESTATION


@dataclass(frozen=True)
class RetentionValue:
    days: int | None
    qualifier: RetentionQualifier

    @property
    def is_zero(self) -> bool:
        return self.qualifier is RetentionQualifier.NONE or (
            self.days == 0 and self.qualifier is not RetentionQualifier.UNKNOWN
        )


@dataclass(frozen=True)
class RegionsValue:
    processing: frozenset[Region]
    storage: frozenset[Region]


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
    zdr_available: ZdrAvailability
    sources: Mapping[str, Source] = field(repr=False)
    missing_attestations: tuple[AttestationFact, ...] = ()
    attestations: tuple[Attestation, ...] = ()
    overrides: tuple[ModelOverride, ...] = ()
    stale: bool = False

    @property
    def unreliable(self) -> bool:
        """Low confidence and stale: DESIGN.md treats every fact of such an entry as unknown."""
        return self.stale and self.channel.confidence is Confidence.LOW

    @property
    def attested(self) -> bool:
        return bool(self.attestations)


def attestation_problem(channel: Channel, attestation: Attestation) -> str | None:
    """Why `attestation` cannot apply to `channel`, or None. Used to refuse bad configs at start-up."""
    name = channel.name
    match attestation.fact:
        case AttestationFact.TRAINING_OPTED_OUT if (
            channel.training.default is not TrainingDefault.OPT_OUT and not channel.router
        ):
            return f"{name} has no training opt-out to attest (training: {channel.training.default})"
        case AttestationFact.ZERO_DATA_RETENTION if channel.zdr.availability in (
            ZdrAvailability.NOT_AVAILABLE,
            ZdrAvailability.UNKNOWN,
        ):
            return f"{name} offers no zero-data-retention agreement (zdr: {channel.zdr.availability})"
        case AttestationFact.PAID_TIER if AttestationFact.PAID_TIER not in channel.requires_attestation:
            return f"{name} is not a paid tier that needs attesting"
    if channel.kind is Kind.CONSUMER:
        return f"{name} is a consumer channel; attestations do not make it routable"
    return None


def _override_matches(override: ModelOverride, model: str) -> bool:
    bare = model.split("/", 1)[-1]
    return any(fnmatchcase(model, glob) or fnmatchcase(bare, glob) for glob in override.models)


def effective_facts(
    channel: Channel,
    *,
    model: str,
    sources: Mapping[str, Source],
    today: date,
    host: str | None = None,
    attestations: Iterable[Attestation] = (),
) -> EffectiveFacts:
    """Fold the catalog entry, the model overrides and the operator's attestations for one deployment."""
    training = Fact(channel.training.default, tuple(channel.training.src))
    retention = Fact(
        RetentionValue(channel.retention.days, channel.retention.qualifier), tuple(channel.retention.src)
    )
    review = Fact(channel.human_review.value, tuple(channel.human_review.src))
    regions = Fact(
        RegionsValue(frozenset(channel.regions.processing), frozenset(channel.regions.storage)),
        tuple(channel.regions.src),
    )

    overrides = tuple(o for o in channel.model_overrides if _override_matches(o, model))
    zdr_locked = False
    for override in overrides:
        src = tuple(override.src)
        if override.training is not None:
            training = Fact(override.training, src, Origin.MODEL_OVERRIDE)
        if override.retention_days is not None or override.retention_qualifier is not None:
            qualifier = override.retention_qualifier or RetentionQualifier.UP_TO
            retention = Fact(RetentionValue(override.retention_days, qualifier), src, Origin.MODEL_OVERRIDE)
        if override.human_review is not None:
            review = Fact(override.human_review, src, Origin.MODEL_OVERRIDE)
        zdr_locked = zdr_locked or override.overrides_zdr

    if channel.router:
        # A router forwards to upstreams that vary per request: its own policy says nothing about
        # theirs, so these facts are unknown unless the operator attests an account-wide setting.
        why = tuple(channel.training.src)
        training = Fact(TrainingDefault.UNKNOWN, why)
        retention = Fact(RetentionValue(None, RetentionQualifier.UNKNOWN), tuple(channel.retention.src))
        review = Fact(HumanReview.UNKNOWN, tuple(channel.human_review.src))

    applied = tuple(
        a for a in attestations if a.applies_to(channel, model) and attestation_problem(channel, a) is None
    )
    for att in applied:
        ev = att.evidence
        match att.fact:
            case AttestationFact.TRAINING_OPTED_OUT:
                training = Fact(TrainingDefault.NEVER, training.src, Origin.ATTESTATION, ev)
            case AttestationFact.ZERO_DATA_RETENTION if not zdr_locked:
                retention = Fact(RetentionValue(0, RetentionQualifier.NONE), (), Origin.ATTESTATION, ev)
            case AttestationFact.NO_HUMAN_REVIEW:
                review = Fact(HumanReview.NONE, (), Origin.ATTESTATION, ev)
            case AttestationFact.EU_RESIDENCY:
                eu = frozenset({Region.EU})
                regions = Fact(RegionsValue(eu, eu), (), Origin.ATTESTATION, ev)

    attested_facts = {a.fact for a in applied}
    missing = tuple(f for f in channel.requires_attestation if f not in attested_facts)
    return EffectiveFacts(
        channel=channel,
        model=model,
        host=host,
        host_ok=host_allowed(channel, host) if host is not None else channel.kind is not Kind.CONSUMER,
        training=training,
        retention=retention,
        human_review=review,
        regions=regions,
        zdr_available=channel.zdr.availability,
        sources=sources,
        missing_attestations=missing,
        attestations=applied,
        overrides=overrides,
        stale=today - channel.as_of > STALE_AFTER,
    )
