"""Policy routing: which deployments may serve a request, computed once per (policy set, deployment, day).

What belongs here: the `Router`, which holds the runtime deployments, caches each decision and
its rendered privacy view for the current day (facts go stale by the date of the request, so on a
new day the deployments are re-judged), and turns (model, policy set, on_violation) into a `Plan`: allowed,
rerouted or blocked, with the ordered compliant deployments to try. No I/O happens here;
nothing leaves the gateway before a compliant deployment is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway.config import Config
from gateway.deployments import Deployment
from gateway.errors import ModelNotFound, PolicyViolation, UpstreamFailure
from gateway.misses import closest_models
from gateway.names import DecisionKind, Header
from gateway.privacy import PrivacyView, build_view, rejection
from policies.engine import Decision, evaluate
from policies.policy import Policy

PolicySet = tuple[Policy, ...]


@dataclass(frozen=True)
class Plan:
    decision: DecisionKind
    alias: str
    requested: str
    candidates: tuple[Deployment, ...]
    policy: PolicySet

    @property
    def rerouted_from(self) -> str | None:
        return self.requested if self.decision is DecisionKind.REROUTED else None


def utc_today() -> date:
    return datetime.now(UTC).date()


class Router:
    def __init__(
        self,
        config: Config,
        deployments: Mapping[str, Sequence[Deployment]],
        *,
        clock: Callable[[], date] = utc_today,
    ) -> None:
        self._config = config
        self._clock = clock
        self._day: date | None = None
        self._all = {name: tuple(deps) for name, deps in deployments.items()}
        self._deployments = self._all
        self._decisions: dict[tuple[tuple[str, ...], str], tuple[Decision, PrivacyView]] = {}
        self._today()

    def _today(self) -> date:
        """The day decisions are judged on; a new day re-judges every deployment."""
        day = self._clock()
        if day != self._day:
            self._day = day
            self._deployments = {name: tuple(d.on(day) for d in deps) for name, deps in self._all.items()}
            self._decisions.clear()
        return day

    @property
    def models(self) -> Mapping[str, tuple[Deployment, ...]]:
        self._today()
        return self._deployments

    def all_deployments(self) -> list[Deployment]:
        return [d for deps in self.models.values() for d in deps]

    def judge(self, policy: PolicySet, dep: Deployment) -> tuple[Decision, PrivacyView]:
        """The (cached) decision and privacy view of one deployment under one policy set, today."""
        day = self._today()
        dep = dep.on(day)
        key = (tuple(p.name for p in policy), dep.id)
        found = self._decisions.get(key)
        if found is None:
            decision = evaluate(policy, dep.facts, today=day)
            found = (decision, build_view(dep, decision))
            self._decisions[key] = found
        return found

    def _compliant(self, policy: PolicySet, alias: str) -> tuple[Deployment, ...]:
        return tuple(d for d in self._deployments[alias] if d.available and self.judge(policy, d)[0].allowed)

    def plan(
        self,
        requested: str,
        policy: PolicySet,
        *,
        reroute: bool,
        may_use: Callable[[str], bool],
    ) -> Plan:
        if requested not in self.models:
            hint = closest_models(requested, filter(may_use, self.models))
            raise ModelNotFound(
                f"the model {requested[:64]!r} does not exist or you do not have access to it{hint or ';'}"
                " GET /v1/models lists the models this key may use",
                param="model",
            )
        compliant = self._compliant(policy, requested)
        if compliant:
            return Plan(DecisionKind.ALLOWED, requested, requested, compliant, policy)
        targets = []
        if reroute:
            model = self._config.model(requested)
            targets = [t for t in (model.reroute_to if model else []) if may_use(t)]
            for target in targets:
                found = self._compliant(policy, target)
                if found:
                    return Plan(DecisionKind.REROUTED, target, requested, found, policy)
        raise self._blocked(requested, targets, policy)

    def _blocked(self, requested: str, targets: Sequence[str], policy: PolicySet) -> Exception:
        considered: list[dict[str, Any]] = []
        policy_ok = False
        for alias in (requested, *targets):
            for dep in self._deployments[alias]:
                decision, _ = self.judge(policy, dep)
                policy_ok = policy_ok or decision.allowed
                considered.append(rejection(dep, decision))
        if policy_ok:
            # A compliant deployment exists but none can be called (missing credentials): the policy
            # allowed the request, the upstream side failed it.
            usable = next(
                d
                for a in (requested, *targets)
                for d in self._deployments[a]
                if self.judge(policy, d)[0].allowed
            )
            headers, _ = self.judge(policy, usable)[1].for_request(DecisionKind.ALLOWED, "")
            headers.pop(Header.REQUEST_ID, None)
            return UpstreamFailure(
                f"no deployment of {requested!r} is available: credentials are not configured",
                headers=headers,
                extra={"privacy": {"considered": considered}},
            )
        names = [p.name for p in policy]
        first_dep = self._deployments[requested][0]
        _, view = self.judge(policy, first_dep)
        headers, _ = view.for_request(DecisionKind.BLOCKED, "")
        headers.pop(Header.REQUEST_ID, None)
        return PolicyViolation(
            f"no deployment of {requested!r} complies with the policy {', '.join(names)}",
            param="model",
            headers=headers,
            extra={
                "privacy": {
                    "decision": DecisionKind.BLOCKED.value,
                    "policy": names,
                    "requested_model": requested,
                    "considered": considered,
                }
            },
        )
