"""Sluice's metrics for `GET /metrics` (the format itself is `gateway.observability.prometheus`).

What belongs here: the fixed label sets; `RequestMetrics`, fed by `MetricsSink` from the
`AuditEvent` of every decided request; `LoopLag`, a timer that measures how late the event loop
wakes it; and `GatewayMetrics`, which adds what is read at scrape time (requests in flight, circuit
breakers, the audit ledger, the event loop, the process).

Every label value comes from a fixed set: a configured model alias or deployment id, one of
Sluice's enums (endpoint, decision, error code, breaker state) or a status class. Anything else,
whatever a client sent, becomes `other`. Key names are never labels: they name people and teams,
and the ledger already holds per-key figures. Counts are per process (`--workers N`: N series).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gateway.core.limits import Limiter
from gateway.core.pipeline import CLIENT_CLOSED
from gateway.core.resilience import BreakerState
from gateway.names import DecisionKind, Endpoint, ErrorCode
from gateway.observability.audit import AuditEvent, AuditSink
from gateway.observability.prometheus import Counter, Family, Gauge, Histogram, render

if TYPE_CHECKING:
    from gateway.core.deployments import Deployment
    from gateway.storage.ledger import LedgerStats

log = logging.getLogger("sluice.metrics")

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

    def __init__(self, *, models: Iterable[str], deployments: Iterable[str]) -> None:
        self.model = LabelSet(models)
        self.deployment = LabelSet(deployments)
        self.endpoint = LabelSet(ENDPOINTS)
        self.decision = LabelSet(DecisionKind)
        self.code = LabelSet(ErrorCode)
        self._lock = threading.Lock()  # AuditSink.record() may be called from another thread
        self.requests = Counter(
            "sluice_requests_total",
            "Requests that reached a decision, by requested model, decision and status class.",
            ("endpoint", "model", "decision", "status_class"),
        )
        self.errors = Counter(
            "sluice_request_errors_total",
            "Decided requests that ended in an error, by error code.",
            ("endpoint", "code"),
        )
        self.cancelled = Counter(
            "sluice_client_cancelled_total",
            "Decided requests whose client went away before the answer was complete.",
            ("endpoint", "model"),
        )
        self.attempts = Counter(
            "sluice_upstream_attempts_total",
            "Upstream calls made (first tries and failovers), by requested model.",
            ("endpoint", "model"),
        )
        self.served = Counter(
            "sluice_deployment_requests_total",
            "Requests by the deployment that answered or failed last, and status class.",
            ("deployment", "status_class"),
        )
        self.tokens = Counter(
            "sluice_tokens_total",
            "Tokens the upstream reported, by served model and kind (prompt, completion).",
            ("served_model", "kind"),
        )
        self.latency = Histogram(
            "sluice_request_duration_seconds",
            "Time from request start to its audit record, for requests that reached an upstream.",
            ("endpoint", "served_model", "stream"),
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, event: AuditEvent) -> None:
        endpoint, model = self.endpoint(event.endpoint), self.model(event.requested_model)
        served, status = self.model(event.served_model), status_class(event.status)
        with self._lock:
            self.requests.inc(endpoint, model, self.decision(event.decision), status)
            if event.error_code is not None:
                self.errors.inc(endpoint, self.code(event.error_code))
            if event.client_cancelled:
                self.cancelled.inc(endpoint, model)
            if event.attempts > 0:
                self.attempts.inc(endpoint, model, amount=event.attempts)
            if event.deployment is not None:
                self.served.inc(self.deployment(event.deployment), status)
                stream = "true" if event.stream else "false"
                self.latency.observe(endpoint, served, stream, value=max(event.latency_ms, 0.0) / 1000)
            for kind, count in (("prompt", event.prompt_tokens), ("completion", event.completion_tokens)):
                if count is not None and count > 0:
                    self.tokens.inc(served, kind, amount=count)

    def render(self) -> str:
        families = (self.requests, self.errors, self.cancelled, self.attempts, self.served, self.tokens)
        with self._lock:
            return render((*families, self.latency))


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

    def __init__(self) -> None:
        self.counter = Counter(
            "sluice_http_responses_total",
            "HTTP responses by route group and status code, refusals before any decision included.",
            ("route", "code"),
        )

    def observe(self, path: str, status: int) -> None:
        self.counter.inc(route_group(path), str(status) if 100 <= status < 600 else OTHER)


# -- the event loop -------------------------------------------------------------------------------
class LoopLag:
    """Event-loop lag: one task sleeps `interval` seconds at a time and records how late it woke up.

    Anything that holds the loop (a burst of requests, a blocking call) delays every request by as
    much, and shows here. The app starts the task at start-up and stops it at shutdown (a scrape
    starts it too, for an app run without its lifespan). Cost: one timer every 50 ms.
    """

    def __init__(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("the lag probe needs an interval > 0")
        self.interval = interval
        self.histogram = Histogram(
            "sluice_event_loop_lag_seconds",
            f"How late a {interval:g} s timer on the event loop fired.",
            buckets=LOOP_LAG_BUCKETS,
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
            self.histogram.observe(value=max(0.0, loop.time() - due))


def loop_families(lag: LoopLag) -> list[Family]:
    """The lag histogram, and the number of asyncio tasks when rendered on a running loop."""
    try:
        count = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop: render() called from plain code
        return [lag.histogram]
    tasks = Gauge("sluice_asyncio_tasks", "asyncio tasks alive on the event loop, the scrape's own included.")
    tasks.set(value=count)
    return [tasks, lag.histogram]


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

    def families(self) -> list[Family]: ...


class LedgerView(Protocol):
    @property
    def backlog(self) -> int: ...

    @property
    def stats(self) -> LedgerStats: ...


def process_families(proc: Path = Path("/proc/self")) -> list[Family]:
    """CPU time, resident memory and open file descriptors, where /proc has them (Linux)."""
    times = os.times()
    cpu = Counter("process_cpu_seconds_total", "User and system CPU time of this process, in seconds.")
    cpu.inc(amount=times.user + times.system)
    families: list[Family] = [cpu]
    try:
        resident_pages = int((proc / "statm").read_text().split()[1])
        open_fds = len(os.listdir(proc / "fd"))
    except (OSError, IndexError, ValueError):
        return families
    rss = Gauge("process_resident_memory_bytes", "Resident memory of this process, in bytes.")
    rss.set(value=resident_pages * os.sysconf("SC_PAGE_SIZE"))
    fds = Gauge("process_open_fds", "Open file descriptors of this process.")
    fds.set(value=open_fds)
    return [*families, rss, fds]


class GatewayMetrics:
    """Everything `GET /metrics` shows: the request counters plus gauges read at scrape time."""

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
        loop_lag: LoopLag | None = None,
        proc: Path = Path("/proc/self"),
        body_budget: BodyBudgetView | None = None,
        limiter: Limiter | None = None,
        holds: HoldsView | None = None,
    ) -> None:
        self.requests = requests
        self.in_flight = in_flight
        self.in_flight_limit = in_flight_limit
        self.deployments = tuple(deployments)
        self.breaker = breaker
        self.audit = audit
        self.ledger = ledger
        self.keys = keys
        self.loop_lag = loop_lag or LoopLag()
        self.http = HttpResponses()
        self.proc = proc
        self.body_budget = body_budget
        self.limiter = limiter
        self.holds = holds

    def _gateway(self) -> list[Family]:
        in_flight = Gauge("sluice_requests_in_flight", "Chat and embeddings requests in flight now.")
        in_flight.set(value=self.in_flight.count)
        limit = Gauge("sluice_requests_in_flight_limit", "SLUICE_MAX_CONCURRENCY: the in-flight cap.")
        limit.set(value=self.in_flight_limit)
        available = Gauge(
            "sluice_deployment_available",
            "1 when the deployment has its credentials, 0 when it is never tried.",
            ("deployment",),
        )
        breaker = Gauge(
            "sluice_circuit_breaker_state",
            "1 for the current state of each deployment's circuit breaker, 0 for the others.",
            ("deployment", "state"),
        )
        for dep in self.deployments:
            available.set(dep.id, value=1 if dep.available else 0)
            current = self.breaker.state(dep.id)
            for state in BreakerState:
                breaker.set(dep.id, state.value, value=1 if state is current else 0)
        held = Gauge(
            "sluice_deployment_hold_seconds",
            "Seconds before the deployment may be called again (it answered with Retry-After); 0: now.",
            ("deployment",),
        )
        for dep in self.deployments:
            held.set(dep.id, value=round(self.holds.remaining(dep.id), 3) if self.holds is not None else 0)
        return [in_flight, limit, *self._bodies(), available, breaker, held]

    def _bodies(self) -> list[Family]:
        if self.body_budget is None:
            return []
        held = Gauge(
            "sluice_request_body_bytes_in_flight",
            "Estimated memory the bodies of chat and embeddings requests in flight hold, in bytes.",
        )
        held.set(value=self.body_budget.held)
        limit = Gauge(
            "sluice_request_body_bytes_in_flight_limit", "SLUICE_MAX_INFLIGHT_BODY_BYTES: the body budget."
        )
        limit.set(value=self.body_budget.limit)
        return [held, limit]

    def _audit(self) -> list[Family]:
        ready = Gauge("sluice_audit_ready", "1 when the audit sink is ready (as in /readyz), else 0.")
        ready.set(value=1 if self.audit.status()[0] else 0)
        if self.ledger is None:
            return [ready]
        backlog = Gauge("sluice_audit_backlog", "Audit records queued, not yet in the database or the spool.")
        backlog.set(value=self.ledger.backlog)
        records = Counter(
            "sluice_audit_records_total",
            "Audit records by outcome: written, spooled, replayed from the spool, dropped (lost).",
            ("outcome",),
        )
        stats = self.ledger.stats
        for outcome, count in (
            ("written", stats.written),
            ("spooled", stats.spooled),
            ("replayed", stats.replayed),
            ("dropped", stats.dropped),
        ):
            records.inc(outcome, amount=count)
        return [ready, backlog, records]

    def _limits(self) -> list[Family]:
        if self.limiter is None:
            return []
        status, _ = self.limiter.state.status()
        up = Gauge(
            "sluice_shared_state_up",
            "1 while limits, breakers and holds are shared through Redis; 0 while Redis is away "
            "(per-process fallback) or not configured.",
        )
        up.set(value=1 if status == "ok" else 0)
        refused = Counter(
            "sluice_rate_limited_total",
            "Requests refused by a key's limit (429 rate_limited), by limit.",
            ("limit",),
        )
        for limit, count in self.limiter.refused.items():
            refused.inc(limit, amount=count)
        families: list[Family] = [up, refused]
        losses = getattr(self.limiter.state, "failures", None)
        if isinstance(losses, int):
            lost = Counter(
                "sluice_shared_state_lost_total", "Times Redis stopped answering (and the gateway fell back)."
            )
            lost.inc(amount=losses)
            families.append(lost)
        return families

    def render(self) -> str:
        families = [self.http.counter, *self._gateway(), *self._audit(), *self._limits()]
        families += loop_families(self.loop_lag)
        if self.keys is not None:
            families += self.keys.families()
        families += process_families(self.proc)
        return self.requests.render() + render(families)
