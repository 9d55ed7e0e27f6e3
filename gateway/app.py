"""Wiring only: `build_services(settings)` builds every stateful piece, `build_app(services)` the app.

What belongs here: loading and checking catalog and config (start-up refuses a bad config with
one line per problem), building deployments, router, adapters, auth, the audit sink and the
metrics fed from it (`build_services`); the lifespan that starts and stops them, the middleware,
the route table and the error handlers (`build_app`); `create_app(settings)`, both in one call, and
`app_from_env()` for uvicorn's `--factory`. No module-level state: two apps in one process share
nothing but the one process-wide hook Python's logging leaves no way around, the redacting
log-record factory, which `gateway.observability.logs` installs once per process (idempotently)
and to which each app adds the secrets it holds.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from typing import TypedDict, Unpack

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway.api.admin import AdminGuard
from gateway.api.pages import Pages
from gateway.api.routes import add_routes
from gateway.config import Config, ConfigError, check, check_file
from gateway.core.auth import Authenticator, KeyRecord, KeyStore, StaticKeyStore, config_keys
from gateway.core.continuations import Continuations
from gateway.core.deployments import Deployment, build_deployments
from gateway.core.limits import KeyLimits, Limiter, LocalState, SharedState
from gateway.core.misses import served
from gateway.core.pipeline import ChatService
from gateway.core.resilience import Resilience
from gateway.core.routing import PolicyRouter, utc_today
from gateway.core.services import Adapters, Services
from gateway.errors import install_handlers
from gateway.observability.audit import AuditSink
from gateway.observability.logs import install_redaction
from gateway.observability.metrics import GatewayMetrics, InFlight, MetricsSink, RequestMetrics
from gateway.server.bodybudget import BodyBudget
from gateway.server.dispatch import DispatchingApp
from gateway.server.edge import EdgeGuard
from gateway.server.key_slots import KeySlots
from gateway.settings import Settings
from gateway.storage.continuations import origin_finder
from gateway.storage.ledger import LedgerSink
from gateway.storage.runtime import Storage, require_writable_spool
from gateway.upstream.anthropic_wire import AnthropicWireAdapter
from gateway.upstream.litellm_adapter import LiteLLMAdapter
from gateway.upstream.openai_wire import OpenAIWireAdapter
from policies.catalog import Catalog, load_catalog
from policies.policy import Policy, resolve

log = logging.getLogger("sluice")

# Objects allocated (net) before the cyclic GC looks at the young generation; see the lifespan.
YOUNG_GC_THRESHOLD = 10_000


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


def _adapters(deployments: Sequence[Deployment], settings: Settings) -> Adapters:
    # litellm is imported in the background (preload) when a deployment needs it for chat or Responses
    # (also an OpenAI-wire host without a Responses API), else on first use (a translated message).
    per_host = settings.upstream_max_connections_per_host
    return Adapters(
        direct=OpenAIWireAdapter(max_connections_per_host=per_host),
        translated=LiteLLMAdapter(
            transform=settings.translation == "auto", max_connections_per_host=per_host
        ),
        anthropic=AnthropicWireAdapter(max_connections_per_host=per_host),
        preload=any(not (d.openai_wire and d.responses_wire) for d in deployments),
    )


def _clock(today: date | None) -> Callable[[], date]:
    """A pinned day (tests, demos) or the UTC date of each request: staleness is judged per request."""
    if today is None:
        return utc_today
    pinned: date = today
    return lambda: pinned


def _storage(
    settings: Settings,
    config: Config,
    records: Sequence[KeyRecord],
    audit: AuditSink | None,
    key_stores: Sequence[KeyStore],
) -> tuple[Storage | None, AuditSink, Sequence[KeyStore]]:
    """The database (SLUICE_DATABASE_URL) backs whatever the caller did not pass explicitly."""
    if audit is not None and key_stores:
        return None, audit, key_stores
    reserved = {r.name for r in records} | {k.name for k in config.keys}
    storage = Storage.from_settings(settings, reserved_names=reserved)
    if audit is None:
        require_writable_spool(settings)  # the ledger's refuge when the database is down
    return storage, audit or storage.ledger, key_stores or (storage.keys,)


def _foresee(router: PolicyRouter, config: Config, table: dict[str, Policy]) -> None:
    """Precompute every (key policy, deployment) decision the gateway can foresee."""
    for names in {config.server.default_policy, *(k.policy for k in config.keys if k.policy)}:
        policy = resolve(names, table)
        for dep in router.all_deployments():
            router.judge(policy, dep)


def _shared_state(settings: Settings, resilience: Resilience) -> SharedState:
    """Redis when `SLUICE_REDIS_URL` is set (every replica shares limits, breakers, holds, budget),
    else this process's own state."""
    if settings.redis_url is None:
        return LocalState(resilience, lease_seconds=settings.limit_lease_seconds)
    from gateway.storage.redis_state import RedisState  # the redis client: imported only when used (~6 MB)

    return RedisState(
        settings.redis_url,
        resilience,
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
        lease_seconds=settings.limit_lease_seconds,
    )


def _redis_password(url: str | None) -> list[str]:
    head = (url or "").rpartition("@")[0].partition("://")[2]
    password = head.rpartition(":")[2] if ":" in head else head
    return [password] if len(password) >= 4 else []


def build_services(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    config: Config | None = None,
    audit: AuditSink | None = None,
    key_stores: Sequence[KeyStore] = (),
    today: date | None = None,
    resilience: Resilience | None = None,
) -> Services:
    """Every stateful piece of one app, checked; nothing is started (the app's lifespan does that)."""
    catalog, config = prepare(settings, catalog=catalog, config=config)
    clock = _clock(today)
    deployments = build_deployments(config, catalog, settings, clock())
    router = PolicyRouter(config, deployments, clock=clock)
    table = config.policy_table()
    all_deployments = router.all_deployments()
    adapters = _adapters(all_deployments, settings)
    secrets = [d.target.api_key for d in all_deployments if d.target.api_key]
    if settings.master_key is not None:
        secrets.append(settings.master_key.get_secret_value())
    secrets += _redis_password(settings.redis_url)
    install_redaction(secrets)  # process-wide, once; this app's secrets added (see the module header)
    records, warnings = config_keys(config, settings)
    warnings += [
        f"deployment {d.id} unavailable: {d.unavailable}" for d in all_deployments if not d.available
    ]
    storage, audit, key_stores = _storage(settings, config, records, audit, key_stores)
    # Circuit breakers and the retry budget: per app, built from settings unless a test passes its own.
    resilience = resilience or Resilience(
        breaker_failures=settings.breaker_failures,
        breaker_cooldown=settings.breaker_cooldown,
        retry_budget_ratio=settings.retry_budget_ratio,
    )
    shared = _shared_state(settings, resilience)
    limiter = Limiter(
        shared, default=KeyLimits(settings.key_rpm, settings.key_tpm, settings.key_max_concurrency)
    )
    # GET /metrics: counted from each audit event on its way to the ledger; the rest read when scraped.
    # This app's own registry: never prometheus_client's global one.
    request_metrics = RequestMetrics(
        models=router.models, deployments=[d.id for d in all_deployments], registry=CollectorRegistry()
    )
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
        limiter=limiter,
        holds=resilience.holds,
    )
    chat_service = ChatService(
        config=config,
        router=router,
        policies=table,
        adapter_for=adapters.adapter_for,
        audit=MetricsSink(audit, request_metrics),
        resilience=resilience,
        limiter=limiter,
        # previous_response_id: this process's answers, then the ledger's (other replicas, restarts).
        continuations=Continuations(lookup=origin_finder(storage.db) if storage is not None else None),
    )
    _foresee(router, config, table)
    return Services(
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
        adapters=adapters,
        limiter=limiter,
        storage=storage,
        key_storage=storage if storage is not None and storage.keys in key_stores else None,
        warnings=warnings,
    )


def _lifespan(services: Services) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start what `build_services` built, in order, and stop it in reverse."""
    storage, audit, adapters = services.storage, services.audit, services.adapters
    shared = services.limiter.state
    lag = services.metrics.loop_lag

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for line in services.warnings:
            log.warning("%s", line)
        if storage is not None:
            await storage.start()  # migrations; a key name in both config and database stops here
        await audit.start()
        await shared.start()  # Redis, when configured: waits briefly, then serves per process meanwhile
        # Objects built at start-up live for the process: keep them out of the cyclic GC's way
        # (full collections of ~1M litellm objects paused requests for 0.5 s in the baseline).
        if adapters.preload:
            # litellm's import in the background ends with the same collect and freeze, over all
            # built by then: one full collection, and not on the way to ready (~0.08 s of CPU).
            adapters.translated.preload()
        else:
            gc.collect()
            gc.freeze()
        # With 64 requests in flight the default young threshold (700 objects) ran a collection
        # every ~6 requests, ~65 µs of CPU per request at c=64 (bench/PROFILE.md, branch hotpath);
        # at 10,000 it runs a few times per 4,000 requests. Cycles wait a little longer to be freed.
        previous_thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *previous_thresholds[1:])
        lag.start()
        try:
            yield
        finally:
            gc.set_threshold(*previous_thresholds)
            await lag.stop()
            await shared.stop()
            await audit.stop()
            if storage is not None:
                await storage.stop()
            await adapters.aclose()

    return lifespan


def build_app(services: Services) -> FastAPI:
    """The ASGI app over `services`: lifespan, the edge's guard, the route table, the error handlers
    (the pipeline routes dispatched in front of FastAPI's middleware: `gateway.server.dispatch`)."""
    app = DispatchingApp(
        title="Sluice",
        version="0.1.0",
        lifespan=_lifespan(services),
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
    # Added first, so it runs inside EdgeGuard: its refusals are counted like every response.
    app.add_middleware(AdminGuard, services=services)
    app.add_middleware(EdgeGuard, services=services)
    app.state.sluice = services
    app.state.storage = services.key_storage
    app.state.pages = Pages(services) if services.settings.pages else None
    add_routes(app, pages=services.settings.pages)
    install_handlers(app, endpoints=served(app.routes))
    return app


class ServiceOverrides(TypedDict, total=False):
    """What tests and the CLI may hand `build_services` instead of building it from settings."""

    catalog: Catalog | None
    config: Config | None
    audit: AuditSink | None
    key_stores: Sequence[KeyStore]
    today: date | None
    resilience: Resilience | None


def create_app(settings: Settings, **overrides: Unpack[ServiceOverrides]) -> FastAPI:
    """`build_services` then `build_app`: the app tests, the CLI and uvicorn's factory run."""
    return build_app(build_services(settings, **overrides))


def app_from_env() -> FastAPI:
    """uvicorn's `--factory` entry point: settings from the environment."""
    return create_app(Settings())
