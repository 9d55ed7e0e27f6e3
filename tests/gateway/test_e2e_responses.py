"""End to end: OpenAI's Responses API (`client.responses.create`) through a real `sluice demo`.

One `sluice demo` process on the demo config sits in front of a `FakeUpstream` in a thread of this
process, so the test sees what each upstream received. Clients: the official `openai` SDK (sync,
async, streaming, `with_raw_response`). Models: gpt-4o-mini (OpenAI wire: Responses passed through),
claude-sonnet (Anthropic: litellm's Responses bridge), gemini-flash-free (blocked), deepseek-chat
(rerouted to llama-local, a self-hosted vLLM that speaks Responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from sluice_fakes.fake_responses import ENCRYPTED
from sluice_fakes.fake_state import RecordedRequest
from sluice_fakes.fake_upstream import FakeUpstream

from tests.conftest import AUTH, DEMO_KEY, LEGAL_KEY
from tests.gateway.support import (
    demo_env,
    free_port,
    split_list,
    start_demo,
    stop_process,
    wait_healthy,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

PASS_THROUGH = "gpt-4o-mini"
BRIDGED = "claude-sonnet"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    # A user's schema may name a property like a steering field: it is the user's, never refused.
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "api_key": {}}},
}


@dataclass
class Gateway:
    base_url: str
    fake: FakeUpstream
    database: Path
    clients: list[OpenAI] = field(default_factory=list)

    def client(self, key: str = DEMO_KEY) -> OpenAI:
        client = OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)
        self.clients.append(client)  # closed at teardown: an unclosed socket is a ResourceWarning
        return client

    def sent(self, path: str = "/v1/responses") -> list[RecordedRequest]:
        return [r for r in self.fake.requests if r.path.endswith(path)]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("responses-e2e")
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=demo_env(tmp), upstream=fake.url)
        try:
            wait_healthy(proc, root, log)
            # litellm is imported in the background at start-up; a bridged call waits for it.
            warm = httpx.post(
                f"{root}/v1/responses", json={"model": BRIDGED, "input": "warm up"}, headers=AUTH, timeout=120
            )
            assert warm.status_code == 200, warm.text
            gateway = Gateway(f"{root}/v1", fake, tmp / "sluice.db")
            yield gateway
            for client in gateway.clients:
                client.close()
        finally:
            code = stop_process(proc)
    assert code in (0, -signal.SIGTERM), f"sluice demo exited with {code}: {log.read_text()[-3000:]}"


def ledger_row(gateway: Gateway, request_id: str) -> dict[str, Any]:
    def read() -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(gateway.database, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            query = "SELECT * FROM audit_events WHERE request_id = ?"
            return [dict(row) for row in db.execute(query, (request_id,))]

    [row] = wait_until(read, f"the ledger record {request_id}")
    return row


# -- non-stream and stream --------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "served", "channel"), [
    (PASS_THROUGH, "gpt-4o-mini", "openai.api"),
    (BRIDGED, "claude-sonnet-4-5", "anthropic.api"),
])  # fmt: skip
def test_non_stream(gateway: Gateway, model: str, served: str, channel: str) -> None:
    before = len(gateway.fake.requests)
    raw = gateway.client().responses.with_raw_response.create(
        model=model, input="Hello there", instructions="Answer briefly."
    )
    assert raw.headers["x-privacy-decision"] == "allowed"
    assert raw.headers["x-privacy-channel"] == channel
    assert split_list(raw.headers["x-privacy-badges"])[0] == "api-channel"
    response = raw.parse()
    assert response.output_text == f"Simulated reply from {served}."
    privacy = (response.model_extra or {})["privacy"]
    assert privacy["channel"] == channel
    assert privacy["request_id"] == raw.headers["x-request-id"]
    assert {"id", "label", "level", "description", "source"} <= set(privacy["badges"][0])
    [upstream] = gateway.fake.requests[before:]
    if model == PASS_THROUGH:  # passed through as the client sent it, to the upstream's /responses
        assert upstream.path == "/v1/responses"
        assert upstream.json["instructions"] == "Answer briefly."
        assert upstream.json["model"] == "gpt-4o-mini"
    else:  # litellm's bridge: the same conversation on Anthropic's Messages API
        assert upstream.path.endswith("/messages")
        assert "Answer briefly." in json.dumps(upstream.json["system"])
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["channel"]) == ("responses", 200, channel)
    assert row["prompt_tokens"] and row["completion_tokens"]
    assert "Hello there" not in json.dumps(row)


@pytest.mark.parametrize(("model", "served", "channel"), [
    (PASS_THROUGH, "gpt-4o-mini", "openai.api"),
    (BRIDGED, "claude-sonnet-4-5", "anthropic.api"),
])  # fmt: skip
def test_stream(gateway: Gateway, model: str, served: str, channel: str) -> None:
    with gateway.client().responses.with_streaming_response.create(
        model=model, input="Hello there", stream=True
    ) as raw:
        assert raw.headers["x-privacy-channel"] == channel
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = list(raw.parse())
    assert events[0].type == "response.created"
    privacy = (events[0].response.model_extra or {})["privacy"]
    assert privacy["channel"] == channel and privacy["decision"] == "allowed"
    assert all("privacy" not in (e.model_extra or {}) for e in events)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == f"Simulated reply from {served}."
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == text
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["stream"], row["status"]) == ("responses", 1, 200)
    assert row["completion_tokens"]


def test_async_stream_events_in_order(gateway: Gateway) -> None:
    async def run() -> list[str]:
        async with AsyncOpenAI(base_url=gateway.base_url, api_key=DEMO_KEY, max_retries=0) as client:
            stream = await client.responses.create(model=PASS_THROUGH, input="Hi", stream=True)
            return [event.type async for event in stream]

    kinds = asyncio.run(run())
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds


def test_rerouted_to_a_self_hosted_model(gateway: Gateway) -> None:
    raw = gateway.client().responses.with_raw_response.create(model="deepseek-chat", input="Hi")
    assert raw.headers["x-privacy-decision"] == "rerouted"
    assert raw.headers["x-privacy-rerouted-from"] == "deepseek-chat"
    assert raw.parse().output_text == "Simulated reply from meta-llama/Llama-3.1-8B-Instruct."


# -- tools ------------------------------------------------------------------------------------------
def test_function_tool_round_trip(gateway: Gateway) -> None:
    client = gateway.client()
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(model=PASS_THROUGH, input=question, tools=[WEATHER_TOOL])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    follow_up: list[Any] = [
        *question,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'},
    ]
    second = client.responses.create(model=PASS_THROUGH, input=follow_up, tools=[WEATHER_TOOL])
    assert second.output_text == "Simulated reply from gpt-4o-mini."
    sent = gateway.sent()[-1].json
    assert sent["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_fake_0",
        "output": '{"temp": 21}',
    }
    assert sent["tools"][0]["parameters"]["properties"]["api_key"] == {}


def test_function_tool_through_the_bridge(gateway: Gateway) -> None:
    response = gateway.client().responses.create(
        model=BRIDGED, input="Weather in Paris?", tools=[WEATHER_TOOL]
    )
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather"
    tools = gateway.sent("/messages")[-1].json["tools"]
    assert [t["name"] for t in tools] == ["get_weather"]


# -- previous_response_id ---------------------------------------------------------------------------
def test_previous_response_id_goes_to_the_deployment_that_answered(gateway: Gateway) -> None:
    client = gateway.client()
    first = client.responses.create(model=PASS_THROUGH, input="Remember: blue.")
    second = client.responses.create(model=PASS_THROUGH, input="What colour?", previous_response_id=first.id)
    assert second.id != first.id
    assert gateway.sent()[-1].json["previous_response_id"] == first.id
    # A stream's id (from `response.created`) is remembered too.
    events = list(client.responses.create(model=PASS_THROUGH, input="Again", stream=True))
    third = client.responses.create(
        model=PASS_THROUGH, input="And?", previous_response_id=events[0].response.id
    )
    assert third.output_text


def test_unknown_previous_response_id_is_a_400(gateway: Gateway) -> None:
    before = len(gateway.fake.requests)
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client().responses.create(model=PASS_THROUGH, input="Hi", previous_response_id="resp_unknown")
    assert raised.value.param == "previous_response_id"
    assert len(gateway.fake.requests) == before  # nothing was sent anywhere


def test_another_keys_response_is_unknown(gateway: Gateway) -> None:
    first = gateway.client().responses.create(model="llama-local", input="Mine.")
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client(LEGAL_KEY).responses.create(
            model="llama-local", input="Hi", previous_response_id=first.id
        )
    assert raised.value.param == "previous_response_id"


def test_previous_response_id_of_another_model_is_refused(gateway: Gateway) -> None:
    first = gateway.client().responses.create(model=PASS_THROUGH, input="Hi")
    before = len(gateway.fake.requests)
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client().responses.create(model="llama-local", input="Hi", previous_response_id=first.id)
    assert raised.value.param == "previous_response_id"
    assert len(gateway.fake.requests) == before


def test_a_bridged_answer_cannot_be_continued(gateway: Gateway) -> None:
    """litellm's bridge keeps no conversation: continuing one would silently lose it."""
    first = gateway.client().responses.create(model=BRIDGED, input="Hi")
    with pytest.raises(openai.BadRequestError):
        gateway.client().responses.create(model=BRIDGED, input="Hi", previous_response_id=first.id)


# -- refusals ---------------------------------------------------------------------------------------
def test_blocked_model_is_permission_denied_with_privacy(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        gateway.client().responses.create(model="gemini-flash-free", input="Hi")
    error = raised.value
    assert error.code == "no_compliant_deployment"
    assert error.response.headers["x-privacy-decision"] == "blocked"
    body = error.body
    assert isinstance(body, dict)
    privacy = body["privacy"]
    assert privacy["decision"] == "blocked"
    assert privacy["considered"][0]["channel"] == "google.gemini_api_free"
    row = ledger_row(gateway, error.response.headers["x-request-id"])
    assert (row["endpoint"], row["decision"], row["status"]) == ("responses", "blocked", 403)


@pytest.mark.parametrize(("extra", "param"), [
    ({"api_base": "https://evil.example"}, "api_base"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x", "base_url": "y"}]}]},
     "input[].content[].base_url"),
    ({"tools": [{"type": "function", "custom_llm_provider": "x"}]}, "tools[].custom_llm_provider"),
    ({"reasoning": {"effort": "low", "litellm_params": {}}}, "reasoning.litellm_params"),
])  # fmt: skip
def test_steering_fields_are_refused_at_any_depth(
    gateway: Gateway, extra: dict[str, Any], param: str
) -> None:
    body = {"model": PASS_THROUGH, "input": "Hi", **extra}
    response = httpx.post(f"{gateway.base_url}/responses", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "forbidden_parameter"
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(("body", "param"), [
    ({"model": PASS_THROUGH}, "input"),
    ({"model": PASS_THROUGH, "input": 3}, "input"),
    ({"model": PASS_THROUGH, "input": [{"content": "no type, no role"}]}, "input[0]"),
    ({"model": PASS_THROUGH, "input": "Hi", "temperature": 9}, "temperature"),
    ({"model": PASS_THROUGH, "input": "Hi", "max_output_tokens": 1.5}, "max_output_tokens"),
    ({"model": PASS_THROUGH, "input": "Hi", "conversation": "conv_1"}, "conversation"),
    ({"model": PASS_THROUGH, "input": "Hi", "background": True}, "background"),
    ({"model": PASS_THROUGH, "input": "Hi", "messages": []}, "messages"),
    ({"model": PASS_THROUGH, "input": "Hi", "tools": [{"name": "untyped"}]}, "tools"),
])  # fmt: skip
def test_bad_input_is_an_openai_shaped_400(gateway: Gateway, body: dict[str, Any], param: str) -> None:
    response = httpx.post(f"{gateway.base_url}/responses", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


def image_input(url: str) -> list[Any]:
    parts = [{"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": url}]
    return [{"role": "user", "content": parts}]


def test_an_image_url_the_bridge_would_download_is_refused(gateway: Gateway) -> None:
    """DESIGN.md invariant 2: litellm's bridge would fetch this URL from the gateway's host."""
    before = len(gateway.fake.requests)
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client().responses.create(
            model="gemini-flash", input=image_input("https://images.example/a.png")
        )
    assert "data: URL" in raised.value.message
    assert len(gateway.fake.requests) == before


def test_an_image_url_is_passed_through_for_the_provider_to_fetch(gateway: Gateway) -> None:
    response = gateway.client().responses.create(
        model=PASS_THROUGH, input=image_input("https://images.example/a.png")
    )
    assert response.output_text
    assert gateway.sent()[-1].json["input"][0]["content"][1]["image_url"] == "https://images.example/a.png"


def test_broken_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    """The upstream fails mid-stream: the client gets Sluice's `error` event (never the upstream's
    message), which the SDK raises, and the ledger records a 502."""
    with (
        pytest.raises(openai.APIError) as raised,
        gateway.client().responses.create(
            model=PASS_THROUGH, input="Hi [[fake:error_after=4]]", stream=True
        ) as stream,
    ):
        for _ in stream:
            pass
    assert "Simulated mid-stream error" not in str(raised.value)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "upstream_unavailable"


def test_a_stream_cut_before_it_completed_is_an_error(gateway: Gateway) -> None:
    """The upstream closes before `response.completed`: the stream did not finish, and the client
    is told so (an `error` event) rather than left with a silently short answer."""
    kinds: list[str] = []
    with (
        pytest.raises(openai.APIError) as raised,
        gateway.client().responses.create(
            model=PASS_THROUGH, input="Hi [[fake:reset_after=6]]", stream=True
        ) as stream,
    ):
        kinds.extend(event.type for event in stream)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "upstream_unavailable"
    assert kinds[0] == "response.created" and "response.completed" not in kinds


def test_an_upstream_that_cannot_start_is_a_502(gateway: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client().responses.create(model=PASS_THROUGH, input="Hi [[fake:status=503]]")
    error = raised.value
    assert (error.status_code, error.code) == (502, "upstream_unavailable")
    assert error.response.headers["x-privacy-channel"] == "openai.api"
    row = ledger_row(gateway, error.response.headers["x-request-id"])
    assert (row["endpoint"], row["status"]) == ("responses", 502)


def test_a_client_that_leaves_mid_stream_cancels_the_upstream_call(gateway: Gateway) -> None:
    """The client reads the first event and hangs up: Sluice closes its upstream call (the fake sees
    its client leave before the stream ended) and the ledger records a cancelled stream."""
    tag = f"leaving-{len(gateway.fake.requests)}"
    with gateway.client().responses.with_streaming_response.create(
        model=PASS_THROUGH, input=f"{tag} [[fake:chunk_delay_ms=200]]", stream=True
    ) as raw:
        next(iter(raw.parse()))
        request_id = raw.headers["x-request-id"]
    upstream = wait_until(
        lambda: [r for r in gateway.sent() if tag in r.body.decode() and r.client_closed_at is not None],
        "the upstream call to be closed",
    )
    assert not upstream[0].completed
    row = wait_until(lambda: ledger_row(gateway, request_id)["client_cancelled"], "a cancelled record")
    assert row == 1


# -- a Codex-shaped session -------------------------------------------------------------------------
CODEX_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "workdir": {"type": "string"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "apply_patch",
        "description": "Applies a patch.",
        "strict": False,
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
    },
]


def codex_request(items: list[Any]) -> dict[str, Any]:
    """What Codex sends each turn: no stored state (`store: false`), the whole conversation as input
    with the reasoning items it got back (their `encrypted_content` carries the reasoning across turns)."""
    return {
        "model": PASS_THROUGH,
        "instructions": "You are Codex, a coding agent.",
        "input": items,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a0b2-codex-session",
        "text": {"verbosity": "medium"},
    }


def test_codex_shaped_session(gateway: Gateway) -> None:
    client = gateway.client()
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "List the files in this repository."}],
    }
    context = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "<environment_context>cwd: /repo</environment_context>"}],
    }
    turn = codex_request([context, user])
    with client.responses.with_streaming_response.create(**turn) as raw:
        assert raw.headers["x-privacy-decision"] == "allowed"
        events = list(raw.parse())
    done = events[-1].response
    reasoning = next(item for item in done.output if item.type == "reasoning")
    call = next(item for item in done.output if item.type == "function_call")
    assert reasoning.encrypted_content == ENCRYPTED
    assert call.name == "shell"

    # Turn 2: the reasoning item and the call go back as input, with the shell's output.
    replay = [
        context,
        user,
        reasoning.model_dump(exclude_none=True),
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "README.md\nsrc/\n"},
    ]
    events = list(client.responses.create(**codex_request(replay)))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Simulated reply from gpt-4o-mini."
    sent = gateway.sent()[-1].json
    assert sent["store"] is False
    assert sent["include"] == ["reasoning.encrypted_content"]
    assert sent["input"][2] == {
        "type": "reasoning",
        "id": "rs_fake",
        "summary": [],
        "encrypted_content": ENCRYPTED,
    }
    assert sent["prompt_cache_key"] == "0199a0b2-codex-session"


def test_the_sdk_stream_helper(gateway: Gateway) -> None:
    """`client.responses.stream(...)`, as the README shows it: the SDK rebuilds the response from the
    events, and the privacy object is on the first."""
    with gateway.client().responses.stream(model=BRIDGED, input="Hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "Simulated reply from claude-sonnet-4-5."
    assert (events[0].response.model_extra or {})["privacy"]["channel"] == "anthropic.api"
