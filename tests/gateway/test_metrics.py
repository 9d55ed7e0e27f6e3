"""`GET /metrics`: an exposition prometheus_client's parser reads, one registry per app, counters
moved by real requests, fixed labels only (a canary never reaches a scrape), the in-flight gauge
over a real socket, and who may scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest
from pydantic import SecretStr
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.names import Endpoint
from gateway.observability.audit import AuditEvent, MemoryAuditSink
from gateway.observability.metrics import (
    OTHER,
    LoopLag,
    MetricsSink,
    RequestMetrics,
    status_class,
)
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_KEY, chat_body
from tests.gateway.support import LITELLM_WARNINGS, bearer, error_of, serving
from tests.helpers import served, until
from tests.scrape import Scrape, parse
from tests.scrape import scrape_of as scrape

pytestmark = list(LITELLM_WARNINGS)

MASTER_KEY = "sk-master-metrics-0123456789"
MASTER = bearer(MASTER_KEY)
CANARY = "CANARY-metrics-xyz"
ODD_MODEL = f'{CANARY}"/../\\n{{le="1"}}\n'
DEMO_DEPLOYMENTS = {
    "gpt-4o-mini#0",
    "claude-sonnet#0",
    "gemini-flash#0",
    "gemini-flash-free#0",
    "deepseek-chat#0",
    "llama-local#0",
    "text-embedding-3-small#0",
}


async def scrape_of(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Scrape:
    return await scrape(http, MASTER if headers is None else headers)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def settings(demo_settings: Settings) -> Settings:
    return demo_settings.model_copy(update={"master_key": SecretStr(MASTER_KEY)})


@pytest.fixture
async def gateway(
    settings: Settings, audit: MemoryAuditSink
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, audit=audit)
    async with serving(app) as http:
        yield app, http


async def test_two_apps_in_one_process_share_no_metric(settings: Settings, fake: FakeUpstream) -> None:
    first = create_app(settings, audit=MemoryAuditSink())
    second = create_app(settings, audit=MemoryAuditSink())
    async with serving(first) as one, serving(second) as two:
        assert (await one.post("/v1/chat/completions", json=chat_body(), headers=AUTH)).status_code == 200
        moved, still = await scrape_of(one), await scrape_of(two)
    labels = {"endpoint": "chat", "model": "gpt-4o-mini", "decision": "allowed", "status_class": "2xx"}
    assert moved.value("sluice_requests_total", **labels) == 1
    assert still.total("sluice_requests_total") == 0
    assert still.value("sluice_http_responses_total", route="chat", code="200") == 0
    # Nothing of Sluice's is in prometheus_client's process-wide registry.
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("sluice_")]


def test_latency_buckets_are_le_inclusive() -> None:
    metrics = RequestMetrics(models=["m"], deployments=["m#0"])
    for ms in (100.0, 100.5, 7_000.0):
        metrics.observe(replace(odd_event(), requested_model="m", served_model="m", latency_ms=ms))
    scrape = parse(metrics.render())
    series = {"endpoint": OTHER, "served_model": "m", "stream": "false"}
    assert scrape.value("sluice_request_duration_seconds_bucket", **series, le="0.1") == 1  # 0.1 s itself
    assert scrape.value("sluice_request_duration_seconds_bucket", **series, le="0.25") == 2
    assert scrape.value("sluice_request_duration_seconds_bucket", **series, le="+Inf") == 3
    assert scrape.value("sluice_request_duration_seconds_sum", **series) == pytest.approx(7.2005)


def test_fixed_label_sets() -> None:
    assert [status_class(s) for s in (200, 404, 502, 499, 0, 302)] == [
        "2xx",
        "4xx",
        "5xx",
        "client_closed",
        OTHER,
        OTHER,
    ]
    metrics = RequestMetrics(models=["m"], deployments=["m#0"])
    assert metrics.endpoint.values == set(Endpoint)  # the enum's names, not a copy
    assert (metrics.model("m"), metrics.model("M"), metrics.model(None)) == ("m", OTHER, OTHER)


def test_sink_forwards_first_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RequestMetrics):
        def observe(self, event: AuditEvent) -> None:
            raise RuntimeError(CANARY)

    inner = MemoryAuditSink()
    sink = MetricsSink(inner, Broken(models=(), deployments=()))
    event = odd_event()
    sink.record(event)
    assert inner.events == [event]
    assert "RuntimeError" in caplog.text and CANARY not in caplog.text


def odd_event() -> AuditEvent:
    """An event carrying the canary in every string a label could be taken from."""
    return AuditEvent(
        request_id="r-1",
        time=datetime.now(UTC),
        key_name=f"key-{CANARY}",
        endpoint=f"chat{CANARY}",
        requested_model=ODD_MODEL,
        policy=(CANARY,),
        decision=f"allowed{CANARY}",
        status=200,
        served_model=ODD_MODEL,
        deployment=f"{ODD_MODEL}#0",
        provider=CANARY,
        channel=CANARY,
        error_code=CANARY,
        latency_ms=12.0,
        prompt_tokens=5,
        completion_tokens=6,
        client_cancelled=True,
        attempts=1,
    )


# -- counters move with real requests ---------------------------------------------------------------
async def test_counters_match_the_requests_and_the_ledger(
    gateway: tuple[FastAPI, httpx.AsyncClient], audit: MemoryAuditSink
) -> None:
    _, http = gateway
    before = await scrape_of(http)
    assert before.total("sluice_requests_total") == 0
    assert before.value("sluice_requests_in_flight") == 0

    served = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    streamed = await http.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    blocked = await http.post("/v1/chat/completions", json=chat_body("gemini-flash-free"), headers=AUTH)
    rerouted = await http.post("/v1/chat/completions", json=chat_body("deepseek-chat"), headers=AUTH)
    failed = await http.post(
        "/v1/chat/completions", json=chat_body(content="Hi [[fake:status=503]]"), headers=AUTH
    )
    embedded = await http.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"}, headers=AUTH
    )
    statuses = [r.status_code for r in (served, streamed, blocked, rerouted, failed, embedded)]
    assert statuses == [200, 200, 403, 200, 502, 200]
    scrape = await scrape_of(http)
    requests = "sluice_requests_total"
    for endpoint, model, decision, klass, count in (
        ("chat", "gpt-4o-mini", "allowed", "2xx", 2),
        ("chat", "gpt-4o-mini", "allowed", "5xx", 1),
        ("chat", "gemini-flash-free", "blocked", "4xx", 1),
        ("chat", "deepseek-chat", "rerouted", "2xx", 1),
        ("embeddings", "text-embedding-3-small", "allowed", "2xx", 1),
    ):
        labels = {"endpoint": endpoint, "model": model, "decision": decision, "status_class": klass}
        assert scrape.value(requests, **labels) == count, labels
    assert scrape.total(requests) == 6
    assert scrape.value("sluice_request_errors_total", endpoint="chat", code="no_compliant_deployment") == 1
    assert scrape.value("sluice_request_errors_total", endpoint="chat", code="upstream_unavailable") == 1
    assert (
        scrape.value("sluice_deployment_requests_total", deployment="llama-local#0", status_class="2xx") == 1
    )
    assert (
        scrape.value("sluice_deployment_requests_total", deployment="gpt-4o-mini#0", status_class="5xx") == 1
    )
    assert scrape.value("sluice_upstream_attempts_total", endpoint="chat", model="gpt-4o-mini") == 3
    assert scrape.value("sluice_client_cancelled_total", endpoint="chat", model="gpt-4o-mini") == 0
    usage = served.json()["usage"]  # the only gpt-4o-mini answer with usage (the stream asked for none)
    assert (
        scrape.value("sluice_tokens_total", served_model="gpt-4o-mini", kind="prompt")
        == usage["prompt_tokens"]
    )
    duration = "sluice_request_duration_seconds_count"
    assert scrape.value(duration, endpoint="chat", served_model="gpt-4o-mini", stream="false") == 2
    assert scrape.value(duration, endpoint="chat", served_model="gpt-4o-mini", stream="true") == 1
    assert scrape.value(duration, endpoint="chat", served_model="llama-local", stream="false") == 1
    assert scrape.total(duration) == 5  # the blocked request never reached an upstream

    # The ledger and the metrics agree, series by series.
    expected = Tally(
        (e.endpoint, e.requested_model, e.decision, status_class(e.status)) for e in audit.events
    )
    for (endpoint, model, decision, klass), count in expected.items():
        labels = {"endpoint": endpoint, "model": model, "decision": decision, "status_class": klass}
        assert scrape.value(requests, **labels) == count, labels
    tokens: Tally[tuple[str, str]] = Tally()
    for event in audit.events:
        if event.served_model is not None:
            tokens[event.served_model, "prompt"] += event.prompt_tokens or 0
            tokens[event.served_model, "completion"] += event.completion_tokens or 0
    for (model, kind), count in tokens.items():
        assert scrape.value("sluice_tokens_total", served_model=model, kind=kind) == count, (model, kind)


async def test_gauges_read_at_scrape_time(
    gateway: tuple[FastAPI, httpx.AsyncClient], settings: Settings
) -> None:
    _, http = gateway
    scrape = await scrape_of(http)
    assert scrape.value("sluice_requests_in_flight_limit") == settings.max_concurrency
    assert scrape.label_values("deployment") == DEMO_DEPLOYMENTS
    for dep in DEMO_DEPLOYMENTS:
        assert scrape.value("sluice_deployment_available", deployment=dep) == 1
        assert scrape.value("sluice_circuit_breaker_state", deployment=dep, state="closed") == 1
        assert scrape.total("sluice_circuit_breaker_state", deployment=dep) == 1
    assert scrape.value("sluice_audit_ready") == 1
    assert scrape.types["process_cpu_seconds_total"] == "counter"
    assert scrape.value("process_resident_memory_bytes") > 1_000_000
    assert scrape.value("process_open_fds") > 0


async def test_breaker_state_follows_the_upstream(demo_settings: Settings) -> None:
    settings = demo_settings.model_copy(update={"breaker_failures": 1, "metrics_public": True})
    async with serving(create_app(settings, audit=MemoryAuditSink())) as http:
        failed = await http.post(
            "/v1/chat/completions", json=chat_body(content="Hi [[fake:status=503]]"), headers=AUTH
        )
        assert failed.status_code == 502
        scrape = await scrape_of(http, headers={})
    assert scrape.value("sluice_circuit_breaker_state", deployment="gpt-4o-mini#0", state="open") == 1
    assert scrape.value("sluice_circuit_breaker_state", deployment="gpt-4o-mini#0", state="closed") == 0
    assert scrape.value("sluice_circuit_breaker_state", deployment="llama-local#0", state="closed") == 1


async def test_ledger_figures_when_the_database_backs_the_audit(demo_settings: Settings) -> None:
    settings = demo_settings.model_copy(update={"metrics_public": True})
    async with serving(create_app(settings)) as http:
        response = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert response.status_code == 200

        async def written() -> bool:
            scrape = await scrape_of(http, headers={})
            return (
                scrape.value("sluice_audit_records_total", outcome="written") == 1
                and scrape.value("sluice_audit_backlog") == 0
            )

        await until(written, "the ledger to write the record")
        scrape = await scrape_of(http, headers={})
    assert scrape.value("sluice_audit_records_total", outcome="dropped") == 0
    assert scrape.types["sluice_audit_records_total"] == "counter"


# -- privacy: fixed labels, no canary -------------------------------------------------------------
async def test_client_strings_never_become_labels(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake: FakeUpstream
) -> None:
    app, http = gateway
    odd = await http.post("/v1/chat/completions", json=chat_body(ODD_MODEL, content=CANARY), headers=AUTH)
    error_of(odd, 404, "model_not_found")
    content = await http.post(
        "/v1/chat/completions", json=chat_body(content=f"{CANARY} [[fake:echo]]", user=CANARY), headers=AUTH
    )
    assert content.status_code == 200 and CANARY in content.text  # it did go through
    policy = await http.post(
        "/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-privacy-policy": CANARY}
    )
    error_of(policy, 400, "unknown_policy")
    wrong_key = await http.post("/v1/chat/completions", json=chat_body(), headers=bearer(CANARY))
    error_of(wrong_key, 401, "invalid_api_key")
    # Defence in depth: an event whose every field is client-made (no path produces one today).
    app.state.sluice.metrics.requests.observe(odd_event())

    scrape = await scrape_of(http)
    assert CANARY not in scrape.text and "/.." not in scrape.text
    assert DEMO_KEY not in scrape.text and MASTER_KEY not in scrape.text and fake.url not in scrape.text
    assert (
        scrape.value("sluice_requests_total", endpoint=OTHER, model=OTHER, decision=OTHER, status_class="2xx")
        == 1
    )
    assert scrape.value("sluice_request_errors_total", endpoint=OTHER, code=OTHER) == 1
    assert scrape.value("sluice_deployment_requests_total", deployment=OTHER, status_class="2xx") == 1
    assert scrape.value("sluice_tokens_total", served_model=OTHER, kind="completion") == 6
    assert scrape.value("sluice_client_cancelled_total", endpoint=OTHER, model=OTHER) == 1
    configured = {"gpt-4o-mini", OTHER}
    assert scrape.label_values("model") <= configured | set(app.state.sluice.router.models)
    labels = {k for (_, ls) in scrape.samples for k, _ in ls}
    assert labels <= {
        "endpoint",
        "model",
        "served_model",
        "decision",
        "status_class",
        "code",
        "deployment",
        "route",
    } | {
        "kind",
        "stream",
        "state",
        "outcome",
        "event",  # the key cache's fixed events
        "limit",  # the key limit that refused: requests, tokens or concurrency
        "le",
    }


async def test_every_response_is_counted_refusals_before_a_decision_included(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake: FakeUpstream
) -> None:
    """The audit-fed counters see decided requests only; 401s, 400s, 404s and the cap's 429s are
    counted here, by route group and status code, and a client-chosen path is `other`."""
    _, http = gateway
    assert (await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)).status_code == 200
    error_of(await http.post("/v1/chat/completions", json=chat_body(), headers=bearer(CANARY)), 401)
    error_of(await http.post("/v1/chat/completions", content=b"{", headers=AUTH), 400)
    error_of(await http.post("/v1/chat/completions", json=chat_body(ODD_MODEL), headers=AUTH), 404)
    error_of(await http.get(f"/v1/models/{CANARY}", headers=AUTH), 404)
    error_of(await http.get(f"/{CANARY}", headers=AUTH), 404)
    error_of(await http.get("/admin/keys", headers=AUTH), 403)
    scrape = await scrape_of(http)
    assert CANARY not in scrape.text
    counted = {
        (dict(labels)["route"], dict(labels)["code"]): value
        for (name, labels), value in scrape.samples.items()
        if name == "sluice_http_responses_total"
    }
    assert counted == {
        ("chat", "200"): 1,
        ("chat", "401"): 1,
        ("chat", "400"): 1,
        ("chat", "404"): 1,
        ("models", "404"): 1,
        (OTHER, "404"): 1,
        ("admin", "403"): 1,
    }
    assert scrape.types["sluice_http_responses_total"] == "counter"


# -- the in-flight gauge over a real socket (T4) -------------------------------------------------
async def test_in_flight_rises_during_a_stream_and_drops_when_the_client_leaves(
    demo_settings: Settings, fake: FakeUpstream
) -> None:
    settings = demo_settings.model_copy(update={"metrics_public": True})
    audit = MemoryAuditSink()
    app = create_app(settings, audit=audit)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = chat_body(content="slow [[fake:stall_after=2]]", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
            assert response.status_code == 200
            chunks = response.aiter_bytes()  # held: an abandoned iterator closes the connection
            assert await anext(chunks)  # the stream is running; the upstream now stalls
            during = await scrape_of(http, headers={})
            await response.aclose()  # the client hangs up mid-stream
        await until(lambda: fake.requests[0].client_closed_at is not None, "Sluice to close the upstream")

        async def dropped() -> bool:
            return (await scrape_of(http, headers={})).value("sluice_requests_in_flight") == 0

        await until(dropped, "the in-flight gauge to drop")
        after = await scrape_of(http, headers={})
    assert during.value("sluice_requests_in_flight") == 1
    assert during.total("sluice_requests_total") == 0  # recorded when the stream ends, not before
    assert after.value("sluice_client_cancelled_total", endpoint="chat", model="gpt-4o-mini") == 1
    [event] = audit.events
    assert event.client_cancelled


# -- who may scrape ---------------------------------------------------------------------------------
async def test_master_key_required_by_default(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, http = gateway
    error_of(await http.get("/metrics"), 401, "invalid_api_key")
    error_of(await http.get("/metrics", headers=bearer("sk-wrong-key-0000")), 401, "invalid_api_key")
    refused = await http.get("/metrics", headers=AUTH)
    error = error_of(refused, 403, "master_key_required")
    assert error["type"] == "permission_error"
    assert refused.headers.get("x-request-id")
    assert (await http.get("/metrics", headers=MASTER)).status_code == 200
    assert (await http.get("/metrics", headers={"api-key": MASTER_KEY})).status_code == 200


async def test_without_a_master_key_nobody_scrapes(demo_settings: Settings) -> None:
    assert demo_settings.master_key is None and not demo_settings.metrics_public
    async with serving(create_app(demo_settings, audit=MemoryAuditSink())) as http:
        error_of(await http.get("/metrics"), 401, "invalid_api_key")
        error_of(await http.get("/metrics", headers=AUTH), 403, "master_key_required")


async def test_public_when_configured(demo_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_METRICS_PUBLIC", "true")
    assert Settings().metrics_public is True  # the environment variable the README names
    settings = demo_settings.model_copy(update={"metrics_public": True})
    async with serving(create_app(settings, audit=MemoryAuditSink())) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/metrics", headers=bearer("sk-wrong-key-0000"))).status_code == 200
        parse((await http.get("/metrics")).text)


def test_request_metrics_keep_no_client_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sluice.metrics")
    metrics = RequestMetrics(models=["m"], deployments=["m#0"])
    metrics.observe(odd_event())
    assert CANARY not in caplog.text and CANARY not in metrics.render()


# -- the event loop (L2, L4) ----------------------------------------------------------------------
async def test_the_loop_lag_probe_runs_from_start_up(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = gateway
    lag: LoopLag = app.state.sluice.metrics.loop_lag
    assert lag.running  # started with the app, before anyone scrapes
    first = await scrape_of(http)
    assert first.types["sluice_event_loop_lag_seconds"] == "histogram"
    assert first.types["sluice_asyncio_tasks"] == "gauge"
    assert first.value("sluice_asyncio_tasks") >= 2  # at least the probe and this scrape

    async def sampled() -> bool:
        return (await scrape_of(http)).value("sluice_event_loop_lag_seconds_count") >= 3

    await until(sampled, "the probe to take samples")
    tasks = len(asyncio.all_tasks())
    await scrape_of(http)
    assert len(asyncio.all_tasks()) == tasks  # a scrape starts no second probe
    await lag.stop()
    assert not lag.running
    await scrape_of(http)  # an app run without its lifespan: the first scrape starts it
    assert lag.running


async def test_loop_lag_sees_a_blocked_loop() -> None:
    lag = LoopLag(interval=0.01)
    lag.start()
    try:

        def samples() -> Scrape:
            return parse(generate_latest(lag.registry).decode())

        await until(lambda: samples().value("sluice_event_loop_lag_seconds_count") >= 1, "a first sample")
        time.sleep(0.3)  # noqa: ASYNC251 -- holds the event loop, as a blocking call in a handler would
        await until(
            lambda: (
                samples().value("sluice_event_loop_lag_seconds_count")
                > samples().value("sluice_event_loop_lag_seconds_bucket", le="0.1")
            ),
            "a sample over 100 ms",
        )
    finally:
        await lag.stop()
