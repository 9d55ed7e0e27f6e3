"""Runtime deployments: config + catalog + environment, resolved once at start-up.

What belongs here: `Deployment` (one concrete upstream with its effective facts, badges and
adapter kind), and `build_deployments()`, which resolves keys from the environment (a missing
key makes a deployment unavailable, not fatal) and sends simulated deployments to the local
fake upstream while keeping the real channel's facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from gateway.config import Config, DeploymentConfig
from gateway.settings import Settings
from gateway.upstream.base import UpstreamTarget
from gateway.upstream.providers import ROUTES, speaks_responses
from policies.badges import Badge, derive_badges
from policies.catalog import Catalog
from policies.facts import Attestation, EffectiveFacts, effective_facts
from policies.schema import Channel, Kind


@dataclass(frozen=True)
class Deployment:
    id: str
    alias: str
    index: int
    config: DeploymentConfig
    channel: Channel
    facts: EffectiveFacts
    badges: tuple[Badge, ...]
    target: UpstreamTarget = field(repr=False)
    openai_wire: bool
    simulated: bool
    unavailable: str | None = None
    responses_wire: bool = False  # takes Responses requests as they are (else: litellm's bridge)

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def on(self, day: date) -> Deployment:
        """This deployment with its facts and badges judged on `day` (staleness is per request date)."""
        if day == self.facts.today:
            return self
        facts = self.facts.on(day)
        return replace(self, facts=facts, badges=derive_badges(facts))

    @property
    def keeps_responses(self) -> bool:
        """Whether the upstream itself keeps Responses state (the pass-through, or Azure's own Responses
        API through litellm), so that a later `previous_response_id` can continue an answer of it."""
        return self.responses_wire or self.config.prefix == "azure"

    @property
    def provider(self) -> str:
        return self.channel.provider

    @cached_property
    def ledger_fields(self) -> Mapping[str, Any]:
        """What the audit record says of the deployment that served a request (its badges as judged
        on its day), made once per deployment and day rather than once per request; read-only."""
        return {
            "deployment": self.id,
            "upstream_model": self.config.model,
            "provider": self.provider,
            "channel": self.channel.id,
            "badges": tuple(b.id for b in self.badges),
            "simulated": self.simulated,
        }

    @property
    def host(self) -> str:
        """Where calls go, for logs: the base URL's host and port (never its userinfo or path), else
        the channel's first official host (litellm builds the URL itself)."""
        base = urlsplit(self.target.api_base) if self.target.api_base else None
        if base is not None and base.hostname:
            try:
                port = base.port
            except ValueError:
                port = None
            return f"{base.hostname}:{port}" if port else base.hostname
        return self.channel.api_hosts[0] if self.channel.api_hosts else f"{self.provider}'s default host"


def _base(dep: DeploymentConfig, settings: Settings) -> str | None:
    route = ROUTES[dep.prefix]
    if dep.simulate:
        fake = (settings.fake_upstream_url or "").rstrip("/")
        return fake + "/v1" if route.openai_wire else fake
    # The pass-through needs a base URL; litellm gets an explicit one where its default can be
    # overridden from the environment, and builds its own (region hosts) otherwise.
    return dep.api_base or (route.default_base if route.openai_wire else route.litellm_base)


def build_deployment(
    alias: str,
    index: int,
    dep: DeploymentConfig,
    *,
    catalog: Catalog,
    settings: Settings,
    attestations: Iterable[Attestation],
    today: date,
) -> Deployment:
    channel = catalog.channels[dep.channel]
    route = ROUTES[dep.prefix]
    base = _base(dep, settings)
    # The host the facts are checked against is the configured one: a simulated deployment keeps
    # its real channel's host (it only travels to the local fake in the demo).
    fact_host = urlsplit(dep.api_base).hostname if dep.api_base else None
    if channel.kind is Kind.API and fact_host is None and route.default_base and not dep.simulate:
        fact_host = urlsplit(route.default_base).hostname
    facts = effective_facts(
        channel,
        model=dep.upstream_model,
        sources=catalog.sources_of(channel.id),
        today=today,
        host=fact_host,
        attestations=attestations,
        public_hosts=catalog.public_hosts(),
    )
    key = settings.read_secret(dep.api_key_env) if dep.api_key_env else None
    unavailable = None
    if dep.api_key_env and key is None and not dep.simulate:
        unavailable = f"environment variable {dep.api_key_env} is not set"
    if dep.simulate and not settings.fake_upstream_url:
        unavailable = "simulated deployment without a fake upstream"
    target = UpstreamTarget(
        model=dep.model,
        upstream_model=dep.upstream_model,
        api_base=base,
        api_key=None if dep.simulate else key,
        api_version=dep.api_version,
        vertex_project=dep.vertex_project,
        vertex_location=dep.vertex_location,
        aws_region_name=dep.aws_region_name,
        timeout=dep.timeout or settings.read_timeout,
        connect_timeout=settings.connect_timeout,
        idle_timeout=settings.stream_idle_timeout,
    )
    if dep.simulate:
        target = replace(target, api_key="sk-simulated")
    return Deployment(
        id=f"{alias}#{index}",
        alias=alias,
        index=index,
        config=dep,
        channel=channel,
        facts=facts,
        badges=derive_badges(facts),
        target=target,
        openai_wire=route.openai_wire,
        simulated=dep.simulate,
        unavailable=unavailable,
        responses_wire=speaks_responses(dep.prefix, channel.provider),
    )


def build_deployments(
    config: Config, catalog: Catalog, settings: Settings, today: date
) -> dict[str, list[Deployment]]:
    attestations = [a.to_domain() for a in config.attestations]
    return {
        model.name: [
            build_deployment(
                model.name, i, dep, catalog=catalog, settings=settings, attestations=attestations, today=today
            )
            for i, dep in enumerate(model.deployments)
        ]
        for model in config.models
    }
