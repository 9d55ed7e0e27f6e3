"""Rendering privacy facts for clients: the `X-Privacy-*` headers and the `privacy` object.

What belongs here: turning one deployment's effective facts, badges and decision into the
header values and JSON object of DESIGN.md. The routing layer caches the result per
(policy set, deployment), so nothing here runs per request except adding the request's own
decision and id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.deployments import Deployment
from gateway.names import DecisionKind, Header
from policies.badges import derive_feature_badges
from policies.engine import Check, Decision
from policies.facts import EffectiveFacts
from policies.schema import RetentionQualifier


def retention_days(facts: EffectiveFacts) -> str:
    value = facts.retention.value
    if value.is_zero:
        return "0"
    if value.days is None or value.qualifier in (
        RetentionQualifier.UNKNOWN,
        RetentionQualifier.AS_LONG_AS_NECESSARY,
    ):
        return "unknown"
    return str(value.days)


def training_value(facts: EffectiveFacts) -> str:
    if facts.is_unreliable(facts.training) or facts.missing_attestations:
        return "unknown"
    return facts.training.value.value


@dataclass(frozen=True)
class PrivacyView:
    """What a client is told about one deployment under one policy set."""

    headers: dict[str, str]
    body: dict[str, Any]

    def for_request(
        self, decision: DecisionKind, request_id: str, rerouted_from: str | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        headers = {**self.headers, Header.DECISION: decision.value, Header.REQUEST_ID: request_id}
        if rerouted_from:
            headers[Header.REROUTED_FROM] = rerouted_from
        body = {
            **self.body,
            "decision": decision.value,
            "rerouted_from": rerouted_from,
            "request_id": request_id,
        }
        return headers, body


def describe(dep: Deployment) -> dict[str, Any]:
    """A deployment's facts and badges, independent of any policy (for /v1/models and the page)."""
    facts = dep.facts
    source = dep.channel.main_source
    src = facts.sources.get(source)
    return {
        "provider": dep.provider,
        "channel": dep.channel.id,
        "channel_name": dep.channel.name,
        "kind": dep.channel.kind.value,
        "deployment": dep.id,
        "upstream_model": dep.config.model,
        "training": training_value(facts),
        "retention_days": retention_days(facts),
        "human_review": facts.human_review.value.value,
        "badges": [b.as_dict() for b in dep.badges],
        "attestations": [{"fact": a.fact.value, "evidence": a.evidence} for a in facts.attestations],
        "source": str(src.url) if src else None,
        "as_of": dep.channel.as_of.isoformat(),
        "confidence": dep.channel.confidence.value,
        "simulated": dep.simulated,
        "available": dep.available,
    }


def build_view(dep: Deployment, decision: Decision) -> PrivacyView:
    """The headers and `privacy` object of `dep` under `decision`; the data paths the decision judged
    (DESIGN.md, Data paths) add `X-Privacy-Features`, their badges and `privacy.features`."""
    about = describe(dep)
    feature_badges = derive_feature_badges(dep.facts, decision.features)
    if feature_badges:
        about["badges"] = [*about["badges"], *(b.as_dict() for b in feature_badges)]
    headers = {
        Header.BADGES: ", ".join(b.id for b in (*dep.badges, *feature_badges)),
        Header.TRAINING: about["training"],
        Header.RETENTION_DAYS: about["retention_days"],
        Header.PROVIDER: dep.provider,
        Header.CHANNEL: dep.channel.id,
        Header.POLICY: ", ".join(decision.policies),
        Header.AS_OF: about["as_of"],
    }
    if about["source"]:
        headers[Header.SOURCE] = about["source"]
    if dep.simulated:
        headers[Header.SIMULATED] = "true"
    if decision.features:
        headers[Header.FEATURES] = ", ".join(f.value for f in decision.features)
    body = {
        **about,
        "model": dep.alias,
        "policy": list(decision.policies),
        "complies": decision.allowed,
        "features": [f.value for f in decision.features],
        "checks": [_check(c) for c in decision.checks],
    }
    return PrivacyView(headers={str(k): v for k, v in headers.items()}, body=body)


def _check(check: Check) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": check.policy,
        "requirement": check.requirement.value,
        "passed": check.passed,
        "reason": check.reason,
    }
    if check.feature is not None:
        out["feature"] = check.feature.value
    return out


def rejection(dep: Deployment, decision: Decision) -> dict[str, Any]:
    """One entry of `error.privacy.considered`: a deployment and why it was not used."""
    reasons = decision.reasons()
    if dep.unavailable and decision.allowed:
        reasons = [f"unavailable: {dep.unavailable}"]
    return {
        "model": dep.alias,
        "deployment": dep.id,
        "provider": dep.provider,
        "channel": dep.channel.id,
        "complies": decision.allowed,
        "badges": [b.id for b in dep.badges],
        "reasons": reasons,
    }
