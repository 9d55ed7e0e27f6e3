"""Sluice's metrics for `GET /metrics`, on `prometheus_client` with one registry per app.

What belongs here: the fixed label sets; `RequestMetrics`, fed by `MetricsSink` from the
`AuditEvent` of every decided request; `LoopLag`, a timer that measures how late the event loop
wakes it; and `GatewayMetrics`, which adds what is read at scrape time (requests in flight, circuit
breakers, the audit ledger, the event loop, the process) and renders the exposition.

Every metric lives in the app's own `CollectorRegistry` (never prometheus_client's global
`REGISTRY`), so two apps in one process share nothing. prometheus_client writes the text format
0.0.4 (its escaping, value spelling, `+Inf` bucket) and adds, per counter and histogram, the
standard `<name>_created` gauge (when the series was first moved).

Every label value comes from a fixed set: a configured model alias or deployment id, one of
Sluice's enums (endpoint, decision, error code, breaker state) or a status class. Anything else,
whatever a client sent, becomes `other`. Key names are never labels: they name people and teams,
and the ledger already holds per-key figures. Counts are per process (`--workers N`: N series).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway.core.limits import Limiter
from gateway.core.pipeline import CLIENT_CLOSED
from gateway.core.resilience import BreakerState
from gateway.names import DecisionKind, Endpoint, ErrorCode
from gateway.observability.audit import AuditEvent, AuditSink

if TYPE_CHECKING:
    from gateway.core.deployments import Deployment
    from gateway.storage.ledger import LedgerStats

log = logging.getLogger("sluice.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what `render()` writes (generate_latest)

OTHER = "other"
ENDPOINTS = tuple(Endpoint)
STATUS_CLASSES = ("2xx", "4xx", "5xx", "client_closed", OTHER)
# Seconds; chat calls run from milliseconds (blocked, cached) to minutes (long streams).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Seconds a timer fires late: well under 1 ms when idle; the checklist's bound (L2) is a p99 of 100 ms.
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_INTERVAL = 0.05


# -- fixed label sets -----------------------------------------------------------------------------
class LabelSet:
    """A fixed set of label values; anything outside it (or None) is `other`."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(str(v) for v in values)

    def __call__(self, value: str | None) -> str:
        return str(value) if value is not None and value in self.values else OTHER


class Children:
    """A labelled metric's children, each looked up once per label set: prometheus_client's
    `labels()` checks the values and takes a lock on every call (about 1.5 µs), and the request path
    calls it several times per request. The label sets are fixed (above), so the cache is bounded;
    two threads filling it at once get the same child (`labels()` returns one per label set)."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children.setdefault(values, self.metric.labels(*values))
        return child


def status_class(status: int) -> str:
    if status == CLIENT_CLOSED:
        return "client_closed"
    if 200 <= status < 300:
        return "2xx"
    if 400 <= status < 500:
        return "4xx"
    if 500 <= status < 600:
        return "5xx"
    return OTHER


# -- fed by the audit events ----------------------------------------------------------------------
class RequestMetrics:
    """Counters and the latency histogram, updated once per decided request (one `AuditEvent`)."""

    def __init__(
        self,
        *,
        models: Iterable[str],
        deployments: Iterable[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.model = LabelSet(models)
        self.deployment = LabelSet(deployments)
        self.endpoint = LabelSet(ENDPOINTS)
        self.decision = LabelSet(DecisionKind)
        self.code = LabelSet(ErrorCode)
        # The app's registry (`build_services`); a registry of its own when used alone.
        self.registry = registry if registry is not None else CollectorRegistry()
        # prometheus_client's metrics are thread-safe: AuditSink.record() may run on another thread.
        self.requests = Counter(
            "sluice_requests_total",
            "Requests that reached a decision, by requested model, decision and status class.",
            ("endpoint", "model", "decision", "status_class"),
            registry=self.registry,
        )
        self.errors = Counter(
            "sluice_request_errors_total",
            "Decided requests that ended in an error, by error code.",
            ("endpoint", "code"),
            registry=self.registry,
        )
        self.cancelled = Counter(
            "sluice_client_cancelled_total",
            "Decided requests whose client went away before the answer was complete.",
            ("endpoint", "model"),
            registry=self.registry,
        )
        self.attempts = Counter(
            "sluice_upstream_attempts_total",
            "Upstream calls made (first tries and failovers), by requested model.",
            ("endpoint", "model"),
            registry=self.registry,
        )
        self.served = Counter(
            "sluice_deployment_requests_total",
            "Requests by the deployment that answered or failed last, and status class.",
            ("deployment", "status_class"),
            registry=self.registry,
        )
        self.tokens = Counter(
            "sluice_tokens_total",
            "Tokens the upstream reported, by served model and kind (prompt, completion).",
            ("served_model", "kind"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sluice_request_duration_seconds",
            "Time from request start to its audit record, for requests that reached an upstream.",
            ("endpoint", "served_model", "stream"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        counters = (self.requests, self.errors, self.cancelled, self.attempts, self.served, self.tokens)
        self._children = {metric: Children(metric) for metric in counters}
        self._latency = Children(self.latency)

    def observe(self, event: AuditEvent) -> None:
        endpoint, model = self.endpoint(event.endpoint), self.model(event.requested_model)
        served, status = self.model(event.served_model), status_class(event.status)
        child = self._children
        child[self.requests](endpoint, model, self.decision(event.decision), status).inc()
        if event.error_code is not None:
            child[self.errors](endpoint, self.code(event.error_code)).inc()
        if event.client_cancelled:
            child[self.cancelled](endpoint, model).inc()
        if event.attempts > 0:
            child[self.attempts](endpoint, model).inc(event.attempts)
        if event.deployment is not None:
            child[self.served](self.deployment(event.deployment), status).inc()
            stream = "true" if event.stream else "false"
            self._latency(endpoint, served, stream).observe(max(event.latency_ms, 0.0) / 1000)
        for kind, count in (("prompt", event.prompt_tokens), ("completion", event.completion_tokens)):
            if count is not None and count > 0:
                child[self.tokens](served, kind).inc(count)

    def render(self) -> str:
        """This object's registry in the text format (the whole app's, in an app)."""
        return generate_latest(self.registry).decode()


class MetricsSink:
    """An `AuditSink` that hands each event to the real sink, then counts it."""

    def __init__(self, inner: AuditSink, metrics: RequestMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def record(self, event: AuditEvent) -> None:
        self.inner.record(event)  # first: a metrics bug must never cost an audit record
        try:
            self.metrics.observe(event)
        except Exception as exc:  # record() never raises (AuditSink); the type only, no content
            log.error("metrics not updated for %s: %s", event.request_id, type(exc).__name__)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def status(self) -> tuple[bool, str]:
        return self.inner.status()


# -- the event loop -------------------------------------------------------------------------------
# Route groups of `sluice_http_responses_total`: a path outside them (whatever a client asked for) is `other`.
ROUTE_GROUPS = (
    ("/v1/chat/completions", "chat"),
    ("/v1/embeddings", "embeddings"),
    ("/v1/models", "models"),
    ("/v1/privacy", "privacy"),
    ("/admin", "admin"),
    ("/metrics", "metrics"),
    ("/healthz", "health"),
    ("/readyz", "health"),
    ("/catalog", "pages"),
    ("/static", "pages"),
    ("/", "pages"),  # the home page only: `path.startswith("//")` matches nothing served
)


def route_group(path: str) -> str:
    for prefix, group in ROUTE_GROUPS:
        if path == prefix or path.startswith(prefix + "/"):
            return group
    return OTHER


class HttpResponses:
    """Every response the app sends, by route group and status code: also the refusals that come
    before any decision (401, 400, 404, 413, 415, 429 at the cap, 431), which no audit event sees.
    The 408 and 431 that `gateway.server.uvicorn_deadlines` writes itself, before the app, are not here."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "sluice_http_responses_total",
            "HTTP responses by route group and status code, refusals before any decision included.",
            ("route", "code"),
            registry=registry,
        )
        self._children = Children(self.counter)

    def observe(self, path: str, status: int) -> None:
        self._children(route_group(path), str(status) if 100 <= status < 600 else OTHER).inc()


# -- the event loop -------------------------------------------------------------------------------
class LoopLag:
    """Event-loop lag: one task sleeps `interval` seconds at a time and records how late it woke up.

    Anything that holds the loop (a burst of requests, a blocking call) delays every request by as
    much, and shows here. The app starts the task at start-up and stops it at shutdown (a scrape
    starts it too, for an app run without its lifespan). Cost: one timer every 50 ms.
    """

    def __init__(
        self, interval: float = LOOP_LAG_INTERVAL, *, registry: CollectorRegistry | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError("the lag probe needs an interval > 0")
        self.interval = interval
        self.registry = registry if registry is not None else CollectorRegistry()
        self.histogram = Histogram(
            "sluice_event_loop_lag_seconds",
            f"How late a {interval:g} s timer on the event loop fired.",
            buckets=LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling on the running loop, unless already started there."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._sample(), name="sluice-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.histogram.observe(max(0.0, loop.time() - due))


# -- read at scrape time --------------------------------------------------------------------------
@dataclass
class InFlight:
    """Requests in flight on the pipeline routes: `server.edge.Guarded` counts, `GET /metrics` reads."""

    count: int = 0


class BodyBudgetView(Protocol):
    @property
    def held(self) -> int: ...

    @property
    def limit(self) -> int: ...


class BreakerView(Protocol):
    def state(self, key: str) -> BreakerState: ...


class HoldsView(Protocol):
    def remaining(self, key: str) -> float: ...


class FamilySource(Protocol):
    """Something that adds its own families at scrape time (the key cache)."""

    def families(self) -> list[Metric]: ...


class LedgerView(Protocol):
    @property
    def backlog(self) -> int: ...

    @property
    def stats(self) -> LedgerStats: ...


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge without labels, read at scrape time."""
    return GaugeMetricFamily(name, documentation, value=value)


class ScrapeTime(Collector):
    """The families read when `/metrics` is scraped, from the objects that hold the figures."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield gauge(
            "sluice_requests_in_flight", "Chat and embeddings requests in flight now.", m.in_flight.count
        )
        yield gauge(
            "sluice_requests_in_flight_limit", "SLUICE_MAX_CONCURRENCY: the in-flight cap.", m.in_flight_limit
        )
        if m.body_budget is not None:
            yield gauge(
                "sluice_request_body_bytes_in_flight",
                "Estimated memory the bodies of chat and embeddings requests in flight hold, in bytes.",
                m.body_budget.held,
            )
            yield gauge(
                "sluice_request_body_bytes_in_flight_limit",
                "SLUICE_MAX_INFLIGHT_BODY_BYTES: the body budget.",
                m.body_budget.limit,
            )
        yield from self._deployments()
        yield from self._audit()
        yield from self._limits()
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop: rendered from plain code
            pass
        else:
            yield gauge(
                "sluice_asyncio_tasks",
                "asyncio tasks alive on the event loop, the scrape's own included.",
                tasks,
            )
        if m.keys is not None:
            yield from m.keys.families()

    def _deployments(self) -> Iterator[Metric]:
        available = GaugeMetricFamily(
            "sluice_deployment_available",
            "1 when the deployment has its credentials, 0 when it is never tried.",
            labels=("deployment",),
        )
        breaker = GaugeMetricFamily(
            "sluice_circuit_breaker_state",
            "1 for the current state of each deployment's circuit breaker, 0 for the others.",
            labels=("deployment", "state"),
        )
        for dep in self.metrics.deployments:
            available.add_metric((dep.id,), 1 if dep.available else 0)
            current = self.metrics.breaker.state(dep.id)
            for state in BreakerState:
                breaker.add_metric((dep.id, state.value), 1 if state is current else 0)
        yield available
        yield breaker
        held = GaugeMetricFamily(
            "sluice_deployment_hold_seconds",
            "Seconds before the deployment may be called again (it answered with Retry-After); 0: now.",
            labels=("deployment",),
        )
        holds = self.metrics.holds
        for dep in self.metrics.deployments:
            held.add_metric((dep.id,), round(holds.remaining(dep.id), 3) if holds is not None else 0)
        yield held

    def _limits(self) -> Iterator[Metric]:
        limiter = self.metrics.limiter
        if limiter is None:
            return
        status, _ = limiter.state.status()
        yield gauge(
            "sluice_shared_state_up",
            "1 while limits, breakers and holds are shared through Redis; 0 while Redis is away "
            "(per-process fallback) or not configured.",
            1 if status == "ok" else 0,
        )
        refused = CounterMetricFamily(
            "sluice_rate_limited_total",
            "Requests refused by a key's limit (429 rate_limited), by limit.",
            labels=("limit",),
        )
        for limit, count in limiter.refused.items():
            refused.add_metric((limit,), count)
        yield refused
        losses = getattr(limiter.state, "failures", None)
        if isinstance(losses, int):
            yield CounterMetricFamily(
                "sluice_shared_state_lost_total",
                "Times Redis stopped answering (and the gateway fell back).",
                value=losses,
            )

    def _audit(self) -> Iterator[Metric]:
        m = self.metrics
        yield gauge(
            "sluice_audit_ready",
            "1 when the audit sink is ready (as in /readyz), else 0.",
            1 if m.audit.status()[0] else 0,
        )
        if m.ledger is None:
            return
        yield gauge(
            "sluice_audit_backlog",
            "Audit records queued, not yet in the database or the spool.",
            m.ledger.backlog,
        )
        records = CounterMetricFamily(
            "sluice_audit_records_total",
            "Audit records by outcome: written, spooled, replayed from the spool, dropped (lost).",
            labels=("outcome",),
        )
        stats = m.ledger.stats
        for outcome, count in (
            ("written", stats.written),
            ("spooled", stats.spooled),
            ("replayed", stats.replayed),
            ("dropped", stats.dropped),
        ):
            records.add_metric((outcome,), count)
        yield records


class GatewayMetrics:
    """Everything `GET /metrics` shows, in the app's registry (the one `requests` counts in): the
    request counters, the responses, the loop lag, the gauges read at scrape time, the process
    (prometheus_client's `ProcessCollector`: CPU, memory, file descriptors, from Linux `/proc`)."""

    def __init__(
        self,
        *,
        requests: RequestMetrics,
        in_flight: InFlight,
        in_flight_limit: int,
        deployments: Sequence[Deployment],
        breaker: BreakerView,
        audit: AuditSink,
        ledger: LedgerView | None = None,
        keys: FamilySource | None = None,
        body_budget: BodyBudgetView | None = None,
        limiter: Limiter | None = None,
        holds: HoldsView | None = None,
    ) -> None:
        self.registry = requests.registry
        self.requests = requests
        self.in_flight = in_flight
        self.in_flight_limit = in_flight_limit
        self.deployments = tuple(deployments)
        self.breaker = breaker
        self.audit = audit
        self.ledger = ledger
        self.keys = keys
        self.body_budget = body_budget
        self.limiter = limiter
        self.holds = holds
        self.http = HttpResponses(self.registry)
        self.loop_lag = LoopLag(registry=self.registry)
        self.registry.register(ScrapeTime(self))
        ProcessCollector(registry=self.registry)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
