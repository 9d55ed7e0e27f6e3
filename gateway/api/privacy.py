"""`GET /v1/privacy/catalog` and `GET /v1/privacy/policies`: public facts, no key needed.

What belongs here: the two routes and the JSON they answer (the catalog with each channel's badges
and judged facts, the policies), which `sluice catalog --json` prints too. The privacy facts of one
response (its `X-Privacy-*` headers and `privacy` object) are `gateway.core.disclosure`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from starlette.responses import Response

from gateway.core.services import ServicesDep
from gateway.server.responses import json_response
from policies.badges import derive_badges
from policies.catalog import Catalog
from policies.facts import EffectiveFacts, effective_facts
from policies.policy import Policy
from policies.schema import Channel


def channel_json(catalog: Catalog, channel: Channel, today: date) -> dict[str, Any]:
    facts = effective_facts(channel, model="*", sources=catalog.sources_of(channel.id), today=today)
    data = channel.model_dump(mode="json")
    data["provider_name"] = catalog.provider_name(channel.provider)
    data["badges"] = [b.as_dict() for b in derive_badges(facts)]
    data["stale"] = facts.stale
    data["judged"] = judged_facts(facts)
    data["sources"] = {
        sid: src.model_dump(mode="json")
        for sid, src in catalog.sources_of(channel.id).items()
        if sid in channel.cited_sources()
    }
    return data


def judged_facts(facts: EffectiveFacts) -> dict[str, dict[str, Any]]:
    """Per fact: the day its staleness counts from, whether it is stale today, its confidence and
    whether its sources conflict (then the value judged is the least private reading)."""
    out: dict[str, dict[str, Any]] = {}
    for name, fact in facts.judged().items():
        out[name.value] = {
            "dated": fact.dated.isoformat() if fact.dated else None,
            "stale": fact.stale(facts.today),
            "confidence": fact.confidence.value,
            "conflict": fact.conflicted,
            "unknown_today": facts.is_unreliable(fact),
            "src": list(fact.src),
        }
    return out


def catalog_json(catalog: Catalog, today: date, *, provider: str | None = None) -> dict[str, Any]:
    channels = [c for c in catalog if provider is None or c.provider == provider]
    return {"object": "catalog", "channels": [channel_json(catalog, c, today) for c in channels]}


def policies_json(policies: Iterable[Policy], *, default: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "object": "list",
        "default": list(default),
        "data": [p.model_dump(mode="json") for p in policies],
    }


async def catalog(services: ServicesDep, provider: str | None = None) -> Response:
    return json_response(catalog_json(services.catalog, services.today, provider=provider))


async def policies(services: ServicesDep) -> Response:
    return json_response(
        policies_json(services.policies.values(), default=services.config.server.default_policy)
    )
