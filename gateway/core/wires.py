"""How each pipeline API's answers travel: the adapter call that serves it, and where `privacy` goes.

What belongs here: `Wire`, one per endpoint of the pipeline (`WIRES`), saying which adapter method
answers a non-stream and a stream request, how the `privacy` object rides on an answer (top-level
in a chat completion and in a Responses object; in the response inside a Responses stream's first
event, `response.created`), how a stream that breaks after its first byte ends (Chat Completions:
an error envelope and `[DONE]`; Responses: an `error` event), and which upstream id a later request
may continue (a Responses answer's `id`). `gateway.core.pipeline` is the same for every endpoint;
what differs between wire formats is here. Adding an API is one `Wire` and one entry in `WIRES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import SluiceError, anthropic_body
from gateway.names import Endpoint
from gateway.upstream import sse
from gateway.upstream.base import Adapter, ChatStream, UpstreamTarget

Body = dict[str, Any]


@dataclass(frozen=True)
class Wire:
    call: Callable[[Adapter, UpstreamTarget, Body], Awaitable[Body]]
    open: Callable[[Adapter, UpstreamTarget, Body], Awaitable[ChatStream]]
    opening: Callable[[Body, Body], bytes]  # the first stream event, with `privacy` on it
    broken: Callable[[SluiceError], bytes]  # what ends a stream that broke after it started
    answer_id: Callable[[Body], str | None] = lambda _: None  # the id a later request may continue
    first_id: Callable[[Body], str | None] = lambda _: None  # the same, from a stream's first event

    @staticmethod
    def attach(body: Body, privacy: Body) -> None:
        """A non-stream answer: `privacy` is a top-level field on every wire."""
        body["privacy"] = privacy


# -- OpenAI Chat Completions and Embeddings ------------------------------------------------------


def _chat_opening(first: Body, privacy: Body) -> bytes:
    return sse.frame(orjson.dumps({**first, "privacy": privacy}))


def _chat_broken(error: SluiceError) -> bytes:
    return sse.frame(orjson.dumps(error.body())) + sse.DONE


async def _no_stream(adapter: Adapter, target: UpstreamTarget, body: Body) -> ChatStream:
    raise AssertionError("embeddings are never streamed")  # parse_embeddings sets stream=False


# -- OpenAI Responses ------------------------------------------------------------------------------


def _responses_opening(first: Body, privacy: Body) -> bytes:
    """`response.created`: `privacy` rides inside its `response` (as on a non-stream answer)."""
    response = first.get("response")
    if isinstance(response, dict):
        first = {**first, "response": {**response, "privacy": privacy}}
    else:
        first = {**first, "privacy": privacy}
    return sse.typed(str(first.get("type") or "response.created"), orjson.dumps(first))


def _responses_broken(error: SluiceError) -> bytes:
    """The Responses API's `error` event; the envelope rides along, so SDKs raise an APIError."""
    envelope = error.body()["error"]
    event = {
        "type": "error",
        "code": envelope.get("code"),
        "message": envelope.get("message"),
        "param": envelope.get("param"),
        "error": envelope,
    }
    return sse.typed("error", orjson.dumps(event))


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _responses_first_id(first: Body) -> str | None:
    response = first.get("response")
    return _string(response.get("id")) if isinstance(response, dict) else None


# -- Anthropic Messages ----------------------------------------------------------------------------


def _messages_opening(first: Body, privacy: Body) -> bytes:
    """`message_start`: `privacy` rides inside its `message` (as on a non-stream message)."""
    message = first.get("message")
    message = {**message, "privacy": privacy} if isinstance(message, dict) else {"privacy": privacy}
    return sse.typed("message_start", orjson.dumps({**first, "message": message}))


def _messages_broken(error: SluiceError) -> bytes:
    """Anthropic's `error` event, in its envelope (`gateway.errors.anthropic_body`)."""
    return sse.typed("error", orjson.dumps(anthropic_body(error)))


async def _own_upstream(adapter: Adapter, target: UpstreamTarget, body: Body) -> Any:
    # The Messages API passes its own `Upstream` to the pipeline (`gateway.core.messages_exchange`).
    raise AssertionError("the Messages API calls upstream through its own Upstream")


MESSAGES_WIRE = Wire(
    call=_own_upstream, open=_own_upstream, opening=_messages_opening, broken=_messages_broken
)

WIRES: dict[Endpoint, Wire] = {
    Endpoint.CHAT: Wire(
        call=lambda adapter, target, body: adapter.chat(target, body),
        open=lambda adapter, target, body: adapter.chat_stream(target, body),
        opening=_chat_opening,
        broken=_chat_broken,
    ),
    Endpoint.EMBEDDINGS: Wire(
        call=lambda adapter, target, body: adapter.embeddings(target, body),
        open=_no_stream,
        opening=_chat_opening,
        broken=_chat_broken,
    ),
    Endpoint.RESPONSES: Wire(
        call=lambda adapter, target, body: adapter.responses(target, body),
        open=lambda adapter, target, body: adapter.responses_stream(target, body),
        opening=_responses_opening,
        broken=_responses_broken,
        answer_id=lambda body: _string(body.get("id")),
        first_id=_responses_first_id,
    ),
    Endpoint.MESSAGES: MESSAGES_WIRE,
    Endpoint.COUNT_TOKENS: MESSAGES_WIRE,
}
