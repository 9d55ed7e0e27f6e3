"""What `gateway.app.build_services` builds and handlers reach through `request.app.state.sluice`.

What belongs here: the `Services` container, the `Adapters` the pipeline calls, and the
`Annotated` dependency aliases the API modules use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from gateway.config import Config
from gateway.core.auth import Authenticator
from gateway.core.limits import Limiter
from gateway.core.pipeline import ChatService
from gateway.core.routing import PolicyRouter
from gateway.names import Endpoint
from gateway.observability.audit import AuditSink
from gateway.observability.metrics import GatewayMetrics, InFlight
from gateway.server.bodybudget import BodyBudget
from gateway.server.key_slots import KeySlots
from gateway.settings import Settings
from policies.catalog import Catalog
from policies.policy import Policy

if TYPE_CHECKING:
    from gateway.core.deployments import Deployment
    from gateway.storage.runtime import Storage
    from gateway.upstream.anthropic_wire import AnthropicWireAdapter
    from gateway.upstream.base import Adapter
    from gateway.upstream.litellm_adapter import LiteLLMAdapter
    from gateway.upstream.openai_wire import OpenAIWireAdapter


@dataclass(frozen=True)
class Adapters:
    """The adapters of an app: the OpenAI-wire pass-through, the Anthropic-wire pass-through (the
    Messages API to `anthropic.api`), and litellm. litellm is imported at start-up (`preload`) only
    when a deployment needs it for chat; a Messages request translated for another deployment
    imports it on first use."""

    direct: OpenAIWireAdapter
    translated: LiteLLMAdapter
    anthropic: AnthropicWireAdapter
    preload: bool  # a deployment needs litellm for chat: import it in the background at start-up

    def adapter_for(self, dep: Deployment, endpoint: Endpoint = Endpoint.CHAT) -> Adapter:
        """The pass-through where the deployment speaks the endpoint's wire, else litellm."""
        direct = dep.responses_wire if endpoint is Endpoint.RESPONSES else dep.openai_wire
        if direct:
            return self.direct
        return self.translated

    async def aclose(self) -> None:
        await self.direct.aclose()
        await self.anthropic.aclose()
        await self.translated.aclose()


@dataclass
class Services:
    settings: Settings
    config: Config
    catalog: Catalog
    policies: dict[str, Policy]
    router: PolicyRouter
    auth: Authenticator
    chat: ChatService
    audit: AuditSink
    clock: Callable[[], date]  # the day facts are judged on (per request, not at start-up)
    metrics: GatewayMetrics
    in_flight: InFlight  # counted by the edge (`gateway.server.edge.Guarded`), read by `metrics`
    key_slots: KeySlots  # held by each pipeline request (`gateway.api.intake`) until it is answered
    body_budget: BodyBudget  # the same
    adapters: Adapters
    limiter: Limiter  # per-key limits, over the state replicas share (`gateway.core.limits`)
    storage: Storage | None  # the database, when the app keeps the ledger or keys in one
    key_storage: Storage | None  # the same, when it keeps keys there (`/admin/keys`)
    warnings: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.clock()


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request for an
    # attribute read (and, on the first request, the pool's start: on the way to the first /readyz).
    services: Services = request.app.state.sluice
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
