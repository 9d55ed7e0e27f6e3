"""Upstream faults through Sluice, one section per item of the security checklist: S2 (redirects),
S4 (bombs, huge and endless answers), U1 (connect failures), U2 (read deadline) and U5 (a 200 that
is not an answer).

Two seams. respx at the HTTP client, where the real provider hosts and keys are in play (S2, U1).
The real fake upstream over loopback sockets (S2 again, S4, U1's connect timeout, U2, U5), where
Sluice's own transports, caps and deadlines run as in production: the OpenAI wire on FastTransport,
litellm on its default aiohttp transport. In the fake-upstream configs every model has a second
compliant deployment (a self-hosted vLLM on the same fake), so a failover that must not happen
shows up as a second recorded request.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
import respx
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.litellm_adapter import load_litellm
from tests.conftest import chat_body
from tests.gateway.support import (
    DEPLOYMENTS,
    GEMINI_PAID_ATTESTATION,
    LITELLM_WARNINGS,
    RESPX_KEYS,
    anthropic_message,
    bearer,
    build_app,
    error_of,
    gemini_response,
    key_hash,
    mocked_internet,
    openai_completion,
    outbound,
    serving,
    sse_json,
)

pytestmark = list(LITELLM_WARNINGS)

KEY = "sk-client-faults-5Rt1"
MiB = 1024 * 1024
WIRES = ("gpt", "claude", "gemini")  # the OpenAI wire, and litellm's Anthropic and Gemini translations
LITELLM_WIRES = ("claude", "gemini")
UPSTREAM_PATH = {
    "gpt": "/v1/chat/completions",
    "claude": "/v1/messages",
    "gemini": "/models/gemini-2.5-flash:generateContent",
}
STREAM_PATH = {**UPSTREAM_PATH, "gemini": "/models/gemini-2.5-flash:streamGenerateContent"}
LOCAL_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module", autouse=True)
def litellm_imported() -> None:
    """Import litellm before any test's clock starts (the first import takes seconds)."""
    load_litellm()


def model_lines(models: Mapping[str, Sequence[str]]) -> str:
    return "".join(
        f"  - name: {name}\n    deployments: [{', '.join(deps)}]\n" for name, deps in models.items()
    )


def fake_config(local_url: str, *, timeout: float | None = None) -> str:
    """gpt, claude and gemini as simulated deployments (sent to `Settings.fake_upstream_url`), each
    followed by a compliant self-hosted vLLM at `local_url` that only a failover would reach."""
    pinned = f", timeout: {timeout}" if timeout is not None else ""
    local = (
        f'{{provider: self_hosted, channel: self_hosted.vllm, model: "hosted_vllm/{LOCAL_MODEL}", '
        f'api_base: "{local_url}/v1"}}'
    )
    simulated = {
        "gpt": "provider: openai, channel: openai.api, model: openai/gpt-4o-mini",
        "claude": "provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5",
        "gemini": "provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash",
    }
    models = {name: [f"{{{dep}, simulate: true{pinned}}}", local] for name, dep in simulated.items()}
    return f"""
demo: true
server: {{default_policy: no-training-only, on_violation: block}}
models:
{model_lines(models)}
attestations:
  - {GEMINI_PAID_ATTESTATION}
keys:
  - {{name: faults, key_hash: "{key_hash(KEY)}"}}
"""


async def ask(http: httpx.AsyncClient, model: str, content: str = "Hello", **extra: Any) -> httpx.Response:
    return await http.post(
        "/v1/chat/completions", json=chat_body(model, content=content, **extra), headers=bearer(KEY)
    )


def fault(directives: str) -> str:
    return f"Hello [[fake:{directives}]]"


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
async def http(fake: FakeUpstream, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    """Sluice in front of the fake upstream; deployments without their own `timeout` get 10 s."""
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url, read_timeout=10.0)
    async with serving(build_app(fake_config(fake.url), settings=settings, audit=audit)) as client:
        yield client


def assert_one_request_to(fake: FakeUpstream, model: str, *, stream: bool = False) -> None:
    """The first deployment was asked exactly once and nothing failed over to the local vLLM."""
    paths = [r.path for r in fake.requests]
    assert paths == [(STREAM_PATH if stream else UPSTREAM_PATH)[model]], paths


async def hung_up_early(fake: FakeUpstream) -> None:
    """Sluice closed the upstream connection before the fake had sent its whole answer. The fake
    notes it once it notices (bounded poll: a safety net, not a measurement)."""
    for _ in range(500):
        [request] = fake.requests
        if request.client_closed_at is not None:
            break
        await asyncio.sleep(0.01)
    assert request.client_closed_early, "the upstream connection was not cut off"


def assert_upstream_failure(response: httpx.Response, code: str = "upstream_unavailable") -> dict[str, Any]:
    error = error_of(response, 504 if code == "upstream_timeout" else 502, code)
    assert error["type"] == "upstream_error"
    assert response.headers["X-Privacy-Decision"] == "allowed"  # badges on the error, too
    return error


# == S2: a 30x to another host is not followed; that host gets no request and never the key ========
# deepseek is not compliant under no-training-only (whether its API trains is unknown): never contacted.
RESPX_DEPLOYMENTS = {
    "gpt": DEPLOYMENTS["openai"],
    "claude": DEPLOYMENTS["anthropic"],
    "gemini": DEPLOYMENTS["gemini_paid"],
    "azure": DEPLOYMENTS["azure"],
    "deepseek": DEPLOYMENTS["deepseek"],
}
HOSTS = {
    "gpt": "api.openai.com",
    "claude": "api.anthropic.com",
    "gemini": "generativelanguage.googleapis.com",
    "azure": "contoso.openai.azure.com",
    "deepseek": "api.deepseek.com",
}
KEY_ENV = {
    "gpt": "RESPX_OPENAI_KEY",
    "claude": "RESPX_ANTHROPIC_KEY",
    "gemini": "RESPX_GEMINI_KEY",
    "azure": "RESPX_AZURE_KEY",
}
COLLECTOR = "collector.attacker.test"
RESPX_MODELS = {
    **{name: [name] for name in ("gpt", "claude", "gemini", "azure")},
    # U1: a compliant deployment that cannot be reached, a non-compliant one, a compliant one.
    "gpt-deepseek-claude": ["gpt", "deepseek", "claude"],
    "claude-deepseek-gpt": ["claude", "deepseek", "gpt"],
}
RESPX_CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
{model_lines({name: [RESPX_DEPLOYMENTS[d] for d in deps] for name, deps in RESPX_MODELS.items()})}
attestations:
  - {GEMINI_PAID_ATTESTATION}
keys:
  - {{name: faults, key_hash: "{key_hash(KEY)}"}}
"""
ANSWERS_FROM = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini", "azure": "azure"}
ANSWERS = {
    "gpt": openai_completion("from openai"),
    "claude": anthropic_message("from anthropic"),
    "gemini": gemini_response("from gemini"),
    "azure": openai_completion("from azure"),
    "deepseek": openai_completion("from deepseek"),
}


@pytest.fixture
def internet(respx_keys: dict[str, str], litellm_over_httpx: None) -> Iterator[respx.MockRouter]:
    """The mocked internet: each provider host answers in its own wire format unless a test says
    otherwise, and the attacker's collector answers too (so following a redirect would succeed)."""
    with mocked_internet(assert_all_mocked=True) as mock:
        for name, host in HOSTS.items():
            mock.route(name=name, host=host).mock(return_value=httpx.Response(200, json=ANSWERS[name]))
        mock.route(name="collector", host=COLLECTOR).mock(
            return_value=httpx.Response(200, json=openai_completion("stolen"))
        )
        yield mock


@pytest.fixture
async def via_respx(internet: respx.MockRouter, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(RESPX_CONFIG, audit=audit)) as client:
        yield client


def carries(request: httpx.Request, secret: str) -> bool:
    sent = [value for _, value in request.headers.raw] + [request.url.raw_path, request.content]
    return any(secret.encode() in part for part in sent)


def sent_to(mock: respx.MockRouter) -> dict[str, int]:
    hosts: dict[str, int] = {}
    for call in outbound(mock):
        hosts[call.request.url.host] = hosts.get(call.request.url.host, 0) + 1
    return hosts


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini", "azure"])
async def test_s2_redirect_to_another_host_is_not_followed_respx(
    via_respx: httpx.AsyncClient, internet: respx.MockRouter, model: str
) -> None:
    """gpt: the OpenAI wire; claude, gemini: litellm with Sluice's handler; azure: the OpenAI SDK
    client Sluice hands litellm. Followed, a 307 re-sends the body and every header but
    `authorization` (x-api-key, x-goog-api-key, api-key) to the new host."""
    internet.routes[model].mock(
        return_value=httpx.Response(307, headers={"location": f"https://{COLLECTOR}/v1/steal"})
    )
    response = await ask(via_respx, model)
    assert_upstream_failure(response)
    assert sent_to(internet) == {HOSTS[model]: 1}
    assert internet.routes["collector"].call_count == 0
    key = RESPX_KEYS[KEY_ENV[model]]
    # The key was there to leak, and went only to its own host.
    assert all(
        carries(call.request, key) == (call.request.url.host == HOSTS[model]) for call in outbound(internet)
    )
    assert key not in response.text


@pytest.fixture
async def collector() -> AsyncIterator[FakeUpstream]:
    """A second fake upstream: the other host a redirect points at."""
    async with FakeUpstream() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", WIRES)
async def test_s2_redirect_to_another_host_is_not_followed_fake_upstream(
    http: httpx.AsyncClient, fake: FakeUpstream, collector: FakeUpstream, model: str, stream: bool
) -> None:
    """The same through the production transports (FastTransport; litellm on aiohttp), over sockets."""
    target = f"http://localhost:{collector.port}/v1/chat/completions"
    response = await ask(http, model, fault(f"redirect={target},status=307"), stream=stream)
    assert_upstream_failure(response)
    assert_one_request_to(fake, model, stream=stream)
    assert collector.requests == []


# == S4: bombs, huge and endless answers: 502, reads capped, memory bounded =========================
def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


S4_FAULTS = {
    "gzip_bomb": "gzip_bomb",  # 1 GiB of spaces, then the reply, in about 1 MB of gzip
    "huge_body": f"huge_body={1024 * MiB}",  # 1 GiB, sent until Sluice stops reading
    "endless_line": "endless_line",  # a 64 MiB SSE line, then the connection closes
    "huge_header": f"huge_header={MiB}",  # a 1 MiB response header
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", WIRES)
@pytest.mark.parametrize("case", list(S4_FAULTS))
async def test_s4_oversized_answer_is_502_with_capped_reads(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, stream: bool, case: str
) -> None:
    before = peak_rss()
    response = await ask(http, model, fault(S4_FAULTS[case]), stream=stream)
    grown = peak_rss() - before
    assert_upstream_failure(response)
    assert_one_request_to(fake, model, stream=stream)
    if case in ("huge_body", "endless_line"):
        # Sluice hung up long before the fake finished sending (1 GiB, 64 MiB).
        await hung_up_early(fake)
    # Rough, and the peak only moves up. Capped, a case adds at most the 32 MiB cap (plus litellm's
    # first-use imports); read whole, any of these adds hundreds of MiB, and so does a gzip bomb
    # inflated a whole network read at a time (about 250 MiB from one 256 KiB read).
    assert grown < 128 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"


# == U1: connect refused or timed out: failover on compliant deployments only, then 502 ==============
@pytest.mark.parametrize(
    ("model", "unreachable", "served"),
    [("gpt-deepseek-claude", "gpt", "claude"), ("claude-deepseek-gpt", "claude", "gpt")],
)
async def test_u1_connect_timeout_fails_over_past_a_non_compliant_deployment(
    via_respx: httpx.AsyncClient,
    internet: respx.MockRouter,
    audit: MemoryAuditSink,
    model: str,
    unreachable: str,
    served: str,
) -> None:
    """A connect timeout is a connect error (nothing was sent), not a read timeout: it fails over.
    (Refused connections: test_routing_respx.py, and the all-failing test below.)"""
    internet.routes[unreachable].mock(side_effect=httpx.ConnectTimeout("connect timed out"))
    response = await ask(via_respx, model)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"from {ANSWERS_FROM[served]}"
    assert internet.routes["deepseek"].call_count == 0
    assert internet.routes[unreachable].call_count == 1
    assert internet.routes[served].call_count == 1
    assert set(sent_to(internet)) == {HOSTS[unreachable], HOSTS[served]}
    [event] = audit.events
    assert (event.status, event.attempts, event.deployment) == (200, 2, f"{model}#2")


@pytest.mark.parametrize("model", ["gpt-deepseek-claude", "claude-deepseek-gpt"])
async def test_u1_every_compliant_deployment_failing_to_connect_is_502_with_retry_after(
    via_respx: httpx.AsyncClient, internet: respx.MockRouter, audit: MemoryAuditSink, model: str
) -> None:
    internet.routes["gpt"].mock(side_effect=httpx.ConnectTimeout("cannot connect"))
    internet.routes["claude"].mock(side_effect=httpx.ConnectError("connection refused"))
    response = await ask(via_respx, model)
    error = assert_upstream_failure(response)
    assert "every compliant deployment failed" in error["message"]
    # None of them started the work, so retrying is safe: Sluice says when (its 1 s floor here).
    assert response.headers["retry-after"] == "1"
    assert internet.routes["deepseek"].call_count == 0
    assert set(sent_to(internet)) == {HOSTS["gpt"], HOSTS["claude"]}
    [event] = audit.events
    assert (event.status, event.attempts, event.error_code) == (502, 2, "upstream_unavailable")


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A loopback port that never completes a connect: backlog 0 and one connection already
    waiting to be accepted fill its accept queue, so further SYNs are dropped."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_u1_connect_timeout_on_a_real_socket_fails_over_at_the_connect_deadline(
    fake: FakeUpstream, blackhole: str, audit: MemoryAuditSink, model: str, stream: bool
) -> None:
    """The simulated deployments point at the black hole; the self-hosted vLLM behind them works.
    The deployment's own timeout (10 s) is far longer than the connect deadline (0.5 s): failover
    must start at the connect deadline, on litellm's path too (it flattens the call's timeout)."""
    settings = Settings(allow_simulate=True, fake_upstream_url=blackhole, connect_timeout=0.5)
    async with serving(build_app(fake_config(fake.url, timeout=10), settings=settings, audit=audit)) as http:
        # A bound, not a measurement: failing over only at the deployment's timeout (10 s) fails here.
        async with asyncio.timeout(FAILOVER_BOUND):
            response = await ask(http, model, stream=stream)
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
    assert [r.json["model"] for r in fake.requests] == [LOCAL_MODEL]
    [event] = audit.events
    assert (event.attempts, event.deployment) == (2, f"{model}#1")


# == U2: no answer by the read deadline: 504 at the deadline, one request, no failover ==============
DEADLINE = 0.5
FAILOVER_BOUND = 5.0  # seconds: between the connect deadline (0.5 s) and the deployment's timeout (10 s)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", WIRES)
async def test_u2_read_timeout_is_504_at_the_deadline_without_failover(
    fake: FakeUpstream, audit: MemoryAuditSink, model: str, stream: bool
) -> None:
    """The fake holds its response head for 3 s; the deployment's `timeout` is 0.5 s. Stream or not,
    nothing arrives in time (no headers, so no first chunk either)."""
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url)
    config = fake_config(fake.url, timeout=DEADLINE)
    async with serving(build_app(config, settings=settings, audit=audit)) as http:
        response = await ask(http, model, fault("delay_ms=3000"), stream=stream)
    # The deadline ended it, not the fake: Sluice hung up before the fake's head was due.
    assert_upstream_failure(response, "upstream_timeout")
    assert_one_request_to(fake, model, stream=stream)
    await hung_up_early(fake)
    [event] = audit.events
    assert (event.status, event.attempts, event.error_code) == (504, 1, "upstream_timeout")


# == U5: a 200 that is not an answer is a 502, never an empty success ==============================
U5_FAULTS = {
    "html": "html,status=200",  # an nginx page, 200 text/html
    "bad_json": "bad_json",  # truncated JSON
    "empty": "empty200",  # 200 with no body
    "error_object": "error200",  # 200 carrying the wire's {"error": ...}
}


@pytest.mark.parametrize("model", WIRES)
@pytest.mark.parametrize("case", list(U5_FAULTS))
async def test_u5_broken_200_is_502_never_an_empty_success(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, case: str
) -> None:
    response = await ask(http, model, fault(U5_FAULTS[case]))
    assert_upstream_failure(response)
    assert "choices" not in response.text
    assert_one_request_to(fake, model)


@pytest.mark.parametrize("model", LITELLM_WIRES)
@pytest.mark.parametrize("case", list(U5_FAULTS))
async def test_u5_broken_200_in_place_of_a_stream_is_502_through_litellm(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, case: str
) -> None:
    """litellm reads any of these as a stream with no events and ends it with a clean `stop`: an
    empty 200. (The OpenAI wire's stream variants are in test_streaming.py.)"""
    response = await ask(http, model, fault(U5_FAULTS[case]), stream=True)
    assert_upstream_failure(response)
    assert_one_request_to(fake, model, stream=True)


@pytest.mark.parametrize("model", LITELLM_WIRES)
async def test_u5_a_real_stream_still_streams_through_litellm(http: httpx.AsyncClient, model: str) -> None:
    """The other side of the check above: a stream with events is relayed whole."""
    response = await ask(http, model, stream=True)
    assert response.status_code == 200, response.text
    chunks = sse_json(response.text)
    text = "".join((c.get("delta") or {}).get("content") or "" for k in chunks for c in k.get("choices", []))
    assert text.startswith("Simulated reply from"), text
