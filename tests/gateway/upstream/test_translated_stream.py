"""The translated stream's relay (`gateway/upstream/litellm_transform.py` `TransformStream`): the
events one network read brought leave in one piece (one ASGI send instead of one per event), and
none waits for the upstream's next read."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sluice_fakes.fake_reply import sse_event
from sluice_fakes.fake_upstream import FakeUpstream
from sluice_fakes.fake_wires import block_events

from gateway.upstream.base import UpstreamTarget
from gateway.upstream.litellm_adapter import LiteLLMAdapter, load_litellm
from gateway.upstream.litellm_transform import Lines, Shaper, Transformer, _AnthropicChunks
from tests.gateway.support import LITELLM_WARNINGS

pytestmark = list(LITELLM_WARNINGS)


@pytest.fixture
async def adapter() -> AsyncIterator[LiteLLMAdapter]:
    adapter = LiteLLMAdapter()
    yield adapter
    await adapter.aclose()


async def pieces(adapter: LiteLLMAdapter, fake: FakeUpstream, directive: str) -> tuple[str, list[bytes]]:
    model = "claude-sonnet-4-5"
    target = UpstreamTarget(model=f"anthropic/{model}", upstream_model=model, api_base=fake.url, api_key="k")
    body = {"model": "claude", "messages": [{"role": "user", "content": f"hi [[fake:{directive}]]"}]}
    stream = await adapter.chat_stream(target, {**body, "max_tokens": 64})
    first = stream.first["choices"][0]["delta"]["content"]
    return first, [piece async for piece in stream]


def contents(piece: bytes) -> list[str]:
    data = [event.removeprefix(b"data: ") for event in piece.split(b"\n\n") if event]
    return [orjson.loads(d)["choices"][0]["delta"].get("content", "") for d in data if d != b"[DONE]"]


async def test_the_events_of_one_read_leave_in_one_piece(adapter: LiteLLMAdapter, fake: FakeUpstream) -> None:
    # The fake writes a fast stream in one write: 20 events arrive in one read (or very few).
    first, sent = await pieces(adapter, fake, "chunks=20")
    assert len(sent) <= 3
    assert sent[-1].endswith(b"data: [DONE]\n\n")
    text = first + "".join(c for piece in sent for c in contents(piece))
    assert text.startswith("Simulated reply from claude-sonnet-4-5")
    assert sum(piece.count(b"data: ") for piece in sent) == 19 + 2  # the rest, the finish, [DONE]


async def test_an_event_leaves_before_the_next_read(adapter: LiteLLMAdapter, fake: FakeUpstream) -> None:
    # One event per read: each leaves on its own, none held back until the upstream's next event.
    first, sent = await pieces(adapter, fake, "chunks=4,chunk_delay_ms=20")
    assert [piece.count(b"data: ") for piece in sent] == [1, 1, 1, 2]
    assert len([first, *(c for piece in sent[:-1] for c in contents(piece))]) == 4


# -- litellm's Anthropic parser fed line by line, text deltas without its chunk model -----------------
# `_AnthropicChunks` feeds litellm's parser itself and frames text deltas without the pydantic
# `ModelResponseStream` litellm builds: the frames must be the ones litellm's own iterator and
# `Shaper` make, event for event, on every kind of stream (text, thinking, tools, JSON mode held as
# prose or turned from the response-format tool, a JSON value split over lines).

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
JSON_MODE = {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}}


def start(model: str) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": []}
    usage = {"input_tokens": 7, "output_tokens": 1}
    return sse_event("message_start", {"type": "message_start", "message": {**message, "usage": usage}})


def end(reason: str) -> list[bytes]:
    delta = {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 9}}
    return [sse_event("message_delta", delta), sse_event("message_stop", {"type": "message_stop"})]


def texts(*pieces: str) -> list[dict[str, Any]]:
    return [{"type": "text_delta", "text": piece} for piece in pieces]


def tool(index: int, name: str, *parts: str) -> list[bytes]:
    content = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
    return block_events(index, content, [{"type": "input_json_delta", "partial_json": p} for p in parts])


PLAIN = [
    *block_events(
        0, {"type": "text", "text": ""}, texts("Hel", "", "lo, \u00e9t\u00e9 \U0001f600", ' "quoted"\n', " ")
    ),
    *end("end_turn"),
]
THINKING = [
    *block_events(0, {"type": "thinking", "thinking": ""}, [{"type": "thinking_delta", "thinking": "hmm"}]),
    *block_events(1, {"type": "text", "text": "Sure"}, texts(": ", "done")),
    *end("end_turn"),
]
TOOLS = [
    *block_events(0, {"type": "text", "text": ""}, texts("Let me look.")),
    *tool(1, "get_weather", '{"city": ', '"Paris"}'),
    *end("tool_use"),
]
ANSWER_TOOL = [
    *block_events(0, {"type": "text", "text": ""}, texts("Here ", "it is")),
    *tool(1, "json_tool_call", '{"a": ', '"b"}'),
    *end("tool_use"),
]
CASES = {
    "plain": ("claude-sonnet-4-5", {}, PLAIN),
    "thinking": ("claude-sonnet-4-5", {}, THINKING),
    "tools": ("claude-sonnet-4-5", {}, TOOLS),
    "json mode, native": ("claude-sonnet-4-5", JSON_MODE, PLAIN),
    "json mode, answer tool": ("claude-3-5-sonnet-20241022", JSON_MODE, ANSWER_TOOL),
    "json mode, prose then tool": ("claude-3-5-sonnet-20241022", JSON_MODE, [*PLAIN[:-2], *ANSWER_TOOL]),
}


class Reads(httpx.AsyncByteStream):
    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self._reads:
            yield read


async def frames(model: str, fields: dict[str, Any], reads: list[bytes], *, litellms_own: bool) -> list[Any]:
    litellm = load_litellm()
    transformer = Transformer(litellm)
    try:
        target = UpstreamTarget(
            model=f"anthropic/{model}", upstream_model=model, api_base="http://h", api_key="k"
        )
        body = {"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **fields}
        prepared = await transformer.prepare(target, body, stream=True)
        assert prepared.json_mode == bool(fields)
        headers = {"content-type": "text/event-stream; charset=utf-8"}
        response = httpx.Response(200, headers=headers, stream=Reads(reads))
        lines = Lines(response, 5.0, 5.0, data_only=True)
        ours = transformer.iterator(prepared, response, lines)
        assert isinstance(ours, _AnthropicChunks)
        ours._parser.response_id = "chatcmpl-same"
        chunks = aiter(ours._parser) if litellms_own else ours
        shaper = Shaper(include_usage=True)
        out = [shaper.shape(chunk) async for chunk in chunks]
        return [*out, *shaper.tail()]
    finally:
        await transformer.aclose()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("split", ["one read per event", "one read", "split mid-line"])
async def test_frames_are_those_of_litellms_own_parser(
    case: str, split: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.5)  # litellm stamps each chunk it builds
    model, fields, events = CASES[case]
    events = [start(model), *events]
    if split == "one read":
        reads = [b"".join(events)]
    elif split == "split mid-line":  # a data line (and a multi-byte character) cut between reads
        whole = b"".join(events)
        reads = [whole[i : i + 37] for i in range(0, len(whole), 37)]
    else:
        reads = events
    expected = await frames(model, fields, reads, litellms_own=True)
    got = await frames(model, fields, reads, litellms_own=False)
    assert got == expected
    assert any(isinstance(f, dict) and f.get("choices") for f in got)


async def test_a_json_value_split_over_lines_is_litellms_to_join(monkeypatch: pytest.MonkeyPatch) -> None:
    # A `data:` line that is not whole JSON sends litellm's parser into accumulating mode.
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.5)
    model = "claude-sonnet-4-5"
    delta = json.dumps(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ab"}}
    )
    cut = len(delta) // 2
    events = [
        start(model),
        *block_events(0, {"type": "text", "text": ""}, texts("x"))[:2],
        # the rest of the value on the next data line (no space after `data:`: it is part of the value)
        f"data: {delta[:cut]}\n\ndata:{delta[cut:]}\n\n".encode(),
        *end("end_turn"),
    ]
    expected = await frames(model, {}, events, litellms_own=True)
    got = await frames(model, {}, events, litellms_own=False)
    assert got == expected
