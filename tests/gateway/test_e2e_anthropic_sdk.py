"""End to end: the official `anthropic` SDK against a real `sluice demo` process (the Messages API).

The process runs in front of a fake upstream started here (`--upstream`), so the tests can read
what reached the provider. Models: claude-sonnet (Anthropic wire: pass-through), gpt-4o-mini
(OpenAI wire: translated), gemini-flash (Gemini: translated by litellm), gemini-flash-free
(blocked). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import Anthropic, AsyncAnthropic
from sluice_fakes.fake_upstream import FakeUpstream, RecordedRequest

from tests.conftest import DEMO_KEY
from tests.gateway.support import demo_env, free_port, split_list, start_demo, stop_process, wait_healthy
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

USER: list[Any] = [{"role": "user", "content": "Hello there"}]
CANARY = "sk-canary-0123456789abcdefghijklmnop"


class Demo:
    def __init__(self, root: str, fake: FakeUpstream) -> None:
        self.root = root
        self.fake = fake
        self.clients: list[Anthropic] = []

    def client(self, key: str = DEMO_KEY, **options: Any) -> Anthropic:
        client = Anthropic(base_url=self.root, api_key=key, max_retries=0, timeout=60, **options)
        self.clients.append(client)
        return client

    def messages_sent(self) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if r.path.endswith("/v1/messages")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("sluice-demo-messages")
    port = free_port()
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake:
        with log.open("w") as sink:
            proc = start_demo(port, sink, env=demo_env(tmp), upstream=fake.url)
        root = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proc, root, log)
            found = Demo(root, fake)
            yield found
            for client in found.clients:
                client.close()
        finally:
            code = stop_process(proc)
    assert code in (0, -signal.SIGTERM), f"sluice demo exited with {code}: {Path(log).read_text()[-3000:]}"
    assert CANARY not in log.read_text()


def privacy_of(model: Any) -> dict[str, Any]:
    found: dict[str, Any] = model.to_dict()["privacy"]
    return found


# -- non-stream ---------------------------------------------------------------------------------
def test_sync_pass_through_carries_privacy_and_badge_headers(demo: Demo) -> None:
    raw = demo.client().messages.with_raw_response.create(model="claude-sonnet", max_tokens=64, messages=USER)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and "claude-sonnet-4-5" in message.content[0].text
    assert privacy_of(message)["channel"] == "anthropic.api"
    assert raw.headers["x-privacy-decision"] == "allowed"
    assert raw.headers["x-privacy-channel"] == "anthropic.api"
    assert "api-channel" in split_list(raw.headers["x-privacy-badges"])
    sent = demo.messages_sent()[-1]
    assert sent.json["model"] == "claude-sonnet-4-5"  # the deployment's model, not the alias
    assert sent.headers["x-api-key"] == "sk-simulated"  # the deployment's key, never the client's
    assert "privacy" not in sent.json


@pytest.mark.parametrize(
    ("model", "channel"), [("gpt-4o-mini", "openai.api"), ("gemini-flash", "google.gemini_api_paid")]
)
async def test_async_translated_to_other_deployments(demo: Demo, model: str, channel: str) -> None:
    async with AsyncAnthropic(base_url=demo.root, api_key=DEMO_KEY, max_retries=0, timeout=60) as client:
        message = await client.messages.create(
            model=model,
            max_tokens=64,
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            messages=USER,
        )
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert privacy_of(message)["channel"] == channel


def test_tool_use_round_trip_translated(demo: Demo) -> None:
    tools: Any = [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    client = demo.client()
    first = client.messages.create(model="gpt-4o-mini", max_tokens=64, tools=tools, messages=USER)
    call = first.content[-1]
    assert first.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "get_weather"
    turn: Any = [
        *USER,
        {"role": "assistant", "content": [c.to_dict() for c in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
    ]
    second = client.messages.create(
        model="gpt-4o-mini", max_tokens=64, tools=tools, tool_choice={"type": "none"}, messages=turn
    )
    assert second.content[0].type == "text"


def test_image_block_passes_through(demo: Demo) -> None:
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}}
    content: Any = [image, {"type": "text", "text": "What is this?"}]
    demo.client().messages.create(
        model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert demo.messages_sent()[-1].json["messages"][0]["content"][0] == image


# -- streams ------------------------------------------------------------------------------------
def test_stream_with_thinking_pass_through(demo: Demo) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    with demo.client().messages.stream(
        model="claude-sonnet", max_tokens=2048, thinking=thinking, messages=USER
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert events[0].type == "message_start"
    assert privacy_of(events[0].message)["channel"] == "anthropic.api"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature and final.content[0].thinking  # type: ignore[union-attr]
    assert any(e.type == "content_block_delta" and e.delta.type == "thinking_delta" for e in events)


async def test_async_stream_translated(demo: Demo) -> None:
    client = AsyncAnthropic(base_url=demo.root, api_key=DEMO_KEY, max_retries=0, timeout=60)
    async with client, client.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == final.content[0].text and "gpt-4o-mini" in text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


def test_stream_headers_come_before_the_body(demo: Demo) -> None:
    with demo.client().messages.with_streaming_response.create(
        model="claude-sonnet", max_tokens=64, messages=USER, stream=True
    ) as response:
        assert response.headers["x-privacy-decision"] == "allowed"
        assert response.headers["content-type"].startswith("text/event-stream")
        body = b"".join(response.iter_bytes())
    assert body.rstrip().endswith(b'{"type":"message_stop"}')


def test_a_client_that_leaves_mid_stream_stops_the_upstream_call(demo: Demo) -> None:
    slow: Any = [{"role": "user", "content": "Hello [[fake:chunks=200,chunk_delay_ms=50]]"}]
    with demo.client().messages.stream(model="claude-sonnet", max_tokens=64, messages=slow) as stream:
        first = next(iter(stream))
        assert first.type == "message_start"
    # Leaving the block closed the connection: Sluice must cut the upstream call, not read it to the end.
    sent = wait_until(
        lambda: [r for r in demo.messages_sent() if r.client_closed_at is not None], "upstream cut"
    )
    assert sent[-1].client_closed_early


# -- count_tokens -------------------------------------------------------------------------------
def test_count_tokens_pass_through_and_estimate(demo: Demo) -> None:
    client = demo.client()
    counted = client.messages.count_tokens(model="claude-sonnet", messages=USER)
    assert counted.input_tokens > 0 and "estimate" not in counted.to_dict()
    assert demo.fake.requests[-1].path.endswith("/v1/messages/count_tokens")
    before = len(demo.fake.requests)
    estimated = client.messages.count_tokens(model="gpt-4o-mini", messages=USER)
    assert estimated.input_tokens > 0 and estimated.to_dict()["estimate"] is True
    assert privacy_of(estimated)["channel"] == "openai.api"
    assert len(demo.fake.requests) == before  # estimated locally: nothing was sent


# -- refusals -----------------------------------------------------------------------------------
def test_blocked_model_is_permission_denied_with_privacy(demo: Demo) -> None:
    before = len(demo.fake.requests)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        demo.client().messages.create(model="gemini-flash-free", max_tokens=64, messages=USER)
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["code"] == "no_compliant_deployment"
    considered = body["error"]["privacy"]["considered"]
    assert considered and considered[0]["channel"] == "google.gemini_api_free"
    assert caught.value.response.headers["x-privacy-decision"] == "blocked"
    assert len(demo.fake.requests) == before  # nothing left the gateway


def test_bearer_token_and_wrong_key(demo: Demo) -> None:
    # Claude Code's ANTHROPIC_AUTH_TOKEN is sent as `Authorization: Bearer`.
    client = Anthropic(base_url=demo.root, auth_token=DEMO_KEY, max_retries=0, timeout=60)
    demo.clients.append(client)
    assert client.messages.create(model="claude-sonnet", max_tokens=16, messages=USER).content
    with pytest.raises(anthropic.AuthenticationError) as caught:
        demo.client(key=CANARY).messages.create(model="claude-sonnet", max_tokens=16, messages=USER)
    body: Any = caught.value.body
    assert body["error"]["type"] == "authentication_error" and CANARY not in str(body)


def test_steering_fields_are_refused_at_any_depth(demo: Demo) -> None:
    client = demo.client()
    with pytest.raises(anthropic.BadRequestError) as top:
        client.messages.create(
            model="claude-sonnet", max_tokens=16, messages=USER, extra_body={"api_base": "http://x"}
        )
    assert top.value.body["error"]["code"] == "forbidden_parameter"  # type: ignore[index]
    nested: Any = [{"role": "user", "content": [{"type": "text", "text": "hi", "api_key": CANARY}]}]
    with pytest.raises(anthropic.BadRequestError) as deep:
        client.messages.create(model="claude-sonnet", max_tokens=16, messages=nested)
    error = deep.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages[].content[].api_key"
    assert CANARY not in str(deep.value.body)


def test_models_list_in_anthropic_shape(demo: Demo) -> None:
    page = demo.client().models.list()
    ids = [m.id for m in page.data]
    assert "claude-sonnet" in ids and all(m.type == "model" for m in page.data)
    assert page.first_id == ids[0] and page.last_id == ids[-1] and page.has_more is False
    one = demo.client().models.retrieve("claude-sonnet")
    assert one.display_name == "claude-sonnet" and one.to_dict()["privacy"]["complies"] is True
    with pytest.raises(anthropic.NotFoundError) as caught:
        demo.client().models.retrieve("no-such-model")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# -- a session shaped like Claude Code's -----------------------------------------------------------
CLAUDE_CODE_BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
)


def _claude_code_tools() -> list[Any]:
    shell = {
        "name": "Bash",
        "description": "Run a shell command",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
        },
    }
    others = [
        {
            "name": f"Tool{i}",
            "description": f"tool number {i}",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
        for i in range(40)
    ]
    return [shell, *others]


def test_claude_code_shaped_session(demo: Demo) -> None:
    """System blocks with cache_control, many tools, anthropic-beta headers, streamed turns with
    thinking, a tool call whose input holds `timeout` (an argument, not a keyword), its result."""
    client = demo.client(default_headers={"anthropic-beta": CLAUDE_CODE_BETAS})
    system: Any = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Project instructions ...", "cache_control": {"type": "ephemeral"}},
    ]
    tools = _claude_code_tools()
    thinking: Any = {"type": "enabled", "budget_tokens": 4096}
    metadata: Any = {"user_id": "user_abc_session_1"}
    with client.messages.stream(
        model="claude-sonnet",
        max_tokens=8192,
        system=system,
        tools=tools,
        thinking=thinking,
        metadata=metadata,
        messages=[{"role": "user", "content": "List the files"}],
    ) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    call = first.content[1]
    assert call.type == "tool_use" and call.name == "Bash"
    turn: Any = [
        {"role": "user", "content": "List the files"},
        {
            "role": "assistant",
            "content": [
                first.content[0].to_dict(),
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": "Bash",
                    "input": {"command": "ls", "timeout": 120000},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": [{"type": "text", "text": "README.md"}],
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    with client.messages.stream(
        model="claude-sonnet",
        max_tokens=8192,
        system=system,
        tools=tools,
        tool_choice={"type": "none"},
        thinking=thinking,
        messages=turn,
    ) as stream:
        second = stream.get_final_message()
    assert [b.type for b in second.content] == ["thinking", "text"]
    sent = demo.messages_sent()[-1]
    assert sent.headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert sent.json["messages"][1]["content"][1]["input"] == {"command": "ls", "timeout": 120000}
    assert len(sent.json["tools"]) == len(tools)
