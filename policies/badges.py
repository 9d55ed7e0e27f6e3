"""Badges: a small, stable vocabulary derived from a deployment's effective facts.

What belongs here: badge ids (one `StrEnum`, and one for the data paths a request used), their
labels, levels and descriptions, `derive_badges()` and `derive_feature_badges()`. The ids are on
the wire (`X-Privacy-Badges`); changing one is a breaking change for clients that filter on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from policies.facts import EffectiveFacts, Fact
from policies.schema import FeatureId, HumanReview, Kind, Region, TrainingDefault


class Level(StrEnum):
    GOOD = "good"
    CAUTION = "caution"
    BAD = "bad"


class BadgeId(StrEnum):
    API_CHANNEL = "api-channel"
    SELF_HOSTED = "self-hosted"
    CONSUMER_CHANNEL = "consumer-channel"
    NO_TRAINING = "no-training"
    TRAINING_OPT_IN = "training-opt-in"
    TRAINING_OPT_OUT = "training-opt-out"
    TRAINS_ON_DATA = "trains-on-data"
    TRAINING_UNKNOWN = "training-unknown"
    ZDR = "zdr"
    RETENTION_UNKNOWN = "retention-unknown"
    HUMAN_REVIEW = "human-review"
    HUMAN_REVIEW_FLAGGED = "human-review-flagged"
    REGION_EU = "region-eu"
    REGION_US = "region-us"
    ATTESTED = "attested"
    STALE = "stale"
    CONFLICTING_SOURCES = "conflicting-sources"
    ROUTED_ONWARD = "routed-onward"


RETENTION_PREFIX = "retention-"
STORED_PREFIX = "stored-"


class FeatureBadgeId(StrEnum):
    """Badges of the data paths a request used (DESIGN.md, Data paths); `stored-<N>d` is built from days."""

    STORED = "stored"
    EXTENDED_CACHE = "extended-cache"
    WEB_SEARCH = "web-search"
    CODE_EXECUTION = "code-execution"
    REMOTE_MCP = "remote-mcp"


@dataclass(frozen=True)
class Badge:
    id: str
    label: str
    level: Level
    description: str
    source: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "label": self.label,
            "level": self.level.value,
            "description": self.description,
            "source": self.source,
        }


# id -> (label, level, description); retention-<N>d is built from the day count.
VOCABULARY: dict[str, tuple[str, Level, str]] = {
    BadgeId.API_CHANNEL: (
        "API channel",
        Level.GOOD,
        "Served through the provider's API, not a consumer product.",
    ),
    BadgeId.SELF_HOSTED: (
        "Self-hosted",
        Level.GOOD,
        "Served by a model the operator runs; no data goes to a provider.",
    ),
    BadgeId.CONSUMER_CHANNEL: ("Consumer product", Level.BAD, "A consumer app; Sluice never routes to it."),
    BadgeId.NO_TRAINING: ("No training", Level.GOOD, "The provider does not train on this data."),
    BadgeId.TRAINING_OPT_IN: (
        "Training only if opted in",
        Level.CAUTION,
        "Not used for training unless the account opts in.",
    ),
    BadgeId.TRAINING_OPT_OUT: (
        "Trains unless opted out",
        Level.BAD,
        "Used for training unless the account opts out; no opt-out is attested.",
    ),
    BadgeId.TRAINS_ON_DATA: ("Trains on data", Level.BAD, "Inputs may be used to train or improve models."),
    BadgeId.TRAINING_UNKNOWN: (
        "Training unknown",
        Level.BAD,
        "No source says whether this data is trained on.",
    ),
    BadgeId.ZDR: ("Zero data retention", Level.GOOD, "Prompts and outputs are not retained by the provider."),
    BadgeId.RETENTION_UNKNOWN: (
        "Retention unknown",
        Level.BAD,
        "No source gives a retention period, or data is kept as long as the provider deems necessary.",
    ),
    BadgeId.HUMAN_REVIEW: ("Human review", Level.BAD, "People at the provider may read the data."),
    BadgeId.HUMAN_REVIEW_FLAGGED: (
        "Human review if flagged",
        Level.CAUTION,
        "People at the provider may read content flagged by abuse classifiers.",
    ),
    BadgeId.REGION_EU: ("EU", Level.GOOD, "Processed and stored in the European Union."),
    BadgeId.REGION_US: ("US", Level.CAUTION, "Processed and stored in the United States."),
    BadgeId.ATTESTED: (
        "Operator attested",
        Level.CAUTION,
        "Some facts rest on the operator's attestation for its own account, not on public sources.",
    ),
    BadgeId.STALE: (
        "Stale facts",
        Level.CAUTION,
        "A fact's source is more than 180 days old on the day of the request; re-verify it.",
    ),
    BadgeId.ROUTED_ONWARD: (
        "Routed onward",
        Level.BAD,
        "The channel hands this model on to an upstream the catalog cannot see; its facts are unknown.",
    ),
    BadgeId.CONFLICTING_SOURCES: (
        "Sources conflict",
        Level.CAUTION,
        "The provider's pages disagree about a fact; the less private reading is the one judged.",
    ),
}

_TRAINING_BADGE = {
    TrainingDefault.NEVER: BadgeId.NO_TRAINING,
    TrainingDefault.OPT_IN: BadgeId.TRAINING_OPT_IN,
    TrainingDefault.OPT_OUT: BadgeId.TRAINING_OPT_OUT,
    TrainingDefault.ALWAYS: BadgeId.TRAINS_ON_DATA,
    TrainingDefault.UNKNOWN: BadgeId.TRAINING_UNKNOWN,
}

_REVIEW_BADGE = {
    HumanReview.YES: BadgeId.HUMAN_REVIEW,
    HumanReview.SAMPLED: BadgeId.HUMAN_REVIEW,
    HumanReview.FLAGGED_ONLY: BadgeId.HUMAN_REVIEW_FLAGGED,
}


FEATURE_VOCABULARY: dict[str, tuple[str, Level, str]] = {
    FeatureBadgeId.STORED: (
        "Stored by the provider",
        Level.CAUTION,
        "The provider stores the response (stored response, background mode); for how long is not known.",
    ),
    FeatureBadgeId.EXTENDED_CACHE: (
        "Extended prompt cache",
        Level.CAUTION,
        "The provider keeps a cache derived from the prompt beyond its default lifetime.",
    ),
    FeatureBadgeId.WEB_SEARCH: (
        "Web search",
        Level.CAUTION,
        "The provider searches or fetches the web with content derived from the request.",
    ),
    FeatureBadgeId.CODE_EXECUTION: (
        "Code execution",
        Level.CAUTION,
        "The provider runs code or searches files in a hosted container.",
    ),
    FeatureBadgeId.REMOTE_MCP: (
        "Remote MCP server",
        Level.BAD,
        "The provider sends data to an MCP server the request names, under that server's own policy.",
    ),
}

_FEATURE_BADGE = {
    FeatureId.EXTENDED_CACHE: FeatureBadgeId.EXTENDED_CACHE,
    FeatureId.SERVER_WEB_SEARCH: FeatureBadgeId.WEB_SEARCH,
    FeatureId.SERVER_CODE_EXECUTION: FeatureBadgeId.CODE_EXECUTION,
    FeatureId.REMOTE_MCP: FeatureBadgeId.REMOTE_MCP,
}


def derive_feature_badges(facts: EffectiveFacts, features: Iterable[FeatureId]) -> tuple[Badge, ...]:
    """Badges of the data paths a request used, in FeatureId order, each citing its fact's source."""
    out: list[Badge] = []
    used = set(features)
    for feature_id in (f for f in FeatureId if f in used):
        feature = facts.feature(feature_id)
        url = None
        if feature.retention.src:
            found = facts.sources.get(feature.retention.src[0])
            url = str(found.url) if found is not None else None
        if feature_id is FeatureId.STORED_RESPONSE:
            days = feature.retention.value.days
            if days is not None and not feature.retention.value.is_zero:
                out.append(
                    Badge(
                        f"{STORED_PREFIX}{days}d",
                        f"Stored up to {days} days",
                        Level.CAUTION,
                        f"The provider stores the response for up to {days} days.",
                        url,
                    )
                )
                continue
            feature_badge = FeatureBadgeId.STORED
        else:
            feature_badge = _FEATURE_BADGE[feature_id]
        label, level, description = FEATURE_VOCABULARY[feature_badge]
        out.append(Badge(str(feature_badge), label, level, description, url))
    return tuple(out)


def badge(badge_id: str, source: str | None = None) -> Badge:
    if badge_id.startswith(RETENTION_PREFIX) and badge_id.endswith("d") and badge_id not in VOCABULARY:
        days = badge_id[len(RETENTION_PREFIX) : -1]
        return Badge(
            badge_id,
            f"Kept up to {days} days",
            Level.CAUTION,
            f"The provider keeps prompts and outputs for up to {days} days (abuse monitoring).",
            source,
        )
    label, level, description = VOCABULARY[badge_id]
    return Badge(str(badge_id), label, level, description, source)


def _src_url(facts: EffectiveFacts, fact: Fact[object] | None = None) -> str | None:
    ids = fact.src if fact is not None and fact.src else (facts.channel.main_source,)
    found = facts.sources.get(ids[0])
    return str(found.url) if found is not None else None


def derive_badges(facts: EffectiveFacts, today: date | None = None) -> tuple[Badge, ...]:
    """One deployment's badges on `today` (default: the day the facts carry), in a stable order:
    channel, training, retention, review, region, caveats. A fact that is low-confidence and
    stale that day shows as unknown."""
    if today is not None:
        facts = facts.on(today)
    channel = facts.channel
    out: list[Badge] = []
    kind_badge = {
        Kind.API: BadgeId.API_CHANNEL,
        Kind.SELF_HOSTED: BadgeId.SELF_HOSTED,
        Kind.CONSUMER: BadgeId.CONSUMER_CHANNEL,
    }[channel.kind]
    if channel.kind is Kind.SELF_HOSTED and facts.routes_onward:
        # A cloud model behind a local server: the data leaves the operator's host.
        kind_badge = BadgeId.ROUTED_ONWARD
    out.append(badge(kind_badge, _src_url(facts)))
    attested_ok = not facts.missing_attestations

    def reliable(fact: Fact[object]) -> bool:
        return attested_ok and not facts.is_unreliable(fact)

    training = facts.training.value if reliable(facts.training) else TrainingDefault.UNKNOWN
    out.append(badge(_TRAINING_BADGE[training], _src_url(facts, facts.training)))

    retention = facts.retention.value
    if not reliable(facts.retention) or (retention.days is None and not retention.is_zero):
        out.append(badge(BadgeId.RETENTION_UNKNOWN, _src_url(facts, facts.retention)))
    elif retention.is_zero:
        if channel.kind is not Kind.SELF_HOSTED:
            out.append(badge(BadgeId.ZDR, _src_url(facts, facts.retention)))
    else:
        out.append(badge(f"{RETENTION_PREFIX}{retention.days}d", _src_url(facts, facts.retention)))

    review_id = _REVIEW_BADGE.get(facts.human_review.value) if reliable(facts.human_review) else None
    if review_id is not None:
        out.append(badge(review_id, _src_url(facts, facts.human_review)))

    regions = facts.regions.value
    everywhere = regions.processing | regions.storage
    if reliable(facts.regions) and regions.processing and regions.storage:
        if everywhere == {Region.EU}:
            out.append(badge(BadgeId.REGION_EU, _src_url(facts, facts.regions)))
        elif everywhere == {Region.US}:
            out.append(badge(BadgeId.REGION_US, _src_url(facts, facts.regions)))

    if facts.routes_onward and kind_badge is not BadgeId.ROUTED_ONWARD:
        out.append(badge(BadgeId.ROUTED_ONWARD, _src_url(facts)))
    if facts.attested:
        out.append(badge(BadgeId.ATTESTED))
    if facts.stale:
        out.append(badge(BadgeId.STALE, _src_url(facts)))
    if facts.conflicted_facts:
        out.append(badge(BadgeId.CONFLICTING_SOURCES, _src_url(facts)))
    return tuple(out)
