"""The app factory: `create_app(settings)` builds every stateful piece and wires the routers.

What belongs here: loading and checking catalog and config (start-up refuses a bad config with
one line per problem), building deployments, router, adapters, auth, the audit sink and the
metrics fed from it, the lifespan that starts and stops them, and `app_from_env()` for uvicorn's
`--factory`. No module-level state: two apps in one process share nothing.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date

from fastapi import FastAPI

from gateway.audit import AuditSink
from gateway.auth import Authenticator, KeyStore, StaticKeyStore, config_keys
from gateway.bodybudget import BodyBudget
from gateway.config import Config, ConfigError, check, check_file
from gateway.deployments import Deployment, build_deployments
from gateway.errors import install_handlers
from gateway.hotpath import HotPath
from gateway.logs import install_redaction
from gateway.metrics import GatewayMetrics, InFlight, MetricsSink, RequestMetrics
from gateway.misses import served
from gateway.resilience import Resilience
from gateway.routers import admin, chat, health, metrics, models, privacy
from gateway.routing import Router, utc_today
from gateway.service import ChatService
from gateway.settings import Settings
from gateway.slots import KeySlots
from gateway.state import Services
from gateway.storage.ledger import LedgerSink
from gateway.storage.runtime import Storage, require_writable_spool
from gateway.upstream.base import Adapter
from gateway.upstream.litellm_adapter import LiteLLMAdapter
from gateway.upstream.openai_wire import OpenAIWireAdapter
from policies.catalog import Catalog, load_catalog
from policies.policy import resolve

log = logging.getLogger("sluice")


def prepare(
    settings: Settings, *, catalog: Catalog | None = None, config: Config | None = None
) -> tuple[Catalog, Config]:
    """Load catalog and config and check them; raise ConfigError with every problem, one per line."""
    catalog = catalog or load_catalog()
    if config is None:
        return catalog, check_file(settings.config, catalog, allow_simulate=settings.allow_simulate)
    problems = check(config, catalog, allow_simulate=settings.allow_simulate)
    if problems:
        raise ConfigError("\n".join(problems))
    return catalog, config


def _adapters(deployments: Sequence[Deployment]) -> tuple[OpenAIWireAdapter, LiteLLMAdapter | None]:
    direct = OpenAIWireAdapter()
    translated: LiteLLMAdapter | None = None
    if any(not d.openai_wire for d in deployments):
        translated = LiteLLMAdapter()  # litellm itself is imported in the background (preload)
    return direct, translated


def create_app(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    config: Config | None = None,
    audit: AuditSink | None = None,
    key_stores: Sequence[KeyStore] = (),
    today: date | None = None,
    resilience: Resilience | None = None,
) -> FastAPI:
    catalog, config = prepare(settings, catalog=catalog, config=config)
    # A pinned day (tests, demos) or the UTC date of each request: staleness is judged per request.
    clock: Callable[[], date] = utc_today
    if today is not None:
        pinned = today
        clock = lambda: pinned  # noqa: E731
    deployments = build_deployments(config, catalog, settings, clock())
    router = Router(config, deployments, clock=clock)
    table = config.policy_table()
    all_deployments = router.all_deployments()
    direct, translated = _adapters(all_deployments)

    def adapter_for(dep: Deployment) -> Adapter:
        if dep.openai_wire:
            return direct
        assert translated is not None, "a litellm deployment without the litellm adapter"
        return translated

    secrets = [d.target.api_key for d in all_deployments if d.target.api_key]
    if settings.master_key is not None:
        secrets.append(settings.master_key.get_secret_value())
    install_redaction(secrets)
    records, warnings = config_keys(config, settings)
    warnings += [
        f"deployment {d.id} unavailable: {d.unavailable}" for d in all_deployments if not d.available
    ]
    # The database (SLUICE_DATABASE_URL) backs whatever the caller did not pass explicitly.
    storage: Storage | None = None
    if audit is None or not key_stores:
        reserved = {r.name for r in records} | {k.name for k in config.keys}
        storage = Storage.from_settings(settings, reserved_names=reserved)
        if audit is None:
            require_writable_spool(settings)  # the ledger's refuge when the database is down
        audit = audit or storage.ledger
        key_stores = key_stores or (storage.keys,)
    # Circuit breakers and the retry budget: per app, built from settings unless a test passes its own.
    resilience = resilience or Resilience(
        breaker_failures=settings.breaker_failures,
        breaker_cooldown=settings.breaker_cooldown,
        retry_budget_ratio=settings.retry_budget_ratio,
    )
    # GET /metrics: counted from each audit event on its way to the ledger; the rest read when scraped.
    request_metrics = RequestMetrics(models=router.models, deployments=[d.id for d in all_deployments])
    in_flight = InFlight()
    body_budget = BodyBudget(settings.max_inflight_body_bytes)
    gateway_metrics = GatewayMetrics(
        requests=request_metrics,
        in_flight=in_flight,
        in_flight_limit=settings.max_concurrency,
        deployments=all_deployments,
        breaker=resilience.breaker,
        audit=audit,
        ledger=audit if isinstance(audit, LedgerSink) else None,
        keys=storage.keys if storage is not None and storage.keys in key_stores else None,
        body_budget=body_budget,
    )
    chat_service = ChatService(
        config=config,
        router=router,
        policies=table,
        adapter_for=adapter_for,
        audit=MetricsSink(audit, request_metrics),
        resilience=resilience,
    )
    # Precompute every (key policy, deployment) decision the gateway can foresee.
    for names in {config.server.default_policy, *(k.policy for k in config.keys if k.policy)}:
        policy = resolve(names, table)
        for dep in all_deployments:
            router.judge(policy, dep)

    services = Services(
        settings=settings,
        config=config,
        catalog=catalog,
        policies=table,
        router=router,
        auth=Authenticator([StaticKeyStore(records), *key_stores]),
        chat=chat_service,
        audit=audit,
        clock=clock,
        metrics=gateway_metrics,
        in_flight=in_flight,
        key_slots=KeySlots(settings.max_concurrency_per_key),
        body_budget=body_budget,
        warnings=warnings,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for line in warnings:
            log.warning("%s", line)
        if storage is not None:
            await storage.start()  # migrations; a key name in both config and database stops here
        await audit.start()
        # Objects built at start-up live for the process: keep them out of the cyclic GC's way
        # (full collections of ~1M litellm objects paused requests for 0.5 s in the baseline).
        gc.collect()
        gc.freeze()
        if translated is not None:
            translated.preload()
        gateway_metrics.loop_lag.start()
        try:
            yield
        finally:
            await gateway_metrics.loop_lag.stop()
            await audit.stop()
            if storage is not None:
                await storage.stop()
            await direct.aclose()
            if translated is not None:
                await translated.aclose()

    app = FastAPI(
        title="Sluice",
        version="0.1.0",
        lifespan=lifespan,
        # No schema or docs: they would publish every route, /admin included, to anyone who asks.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # No 307 from `/admin/keys/` to `/admin/keys` before any key is checked: it named protected
        # routes to anyone, and built its Location from the client's Host header.
        redirect_slashes=False,
        # FastAPI's native OpenTelemetry: off, so no span or metric can carry request data anywhere.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    # Added first, so it runs inside HotPath: its refusals are counted like every response.
    app.add_middleware(admin.AdminGuard, services=services)
    app.add_middleware(HotPath, services=services)
    app.state.sluice = services
    app.state.storage = storage if storage is not None and storage.keys in key_stores else None
    public = (chat, models, privacy, health)
    install_handlers(app, endpoints=served(r for module in public for r in module.router.routes))
    for module in (chat, models, privacy, health, metrics, admin):
        app.include_router(module.router)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's `--factory` entry point: settings from the environment."""
    return create_app(Settings())
