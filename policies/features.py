"""Request features that move data (DESIGN.md, Data paths), judged against one requirement.

What belongs here: `check_feature()`, which says whether a deployment can serve one feature
(`stored_response`, `extended_cache`, `server_web_search`, `server_code_execution`, `remote_mcp`)
under one requirement, with a one-line reason. The channel's own facts are judged by the engine;
this adds what the feature changes: what it stores and for how long, and whether it sends data to
a third party (a search engine, an MCP server the client names), whose policy the catalog does not
hold. A feature the catalog has no facts for fails every fact-based requirement, as any unknown.
"""

from __future__ import annotations

from policies.facts import EffectiveFacts, FeatureFact
from policies.policy import Requirement
from policies.schema import FeatureId, Kind

_FACT_BASED = frozenset(
    {
        Requirement.NO_TRAINING,
        Requirement.ZERO_RETENTION,
        Requirement.MAX_RETENTION_DAYS,
        Requirement.NO_HUMAN_REVIEW,
        Requirement.EU_RESIDENCY,
        Requirement.SELF_HOSTED,
    }
)

_THIRD_PARTY = {
    Requirement.NO_TRAINING: "whose training policy",
    Requirement.ZERO_RETENTION: "whose retention",
    Requirement.MAX_RETENTION_DAYS: "whose retention",
    Requirement.NO_HUMAN_REVIEW: "whose human review",
    Requirement.EU_RESIDENCY: "whose location",
    Requirement.SELF_HOSTED: "off the operator's host; its policy",
}


def _retention_text(feature: FeatureFact) -> str:
    return feature.retention.value.describe(unknown="keeps data for an unknown time", zero="keeps nothing")


def check_feature(
    facts: EffectiveFacts,
    requirement: Requirement,
    feature_id: FeatureId,
    max_days: int | None = None,
    *,
    vetted: bool = False,
) -> tuple[bool, str, tuple[str, ...]]:
    """(passed, reason, sources) for one feature of a request under one requirement. `vetted`: the
    third party is one the operator lists with its own facts (`remote_mcp` to a tool host), judged
    by `policies.tool_hosts` beside this check instead of failing as outside the catalog."""
    name = facts.channel.name
    feature = facts.feature(feature_id)
    src = feature.retention.src
    label = feature_id.value

    def out(passed: bool, text: str) -> tuple[bool, str, tuple[str, ...]]:
        cite = f" [source {', '.join(src)}]" if src and not feature.retention.attested else ""
        if feature.retention.attested:
            cite = f" (attested: {feature.retention.evidence})"
        return passed, f"{name}: {label}: {text}{cite}", src

    if requirement is Requirement.API_CHANNEL:
        if feature.known and not feature.offered:
            return out(False, "not offered on this channel")
        return out(True, "offered" if feature.known else "facts unknown")
    if requirement not in _FACT_BASED:
        return out(True, "no requirement on features")
    if not feature.known:
        return out(False, "the catalog has no facts for this feature here; unknown fails closed")
    if not feature.offered:
        return out(False, "not offered on this channel")
    if facts.is_unreliable(feature.retention):
        return out(False, "facts are low-confidence and stale; treated as unknown")
    retention_limit = requirement in (Requirement.ZERO_RETENTION, Requirement.MAX_RETENTION_DAYS)
    if vetted and feature.third_party is not False and not retention_limit:
        return out(True, "the third party is a listed tool host, judged by its own facts")
    # A listed host's retention is judged by its own facts; what the provider keeps for the
    # feature (often not covered by a zero-data-retention agreement) is judged below.
    if feature.third_party is not False and not vetted:
        who = "sends data to a third party" if feature.third_party else "may send data to a third party"
        return out(False, f"{who} {_THIRD_PARTY[requirement]} is outside the catalog")
    if requirement is Requirement.SELF_HOSTED:
        passed = facts.channel.kind is Kind.SELF_HOSTED
        return out(passed, "stays on the operator's host" if passed else "runs at the provider")
    value = feature.retention.value
    if requirement is Requirement.ZERO_RETENTION:
        text = _retention_text(feature)
        if not value.is_zero and not feature.zdr_eligible:
            text += " (not covered by a zero-data-retention agreement)"
        return out(value.is_zero, text)
    if requirement is Requirement.MAX_RETENTION_DAYS:
        limit = max_days or 0
        return out(value.within(limit), f"{_retention_text(feature)} (limit {limit} days)")
    return out(True, "no third party; the channel's own facts apply")
