"""What `create_app` builds and handlers reach through `request.app.state.sluice`.

What belongs here: the `Services` container and the `Annotated` dependency aliases routers use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from gateway.audit import AuditSink
from gateway.auth import Authenticator
from gateway.bodybudget import BodyBudget
from gateway.config import Config
from gateway.metrics import GatewayMetrics, InFlight
from gateway.routing import Router
from gateway.service import ChatService
from gateway.settings import Settings
from gateway.slots import KeySlots
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
    key_slots: KeySlots  # claimed by `routers.chat.handle`, freed by the hot path
    body_budget: BodyBudget  # the same
    warnings: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.clock()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.sluice
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
