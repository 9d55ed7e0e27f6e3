"""The evaluation engine: policies x effective facts -> Decision.

What belongs here: one check per requirement, each returning pass/fail with a one-line human
reason that cites its sources, the checks of request features (DESIGN.md, Data paths), and
`evaluate()`, which is pure and deterministic: the same (policies, facts, day, features) always
give the same decision, so the gateway may cache it per day. Unknown fails closed; so does a fact
that is low-confidence and stale on the day of the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from policies.facts import STALE_AFTER, EffectiveFacts, Fact
from policies.features import check_feature
from policies.policy import Policy, Requirement
from policies.schema import FeatureId, HumanReview, Kind, Region, TrainingDefault
from policies.tool_hosts import ToolHost, check_tool_host


@dataclass(frozen=True)
class Check:
    policy: str
    requirement: Requirement
    passed: bool
    reason: str
    sources: tuple[str, ...] = ()
    attested: bool = False
    feature: FeatureId | None = None


@dataclass(frozen=True)
class Decision:
    channel_id: str
    model: str
    policies: tuple[str, ...]
    checks: tuple[Check, ...]
    day: date | None = None
    features: tuple[FeatureId, ...] = ()

    @property
    def allowed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def reasons(self) -> list[str]:
        """One line per failed requirement (deduplicated), for errors and the ledger."""
        seen: dict[str, None] = {}
        for check in self.failures:
            seen.setdefault(check.reason, None)
        return list(seen)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str
    sources: tuple[str, ...] = ()
    attested: bool = False


def _cite(text: str, fact: Fact[object]) -> str:
    if fact.attested:
        return f"{text} (attested: {fact.evidence})"
    if fact.src:
        return f"{text} [source {', '.join(fact.src)}]"
    return text


def _outcome(passed: bool, facts: EffectiveFacts, text: str, fact: Fact[object] | None = None) -> Outcome:
    name = facts.channel.name
    if fact is None:
        return Outcome(passed, f"{name}: {text}")
    return Outcome(passed, f"{name}: {_cite(text, fact)}", fact.src, fact.attested)


def _unreliable(facts: EffectiveFacts, fact: Fact[object] | None = None, label: str = "") -> Outcome | None:
    if fact is not None and facts.is_unreliable(fact):
        return _outcome(
            False,
            facts,
            f"the {label} fact is low-confidence and its source is older than {STALE_AFTER.days} days "
            f"(dated {fact.dated}); treated as unknown, which fails closed",
            fact,
        )
    if facts.missing_attestations:
        missing = ", ".join(facts.missing_attestations)
        return _outcome(
            False,
            facts,
            f"needs an operator attestation ({missing}): the same host also serves a plan "
            "with a different data policy",
        )
    return None


def check_api_channel(facts: EffectiveFacts, _: Policy) -> Outcome:
    channel = facts.channel
    if channel.kind is Kind.CONSUMER:
        return _outcome(False, facts, "a consumer product, never an API channel")
    if facts.host_problem is not None:
        return _outcome(False, facts, facts.host_problem)
    return _outcome(
        True, facts, "self-hosted" if channel.kind is Kind.SELF_HOSTED else "provider API channel"
    )


_TRAINING_TEXT = {
    TrainingDefault.NEVER: (True, "not used for training"),
    TrainingDefault.OPT_IN: (True, "not used for training unless the account opts in"),
    TrainingDefault.OPT_OUT: (
        False,
        "used for training unless the account opts out, and no opt-out is attested",
    ),
    TrainingDefault.ALWAYS: (False, "inputs may be used for training, with no opt-out on this channel"),
    TrainingDefault.UNKNOWN: (False, "training policy unknown; unknown fails closed"),
}


def check_no_training(facts: EffectiveFacts, _: Policy) -> Outcome:
    if (bad := _unreliable(facts, facts.training, "training")) is not None:
        return bad
    passed, text = _TRAINING_TEXT[facts.training.value]
    if facts.training.attested:
        opted_in = facts.training.value is TrainingDefault.ALWAYS
        text = "the account opted in to training" if opted_in else "the account opted out of training"
    elif facts.routes_onward:
        text = f"model {facts.model} is handed on to an upstream the catalog cannot know; {text}"
    return _outcome(passed, facts, text, facts.training)


def _retention_text(facts: EffectiveFacts) -> str:
    return facts.retention.value.describe(
        unknown="retention unknown; unknown fails closed", zero="zero data retention"
    )


def check_zero_retention(facts: EffectiveFacts, _: Policy) -> Outcome:
    if (bad := _unreliable(facts, facts.retention, "retention")) is not None:
        return bad
    text = _retention_text(facts)
    if not facts.retention.value.is_zero and not facts.retention.attested:
        text += f" (zero-data-retention: {facts.zdr_available.replace('_', ' ')})"
    return _outcome(facts.retention.value.is_zero, facts, text, facts.retention)


def check_max_retention(facts: EffectiveFacts, policy: Policy) -> Outcome:
    if (bad := _unreliable(facts, facts.retention, "retention")) is not None:
        return bad
    limit = policy.max_retention_days if policy.max_retention_days is not None else 0
    within = facts.retention.value.within(limit)
    return _outcome(within, facts, f"{_retention_text(facts)} (limit {limit} days)", facts.retention)


_REVIEW_TEXT = {
    HumanReview.NONE: "no human review",
    HumanReview.FLAGGED_ONLY: "humans may review content flagged for abuse",
    HumanReview.SAMPLED: "humans review a sample of content",
    HumanReview.YES: "human reviewers may read the data",
    HumanReview.UNKNOWN: "human review unknown; unknown fails closed",
}


def check_no_human_review(facts: EffectiveFacts, _: Policy) -> Outcome:
    if (bad := _unreliable(facts, facts.human_review, "human review")) is not None:
        return bad
    value = facts.human_review.value
    return _outcome(value is HumanReview.NONE, facts, _REVIEW_TEXT[value], facts.human_review)


# Written out, so that each reads as English ("an API channel", never "a api channel").
_KIND_TEXT = {
    Kind.API: "an API channel",
    Kind.CONSUMER: "a consumer product",
    Kind.SELF_HOSTED: "a self-hosted channel",
}


def check_self_hosted(facts: EffectiveFacts, _: Policy) -> Outcome:
    if facts.channel.kind is Kind.SELF_HOSTED and facts.routes_onward:
        return _outcome(
            False, facts, f"model {facts.model} runs off the operator's host (the server hands it on)"
        )
    if facts.channel.kind is Kind.SELF_HOSTED:
        return _outcome(True, facts, "runs on the operator's own host")
    return _outcome(False, facts, f"{_KIND_TEXT[facts.channel.kind]}, not self-hosted")


def check_eu_residency(facts: EffectiveFacts, _: Policy) -> Outcome:
    if (bad := _unreliable(facts, facts.regions, "regions")) is not None:
        return bad
    regions = facts.regions.value
    everywhere = regions.processing | regions.storage
    in_eu = bool(regions.processing) and bool(regions.storage) and everywhere == {Region.EU}
    if in_eu:
        text = "processed and stored in the EU"
    elif Region.OPERATOR in everywhere:
        text = "runs wherever the operator hosts it; EU residency not attested"
    else:
        text = f"processing/storage regions: {', '.join(sorted(everywhere)) or 'unknown'}"
    return _outcome(in_eu, facts, text, facts.regions)


CHECKS: dict[Requirement, Callable[[EffectiveFacts, Policy], Outcome]] = {
    Requirement.API_CHANNEL: check_api_channel,
    Requirement.NO_TRAINING: check_no_training,
    Requirement.ZERO_RETENTION: check_zero_retention,
    Requirement.NO_HUMAN_REVIEW: check_no_human_review,
    Requirement.SELF_HOSTED: check_self_hosted,
    Requirement.EU_RESIDENCY: check_eu_residency,
    Requirement.MAX_RETENTION_DAYS: check_max_retention,
}


def evaluate(
    policies: Iterable[Policy],
    facts: EffectiveFacts,
    *,
    today: date | None = None,
    features: Iterable[FeatureId] = (),
    tool_hosts: Iterable[ToolHost] = (),
) -> Decision:
    """Every requirement of every policy against one deployment's effective facts, on `today`
    (default: the day the facts carry), and against each request feature the request uses.
    `tool_hosts`: the operator's facts for the MCP servers a `remote_mcp` request names (the caller
    refuses hosts it does not list); each is judged under every requirement too."""
    if today is not None:
        facts = facts.on(today)
    chosen = tuple(policies)
    used = tuple(sorted(set(features)))
    hosts = tuple(tool_hosts) if FeatureId.REMOTE_MCP in used else ()
    checks = []
    for policy in chosen:
        for requirement in policy.requires:
            out = CHECKS[requirement](facts, policy)
            checks.append(Check(policy.name, requirement, out.passed, out.reason, out.sources, out.attested))
            for feature in used:
                vetted = feature is FeatureId.REMOTE_MCP and bool(hosts)
                passed, reason, src = check_feature(
                    facts, requirement, feature, policy.max_retention_days, vetted=vetted
                )
                checks.append(Check(policy.name, requirement, passed, reason, src, False, feature))
            for host in hosts:
                passed, reason = check_tool_host(host, requirement, policy.max_retention_days)
                checks.append(Check(policy.name, requirement, passed, reason, (), True, FeatureId.REMOTE_MCP))
    return Decision(
        channel_id=facts.channel.id,
        model=facts.model,
        policies=tuple(p.name for p in chosen),
        checks=tuple(checks),
        day=facts.today,
        features=used,
    )
