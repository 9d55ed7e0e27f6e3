"""Policy routing: which deployments may serve a request, computed once per (policy set, data paths,
deployment, day).

What belongs here: the `PolicyRouter`, which holds the runtime deployments, caches each decision and
its rendered privacy view for the current day (facts go stale by the date of the request, so on a
new day the deployments are re-judged), and turns (model, policy set, data paths, on_violation) into
a `Plan`: allowed, rerouted or blocked, with the ordered compliant deployments to try. The data paths
a request uses (`gateway.core.data_paths`) are judged with each deployment's facts, so block and
reroute consider them too; a remote MCP server the config's `tool_hosts` does not list is refused
first. `limits_retention` and `sends_store_false` say where Sluice sends `store: false`. No I/O
happens here; nothing leaves the gateway before a compliant deployment is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from gateway.config import Config
from gateway.core.data_paths import NONE, DataPaths
from gateway.core.deployments import Deployment
from gateway.core.disclosure import PrivacyView, build_view, rejection
from gateway.core.misses import closest_models
from gateway.errors import FeatureNotAllowed, ModelNotFound, PolicyViolation, UpstreamFailure
from gateway.names import DecisionKind, Header
from policies.engine import Decision, evaluate
from policies.policy import Policy, Requirement
from policies.schema import FeatureId, Kind

PolicySet = tuple[Policy, ...]
_RETENTION_LIMITS = frozenset({Requirement.ZERO_RETENTION, Requirement.MAX_RETENTION_DAYS})


def limits_retention(policy: PolicySet) -> bool:
    """Does the effective policy limit retention (`zero-retention`, `max_retention_days`)? Then Sluice
    sends `store: false` where the client did not set `store` (`DataPaths.limit_retention`)."""
    return any(not _RETENTION_LIMITS.isdisjoint(p.requires) for p in policy)


def sends_store_false(paths: DataPaths, dep: Deployment) -> bool:
    """Add `store: false` for `dep`? Where the policy limits retention and the client did not set
    `store` (`paths.store_false`): on a wire that stores by default (Responses) always; on Chat
    Completions only where the channel offers stored responses (the catalog says so), since another
    OpenAI-compatible server may refuse a field it does not know."""
    if not paths.store_false:
        return False
    if paths.wire_stores:
        return True
    stored = dep.facts.feature(FeatureId.STORED_RESPONSE)
    return stored.known and stored.offered


def features_at(paths: DataPaths, dep: Deployment) -> tuple[FeatureId, ...]:
    """The data paths a request uses at `dep`. Storing by default is the Responses API's own: a
    deployment reached through litellm's Responses bridge gets a chat request, which stores nothing,
    so a `stored_response` that comes only from that default applies to Responses-native upstreams
    alone, and not to self-hosted servers (what they store stays on the operator's host). An explicit
    `store: true` is judged everywhere."""
    if paths.stored_by_default and (not dep.responses_wire or dep.channel.kind is Kind.SELF_HOSTED):
        return tuple(f for f in paths.features if f is not FeatureId.STORED_RESPONSE)
    return paths.features


@dataclass(frozen=True)
class Plan:
    decision: DecisionKind
    alias: str
    requested: str
    candidates: tuple[Deployment, ...]
    policy: PolicySet
    paths: DataPaths = NONE
    # The privacy views of the candidates, judged on `day` while planning: `disclose` reuses them
    # that same day instead of judging the answering deployment again.
    views: Mapping[str, PrivacyView] = field(default_factory=dict, compare=False, repr=False)
    day: date | None = field(default=None, compare=False, repr=False)

    @property
    def rerouted_from(self) -> str | None:
        return self.requested if self.decision is DecisionKind.REROUTED else None


def utc_today() -> date:
    return datetime.now(UTC).date()


class PolicyRouter:
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
        self._tool_hosts = config.tool_host_table()
        self._decisions: dict[
            tuple[tuple[str, ...], str, tuple[FeatureId, ...], tuple[str, ...]], tuple[Decision, PrivacyView]
        ] = {}
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

    def disclose(self, plan: Plan, dep: Deployment, request_id: str) -> tuple[dict[str, str], dict[str, Any]]:
        """The badge headers and `privacy` object of one answer from `dep` under `plan`."""
        view = plan.views.get(dep.id) if plan.day == self._today() else None
        if view is None:
            _, view = self.judge(plan.policy, dep, plan.paths)
        return view.for_request(plan.decision, request_id, plan.rerouted_from)

    def judge(
        self, policy: PolicySet, dep: Deployment, paths: DataPaths = NONE
    ) -> tuple[Decision, PrivacyView]:
        """The (cached) decision and privacy view of one deployment under one policy set and the
        request's data paths, today. MCP hosts must be listed (`plan` refuses the others first)."""
        return self._judged(tuple(p.name for p in policy), policy, dep, paths, self._today())

    def _judged(
        self, names: tuple[str, ...], policy: PolicySet, dep: Deployment, paths: DataPaths, day: date
    ) -> tuple[Decision, PrivacyView]:
        """`judge` with the policy set's names and the day already at hand (`plan` judges several)."""
        dep = dep.on(day)
        features = features_at(paths, dep)
        hosts = paths.mcp_hosts if FeatureId.REMOTE_MCP in features else ()
        key = (names, dep.id, features, hosts)
        found = self._decisions.get(key)
        if found is None:
            listed = [self._tool_hosts[h] for h in hosts if h in self._tool_hosts]
            decision = evaluate(policy, dep.facts, today=day, features=features, tool_hosts=listed)
            found = (decision, build_view(dep, decision))
            self._decisions[key] = found
        return found

    def _compliant(
        self, policy: PolicySet, alias: str, paths: DataPaths, views: dict[str, PrivacyView]
    ) -> tuple[Deployment, ...]:
        """The available deployments of `alias` the policy allows; their views go into `views`."""
        day = self._today()
        names = tuple(p.name for p in policy)
        found = []
        for dep in self._deployments[alias]:
            if dep.available:
                decision, view = self._judged(names, policy, dep, paths, day)
                if decision.allowed:
                    found.append(dep)
                    views[dep.id] = view
        return tuple(found)

    def plan(
        self,
        requested: str,
        policy: PolicySet,
        *,
        reroute: bool,
        may_use: Callable[[str], bool],
        paths: DataPaths = NONE,
    ) -> Plan:
        if requested not in self.models:
            hint = closest_models(requested, filter(may_use, self.models))
            raise ModelNotFound(
                f"the model {requested[:64]!r} does not exist or you do not have access to it{hint or ';'}"
                " GET /v1/models lists the models this key may use",
                param="model",
            )
        self._refuse_unlisted_hosts(requested, policy, paths)
        views: dict[str, PrivacyView] = {}
        compliant = self._compliant(policy, requested, paths, views)
        if compliant:
            return Plan(
                DecisionKind.ALLOWED, requested, requested, compliant, policy, paths, views, self._day
            )
        targets = []
        if reroute:
            model = self._config.model(requested)
            targets = [t for t in (model.reroute_to if model else []) if may_use(t)]
            for target in targets:
                views = {}
                found = self._compliant(policy, target, paths, views)
                if found:
                    return Plan(
                        DecisionKind.REROUTED, target, requested, found, policy, paths, views, self._day
                    )
        raise self._blocked(requested, targets, policy, paths)

    def _blocked_headers(self, requested: str, policy: PolicySet, paths: DataPaths) -> dict[str, str]:
        _, view = self.judge(policy, self._deployments[requested][0], paths)
        headers, _ = view.for_request(DecisionKind.BLOCKED, "")
        headers.pop(Header.REQUEST_ID, None)
        return headers

    def _refuse_unlisted_hosts(self, requested: str, policy: PolicySet, paths: DataPaths) -> None:
        """A remote MCP server goes only to hosts the config's `tool_hosts` lists: no deployment and
        no reroute changes that, so the request is refused before any judging."""
        if FeatureId.REMOTE_MCP not in paths.features:
            return
        unlisted = [h for h in paths.mcp_hosts if h not in self._tool_hosts]
        if not unlisted:
            return
        names = [p.name for p in policy]
        listed = ", ".join(sorted(self._tool_hosts)) or "none"
        raise FeatureNotAllowed(
            f"remote_mcp: the MCP server host {unlisted[0][:128]!r} is not one of the config's tool_hosts"
            f" (listed: {listed[:512]}); the provider would send request data to it",
            param="tools",
            headers=self._blocked_headers(requested, policy, paths),
            extra={
                "privacy": {
                    "decision": DecisionKind.BLOCKED.value,
                    "policy": names,
                    "requested_model": requested,
                    "feature": FeatureId.REMOTE_MCP.value,
                    "features": paths.ids,
                    "mcp_hosts": [h[:128] for h in unlisted],
                    "considered": [],
                }
            },
        )

    def _blocked(
        self, requested: str, targets: Sequence[str], policy: PolicySet, paths: DataPaths
    ) -> Exception:
        considered: list[dict[str, Any]] = []
        policy_ok = False
        failing: set[FeatureId] = set()
        for alias in (requested, *targets):
            for dep in self._deployments[alias]:
                decision, _ = self.judge(policy, dep, paths)
                policy_ok = policy_ok or decision.allowed
                considered.append(rejection(dep, decision))
                if paths and self.judge(policy, dep)[0].allowed:
                    # The deployment complies without the data paths: these features block it.
                    failing |= {c.feature for c in decision.failures if c.feature is not None}
        if policy_ok:
            # A compliant deployment exists but none can be called (missing credentials): the policy
            # allowed the request, the upstream side failed it.
            usable = next(
                d
                for a in (requested, *targets)
                for d in self._deployments[a]
                if self.judge(policy, d, paths)[0].allowed
            )
            headers, _ = self.judge(policy, usable, paths)[1].for_request(DecisionKind.ALLOWED, "")
            headers.pop(Header.REQUEST_ID, None)
            return UpstreamFailure(
                f"no deployment of {requested!r} is available: credentials are not configured",
                headers=headers,
                extra={"privacy": {"considered": considered}},
            )
        names = [p.name for p in policy]
        headers = self._blocked_headers(requested, policy, paths)
        if failing:
            feature = next(f for f in FeatureId if f in failing)
            return FeatureNotAllowed(
                f"the request uses {feature.value}, which no deployment of {requested!r} may serve under"
                f" the policy {', '.join(names)}; error.privacy.considered says why",
                headers=headers,
                extra={
                    "privacy": {
                        "decision": DecisionKind.BLOCKED.value,
                        "policy": names,
                        "requested_model": requested,
                        "feature": feature.value,
                        "features": paths.ids,
                        "considered": considered,
                    }
                },
            )
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
