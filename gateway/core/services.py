"""What `create_app` builds and handlers reach through `request.app.state.sluice`.

What belongs here: the `Services` container and the `Annotated` dependency aliases routers use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from gateway.config import Config
from gateway.core.auth import Authenticator
from gateway.core.pipeline import ChatService
from gateway.core.routing import Router
from gateway.observability.audit import AuditSink
from gateway.observability.metrics import GatewayMetrics, InFlight
from gateway.server.bodybudget import BodyBudget
from gateway.server.key_slots import KeySlots
from gateway.settings import Settings
from policies.catalog import Catalog
from policies.policy import Policy


@dataclass
class Services:
    settings: Settings
    config: Config
    catalog: Catalog
    policies: dict[str, Policy]
    router: Router
    auth: Authenticator
    chat: ChatService
    audit: AuditSink
    clock: Callable[[], date]  # the day facts are judged on (per request, not at start-up)
    metrics: GatewayMetrics
    in_flight: InFlight  # counted by the hot path, read by `metrics`
    key_slots: KeySlots  # claimed by `gateway.api.chat.handle`, freed by the hot path
    body_budget: BodyBudget  # the same
    warnings: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.clock()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.sluice
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
