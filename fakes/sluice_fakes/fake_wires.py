"""The three LLM wire formats the fake upstream speaks: OpenAI, Anthropic Messages and Gemini.

What belongs here: routing a request path to a (wire, operation), and building each wire's
happy-path replies (chat non-stream and stream, tool calls, JSON mode, embeddings, model lists).
Faults are applied elsewhere (`fake_faults`); the only directives read here are the ones that
change content: ``chunks``, ``echo`` and ``tricky``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final
from urllib.parse import unquote

import orjson

from sluice_fakes import fake_content as fc
from sluice_fakes.fake_reply import (
    OPENAI_DONE,
    SSE_TYPE,
    Call,
    Reply,
    Wire,
    json_reply,
    sse,
    sse_crlf,
    sse_event,
)

CREATED: Final = 1_700_000_000
_GEMINI_ACTIONS: Final = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embed",
    "batchEmbedContents": "batch_embed",
    "countTokens": "count_tokens",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    wire: Wire
    op: str
    model: str | None = None
    stream: bool | None = None


def route(method: str, path: str) -> Route | None:
    """Map a request to its wire and operation; tolerant of prefixes (``/v1``, ``/openai/v1``...)."""
    p = path.rstrip("/")
    if method == "POST":
        if p.endswith("/chat/completions"):
            return Route("openai", "chat")
        if p.endswith("/responses"):
            return Route("openai", "responses")  # built by `fake_responses`
        if p.endswith("/embeddings"):
            return Route("openai", "embed")
        if p.endswith("/messages"):
            return Route("anthropic", "chat")
        if p.endswith("/messages/count_tokens"):
            return Route("anthropic", "count_tokens")
        return _gemini_route(p)
    if method == "GET" and p.endswith("/models"):
        return Route("gemini" if "/v1beta" in p or "/v1alpha" in p else "openai", "models")
    return None


def _gemini_route(path: str) -> Route | None:
    head, sep, action = path.rpartition(":")
    op = _GEMINI_ACTIONS.get(action)
    if not sep or op is None or "models/" not in head:
        return None
    model = unquote(head.rpartition("models/")[2])
    return Route("gemini", op, model, action == "streamGenerateContent")


# -- shared content decisions -------------------------------------------------------------------
def _reply_text(call: Call, schema: object, json_mode: bool, user_text: Callable[[], str]) -> str:
    faults = call.faults
    if faults.echo:
        return user_text()
    if faults.tricky:
        return fc.TRICKY_TEXT
    if json_mode:
        return fc.json_text_for_schema(schema)
    return fc.simulated_text(call.model, faults.chunks or fc.DEFAULT_CHUNKS)


def _chunks(call: Call) -> int:
    return call.faults.chunks or fc.DEFAULT_CHUNKS


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _first_of(mapping: Mapping[str, Any], *keys: str) -> object:
    return next((mapping[k] for k in keys if k in mapping), None)


# -- OpenAI -------------------------------------------------------------------------------------
def openai_chat(call: Call) -> Reply:
    body = call.body
    include_usage = bool(_dig(body, "stream_options", "include_usage"))
    prompt = fc.estimate_tokens(call.raw)
    tool = _openai_tool(body)
    if tool is not None:
        return _openai_tool_reply(call.model, tool, prompt, call.stream, include_usage)
    fmt = body.get("response_format")
    json_mode = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
    schema = _dig(fmt, "json_schema", "schema")
    text = _reply_text(call, schema, json_mode, lambda: fc.last_user_text(body.get("messages")))
    return _openai_text_reply(call.model, text, _chunks(call), prompt, call.stream, include_usage)


def _openai_tool(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    forced = _dig(choice, "function", "name")
    if isinstance(forced, str):
        return forced
    name = _dig(tools[0], "function", "name") or _dig(tools[0], "name")
    return name if isinstance(name, str) else "tool"


def _openai_usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_base(model: str, kind: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": kind,
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
    }


def _openai_message(model: str, message: dict[str, Any], finish: str, usage: dict[str, int]) -> Reply:
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return json_reply({**_openai_base(model, "chat.completion"), "choices": [choice], "usage": usage})


def _openai_stream(
    model: str, deltas: Sequence[dict[str, Any]], finish: str, usage: dict[str, int] | None
) -> Reply:
    base = _openai_base(model, "chat.completion.chunk")

    def frame(delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return sse({**base, "choices": [choice]})

    frames = [frame(d) for d in deltas]
    frames.append(frame({}, finish))
    if usage is not None:
        frames.append(sse({**base, "choices": [], "usage": usage}))
    frames.append(OPENAI_DONE)
    return Reply(content_type=SSE_TYPE, frames=tuple(frames))


@lru_cache(maxsize=512)
def _openai_text_reply(
    model: str, text: str, chunks: int, prompt: int, stream: bool, include_usage: bool
) -> Reply:
    pieces = fc.split_text(text, chunks)
    usage = _openai_usage(prompt, len(pieces))
    if not stream:
        message = {"role": "assistant", "content": text, "refusal": None}
        return _openai_message(model, message, "stop", usage)
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}, *({"content": p} for p in pieces)]
    return _openai_stream(model, deltas, "stop", usage if include_usage else None)


@lru_cache(maxsize=128)
def _openai_tool_reply(model: str, tool: str, prompt: int, stream: bool, include_usage: bool) -> Reply:
    usage = _openai_usage(prompt, 5)
    call = {"id": "call_fake_0", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        return _openai_message(model, message, "tool_calls", usage)
    first = {**call, "index": 0, "function": {"name": tool, "arguments": ""}}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [first]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
    ]
    return _openai_stream(model, deltas, "tool_calls", usage if include_usage else None)


def openai_embeddings(call: Call) -> Reply:
    items = fc.embedding_inputs(call.body.get("input"))
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = fc.embedding_vector(item)
        embedding: object = fc.embedding_base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = fc.estimate_tokens(call.raw)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_reply({"object": "list", "data": data, "model": call.model, "usage": usage})


def models_list(wire: Wire, models: Sequence[str], headers: Mapping[str, str]) -> Reply:
    if wire == "gemini":
        return json_reply({"models": [{"name": f"models/{m}", "displayName": m} for m in models]})
    if "anthropic-version" in headers:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ]
        first, last = (models[0], models[-1]) if models else (None, None)
        return json_reply({"data": data, "has_more": False, "first_id": first, "last_id": last})
    listing = [{"id": m, "object": "model", "created": CREATED, "owned_by": "fake"} for m in models]
    return json_reply({"object": "list", "data": listing})


# -- Anthropic ----------------------------------------------------------------------------------
THINKING_TEXT: Final = "Simulated reasoning: the request is simple."
THINKING_SIGNATURE: Final = "c2lnbmF0dXJlLWZha2U="


def anthropic_messages(call: Call) -> Reply:
    body = call.body
    prompt = fc.estimate_tokens(call.raw)
    thinking = _dig(body, "thinking", "type") in ("enabled", "adaptive")
    tool = _anthropic_tool(body)
    if tool is not None:
        return _anthropic_reply(call.model, None, tool, 1, prompt, call.stream, thinking)
    fmt = _first_of(body, "output_format") or _dig(body, "output_config", "format")
    json_mode = isinstance(fmt, Mapping) and fmt.get("type") == "json_schema"
    text = _reply_text(call, _dig(fmt, "schema"), json_mode, lambda: fc.last_user_text(body.get("messages")))
    return _anthropic_reply(call.model, text, None, _chunks(call), prompt, call.stream, thinking)


def _anthropic_tool(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or _dig(choice, "type") == "none":
        return None
    forced = _dig(choice, "name")
    if isinstance(forced, str):
        return forced
    name = _dig(tools[0], "name")
    return name if isinstance(name, str) else "tool"


def block_events(index: int, start: dict[str, Any], deltas: Sequence[dict[str, Any]]) -> list[bytes]:
    """One Anthropic content block as SSE events: its start, its deltas, its stop."""
    return [
        sse_event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        ),
        *(
            sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ),
        sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


@lru_cache(maxsize=512)
def _anthropic_reply(
    model: str,
    text: str | None,
    tool: str | None,
    chunks: int,
    prompt: int,
    stream: bool,
    thinking: bool = False,
) -> Reply:
    """A message: a thinking block first when the request enabled thinking (as Claude answers it:
    the text in `thinking_delta`s, then its `signature_delta`), then the text or the tool call."""
    pieces = fc.split_text(text or "", chunks)
    output = len(pieces) if tool is None else 5
    stop = "end_turn" if tool is None else "tool_use"
    usage = {
        "input_tokens": prompt,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    block: dict[str, Any] = (
        {"type": "text", "text": text or ""}
        if tool is None
        else {"type": "tool_use", "id": "toolu_fake_0", "name": tool, "input": {}}
    )
    reasoning = {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model}
    if not stream:
        content = [reasoning, block] if thinking else [block]
        return json_reply(
            {**message, "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        )
    start: dict[str, Any] = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    if tool is None:
        first_block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    else:
        first_block = block
        deltas = [{"type": "input_json_delta", "partial_json": "{}"}]
    blocks: list[bytes] = []
    if thinking:
        blocks += block_events(
            0,
            {"type": "thinking", "thinking": "", "signature": ""},
            [
                *({"type": "thinking_delta", "thinking": p} for p in fc.split_text(THINKING_TEXT, 3)),
                {"type": "signature_delta", "signature": THINKING_SIGNATURE},
            ],
        )
    blocks += block_events(1 if thinking else 0, first_block, deltas)
    frames = [
        sse_event("message_start", {"type": "message_start", "message": start}),
        blocks[0],  # the first content_block_start, then a ping, as Anthropic sends them
        sse_event("ping", {"type": "ping"}),
        *blocks[1:],
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output},
            },
        ),
        sse_event("message_stop", {"type": "message_stop"}),
    ]
    return Reply(content_type=SSE_TYPE, frames=tuple(frames))


def anthropic_count_tokens(call: Call) -> Reply:
    return json_reply({"input_tokens": fc.estimate_tokens(call.raw)})


# -- Gemini -------------------------------------------------------------------------------------
def gemini_generate(call: Call) -> Reply:
    body = call.body
    prompt = fc.estimate_tokens(call.raw)
    sse_mode = "alt=sse" in call.query
    tool = _gemini_tool(body)
    if tool is not None:
        return _gemini_reply(call.model, None, tool, 1, prompt, call.stream, sse_mode)
    config = _first_of(body, "generationConfig", "generation_config")
    config = config if isinstance(config, Mapping) else {}
    json_mode = _first_of(config, "responseMimeType", "response_mime_type") == "application/json"
    schema = _first_of(
        config, "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema"
    )
    text = _reply_text(call, schema, json_mode, lambda: fc.last_gemini_user_text(body.get("contents")))
    return _gemini_reply(call.model, text, None, _chunks(call), prompt, call.stream, sse_mode)


def _gemini_tool(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    config = _first_of(body, "toolConfig", "tool_config")
    calling = (
        _first_of(config, "functionCallingConfig", "function_calling_config")
        if isinstance(config, Mapping)
        else None
    )
    calling = calling if isinstance(calling, Mapping) else {}
    if not isinstance(tools, list) or str(calling.get("mode", "")).upper() == "NONE":
        return None
    allowed = _first_of(calling, "allowedFunctionNames", "allowed_function_names")
    if isinstance(allowed, list) and allowed and isinstance(allowed[0], str):
        return allowed[0]
    for entry in tools:
        declarations = (
            _first_of(entry, "functionDeclarations", "function_declarations")
            if isinstance(entry, Mapping)
            else None
        )
        if isinstance(declarations, list) and declarations:
            name = _dig(declarations[0], "name")
            return name if isinstance(name, str) else "tool"
    return None


@lru_cache(maxsize=512)
def _gemini_reply(
    model: str,
    text: str | None,
    tool: str | None,
    chunks: int,
    prompt: int,
    stream: bool,
    sse_mode: bool,
) -> Reply:
    pieces = fc.split_text(text or "", chunks)
    output = len(pieces) if tool is None else 5
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}

    def response(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        value: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": model,
            "responseId": "fake-response",
        }
        if last:
            candidate["finishReason"] = "STOP"
            value["usageMetadata"] = usage
        return value

    pieces_parts: list[list[dict[str, Any]]]
    if tool is not None:
        pieces_parts = [[{"functionCall": {"name": tool, "args": {}}}]]
    else:
        pieces_parts = [[{"text": p}] for p in pieces]
    if not stream:
        parts = pieces_parts[0] if tool is not None else [{"text": text or ""}]
        return json_reply(response(parts, True))
    values = [response(parts, i == len(pieces_parts) - 1) for i, parts in enumerate(pieces_parts)]
    if sse_mode:
        return Reply(content_type=SSE_TYPE, frames=tuple(sse_crlf(v) for v in values))
    encoded = [orjson.dumps(v) for v in values]
    frames = [b"[" + encoded[0], *(b",\r\n" + e for e in encoded[1:]), b"]"]
    return Reply(frames=tuple(frames))


def gemini_embed(call: Call) -> Reply:
    if call.op == "count_tokens":
        return json_reply({"totalTokens": fc.estimate_tokens(call.raw)})
    if call.op == "embed":
        return json_reply({"embedding": {"values": fc.embedding_vector(_gemini_embed_text(call.body))}})
    requests = call.body.get("requests")
    requests = requests if isinstance(requests, list) else []
    values = [{"values": fc.embedding_vector(_gemini_embed_text(r))} for r in requests]
    return json_reply({"embeddings": values})


def _gemini_embed_text(request: object) -> str:
    return fc.text_of_content(_dig(request, "content", "parts"))
