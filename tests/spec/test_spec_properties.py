"""Property-based requests from the published specifications against the demo (a seeded slice).

Hypothesis draws Chat Completions, Embeddings, Responses and Messages requests that use only fields
the vendored specifications define, with spec-valid values (positive mode, `tests/spec/strategies.py`),
and sends each to the demo app in front of the fake upstream (`tests/spec/conformance.py`): no 5xx, no refusal
that is not documented, and every answer valid against the specification's response schema.
`scripts/spec_conformance.py` runs the same at scale (docs/reliability.md).
"""

from __future__ import annotations

import base64
import copy
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.support import LITELLM_WARNINGS
from tests.spec.conformance import (
    CHAT,
    CHAT_TRANSLATED,
    EMBEDDINGS,
    MESSAGES,
    RESPONSES,
    RESPONSES_TRANSLATED,
    check,
    known_quirks,
    response_errors,
    stream_quirks,
)

pytestmark = list(LITELLM_WARNINGS)

SLICE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=30,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
async def client(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(demo_settings, audit=MemoryAuditSink())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=30) as http:
            yield http


@SLICE
@given(body=CHAT.requests())
async def test_chat_requests_from_the_specification(
    client: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    outcome = await check(client, CHAT, body)
    assert not outcome.problems, (outcome.problems, body)


@SLICE
@given(body=EMBEDDINGS.requests())
async def test_embedding_requests_from_the_specification(
    client: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    outcome = await check(client, EMBEDDINGS, body)
    assert not outcome.problems, (outcome.problems, body)


@SLICE
@given(body=RESPONSES.requests())
async def test_responses_requests_from_the_specification(
    client: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    outcome = await check(client, RESPONSES, body)
    assert not outcome.problems, (outcome.problems, body)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("reasoning", [None, {"effort": "high"}])
async def test_bridged_responses_keep_the_fields_openai_requires(
    client: httpx.AsyncClient, fake: FakeUpstream, stream: bool, reasoning: dict[str, Any] | None
) -> None:
    """Through litellm's Responses bridge, a response's `error`, `incomplete_details`,
    `instructions`, `temperature`, `top_p`, `metadata`, a function tool's `strict`, a text part's
    `logprobs` and a reasoning item's `summary` were missing (the spec requires them)."""
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    for model in RESPONSES_TRANSLATED.models:
        body: dict[str, Any] = {"model": model, "input": "hello", "stream": stream, "tools": [tool]}
        if reasoning is not None:
            body["reasoning"] = reasoning
        outcome = await check(client, RESPONSES_TRANSLATED, body)
        assert outcome.status == 200 and not outcome.problems, (model, outcome)


@SLICE
@given(body=MESSAGES.requests())
async def test_messages_requests_from_the_specification(
    client: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    outcome = await check(client, MESSAGES, body)
    assert not outcome.problems, (outcome.problems, body)


@settings(derandomize=True, database=None, max_examples=20, suppress_health_check=list(HealthCheck))
@given(body=MESSAGES.requests())
def test_messages_requests_carry_the_required_fields(body: dict[str, Any]) -> None:
    """The anthropic SDK marks `model`, `messages` and `max_tokens` `Required` (the vendored schema's
    `required`, scripts/refresh_spec.py): every drawn request has them, or the slice tests only 400s."""
    assert {"model", "messages", "max_tokens"} <= body.keys()
    assert body["model"] in MESSAGES.models


def test_the_response_check_is_not_vacuous() -> None:
    """The schemas the answers are held to reject a wrong answer, and the one quirk that is
    allowed (base64 embeddings) is checked as what it decodes to."""
    good = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
            }
        ],
    }
    assert response_errors("chat", good) == []
    assert response_errors("chat", {**good, "choices": [{"index": 0}]})
    assert response_errors("chat", {**good, "object": "text_completion"})
    packed = base64.b64encode(struct.pack("<2f", 0.5, 1)).decode()
    embedding = {
        "object": "list",
        "model": "m",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": 0, "embedding": packed}],
    }
    assert response_errors("embeddings", copy.deepcopy(embedding))  # the schema alone refuses base64
    decoded = known_quirks({"encoding_format": "base64"}, copy.deepcopy(embedding))
    assert response_errors("embeddings", decoded) == []
    assert decoded["data"][0]["embedding"] == [0.5, 1]


@pytest.mark.parametrize("stream", [False, True])
async def test_translated_answers_keep_the_fields_openai_requires(
    client: httpx.AsyncClient, fake: FakeUpstream, stream: bool
) -> None:
    """Through litellm, a completion's `logprobs`, `content` and `refusal` (and a chunk's
    `finish_reason`) are null rather than missing: the specification requires them."""
    for model in CHAT_TRANSLATED.models:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
        outcome = await check(client, CHAT_TRANSLATED, body)
        assert outcome.status == 200 and not outcome.problems, (model, outcome)


def test_the_anthropic_answer_check_is_not_vacuous() -> None:
    """The /v1/messages target holds answers to the anthropic SDK's types."""
    target = MESSAGES
    assert callable(target.response)
    good = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    assert target.response(good) == []
    assert target.response({**good, "content": [{"type": "text"}]})
    assert target.response({k: v for k, v in good.items() if k != "usage"})


def test_the_responses_stream_check_is_not_vacuous() -> None:
    """A Responses stream event is held to the branch of its `type` (the fake once left out the
    `name` of `response.function_call_arguments.done`); the one quirk allowed is `usage: null` on a
    response still in progress, and Anthropic's `ping` is not checked."""
    done = {
        "type": "response.function_call_arguments.done",
        "sequence_number": 6,
        "item_id": "fc_1",
        "output_index": 0,
        "arguments": "{}",
    }
    assert response_errors("responses_stream", done) == ["<root>: 'name' is a required property"]
    assert response_errors("responses_stream", {**done, "name": "f"}) == []
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "model": "m",
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": None,
        },
    }
    assert response_errors("responses_stream", created)
    assert response_errors("responses_stream", stream_quirks(created)) == []
    assert stream_quirks({"type": "ping"}) is None
