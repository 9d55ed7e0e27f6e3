"""What `GET /` and `GET /catalog` show, as plain data for the templates.

What belongs here: assembling, never recomputing. A deployment's facts and badges come from
`gateway.core.disclosure.describe`, its decisions from the app's `PolicyRouter` (cached per policy
set and day), a channel's facts, badges and sources from `gateway.api.privacy.channel_json`, and
judgements from `policies.engine.evaluate`. The catalog page judges public facts only: the
operator's attestations change the home page (its deployments), never the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.api.privacy import channel_json
from gateway.core.deployments import Deployment
from gateway.core.disclosure import describe
from gateway.core.routing import PolicyRouter, PolicySet
from gateway.names import OnViolation
from policies.catalog import Catalog
from policies.engine import evaluate
from policies.facts import effective_facts
from policies.policy import Policy, resolve
from policies.schema import FeatureId, Kind

KIND_ORDER = {Kind.CONSUMER: 0, Kind.API: 1, Kind.SELF_HOSTED: 2}
FEATURE_LABELS = {
    FeatureId.STORED_RESPONSE: "stored responses",
    FeatureId.EXTENDED_CACHE: "extended prompt cache",
    FeatureId.SERVER_WEB_SEARCH: "provider web search",
    FeatureId.SERVER_CODE_EXECUTION: "provider code execution",
    FeatureId.REMOTE_MCP: "remote MCP servers",
}


@dataclass(frozen=True)
class PolicyCell:
    policy: str
    passed: bool
    reasons: list[str]


@dataclass(frozen=True)
class DeploymentRow:
    about: dict[str, Any]  # gateway.core.disclosure.describe
    complies: bool  # under the server's default policy
    reasons: list[str]
    policies: list[PolicyCell]
    data_paths: list[tuple[str, bool]]  # (feature label, allowed under the default policy)
    attested: list[str]  # facts that rest on the operator's word


@dataclass
class ModelView:
    name: str
    outcome: str  # allowed, rerouted or blocked (DecisionKind's values)
    rerouted_to: str | None
    deployments: list[DeploymentRow] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HomeView:
    default_policy: list[str]
    on_violation: str
    policies: list[Policy]
    models: list[ModelView]
    day: date


def _row(
    router: PolicyRouter, dep: Deployment, default: PolicySet, sets: Mapping[str, PolicySet]
) -> DeploymentRow:
    decision, _ = router.judge(default, dep)
    reasons = decision.reasons() if not decision.allowed else []
    if dep.unavailable:
        reasons = [*reasons, f"unavailable: {dep.unavailable}"]
    cells = []
    for name, chosen in sets.items():
        judged, _ = router.judge(chosen, dep)
        cells.append(PolicyCell(name, judged.allowed, judged.reasons()))
    paths = [(FEATURE_LABELS[f], evaluate(default, dep.facts, features=(f,)).allowed) for f in FeatureId]
    attested = sorted({str(a.fact.value) for a in dep.facts.attestations})
    return DeploymentRow(describe(dep), decision.allowed and dep.available, reasons, cells, paths, attested)


def home_view(
    router: PolicyRouter,
    table: Mapping[str, Policy],
    *,
    default_policy: list[str],
    on_violation: OnViolation,
    reroute_to: Mapping[str, list[str]],
    day: date,
) -> HomeView:
    """Every configured model under the server's default policy: its deployments in order, whether a
    request for it is allowed, rerouted or blocked (and why), and each builtin and configured policy."""
    default = resolve(default_policy, table)
    sets = {name: resolve([name], table) for name in table}
    rows = {
        alias: [_row(router, dep, default, sets) for dep in deps] for alias, deps in router.models.items()
    }
    models = []
    for alias, deployments in rows.items():
        view = ModelView(alias, "allowed", None, deployments)
        if not any(d.complies for d in deployments):
            view.reasons = [r for d in deployments for r in d.reasons]
            targets = reroute_to.get(alias, []) if on_violation is OnViolation.REROUTE else []
            found = next((t for t in targets if any(d.complies for d in rows.get(t, []))), None)
            view.outcome, view.rerouted_to = ("rerouted", found) if found else ("blocked", None)
        models.append(view)
    return HomeView([p.name for p in default], on_violation.value, list(table.values()), models, day)


@dataclass(frozen=True)
class ChannelRow:
    data: dict[str, Any]  # gateway.api.privacy.channel_json
    passes: dict[str, bool]  # policy name -> whether the channel's public facts pass it


@dataclass(frozen=True)
class ProviderGroup:
    provider: str
    name: str
    channels: list[ChannelRow]


@dataclass(frozen=True)
class CatalogView:
    groups: list[ProviderGroup]
    providers: list[tuple[str, str]]  # (id, name) of every provider, for the filter
    policies: list[Policy]
    provider: str | None
    policy: str | None
    shown: int
    total: int
    day: date


def catalog_view(
    catalog: Catalog, table: Mapping[str, Policy], *, provider: str | None, policy: str | None, day: date
) -> CatalogView:
    """Every channel (or one provider's, or those passing one policy), consumer products beside the
    same provider's API channels."""
    sets = {name: resolve([name], table) for name in table}
    groups: dict[str, ProviderGroup] = {}
    shown = 0
    for channel in sorted(catalog, key=lambda c: (c.provider, KIND_ORDER[c.kind], c.id)):
        if provider is not None and channel.provider != provider:
            continue
        facts = effective_facts(channel, model="*", sources=catalog.sources_of(channel.id), today=day)
        passes = {name: evaluate(chosen, facts).allowed for name, chosen in sets.items()}
        if policy is not None and not passes[policy]:
            continue
        group = groups.setdefault(
            channel.provider, ProviderGroup(channel.provider, catalog.provider_name(channel.provider), [])
        )
        group.channels.append(ChannelRow(channel_json(catalog, channel, day), passes))
        shown += 1
    providers = sorted(
        {(c.provider, catalog.provider_name(c.provider)) for c in catalog}, key=lambda p: p[1].lower()
    )
    return CatalogView(
        list(groups.values()), providers, list(table.values()), provider, policy, shown, len(catalog), day
    )
