"""OpenAI's Responses API (`POST /v1/responses`) as the fake upstream speaks it.

What belongs here: the happy-path replies of the Responses wire, non-stream (a `response` object)
and stream (the typed events `response.created`, `response.in_progress`,
`response.output_item.added`, `response.output_text.delta`, ..., `response.completed`), for a text
answer, a function call (when the request offers function tools and its last input item is not
a tool's output: the round trip then ends with a text answer), and a reasoning item (when the
request asks for `reasoning`; with `encrypted_content` when `include` asks for it). Each response
id is derived from the request's bytes, so a follow-up (`previous_response_id`) gets a new one.
Faults are applied by `fake_faults` as for every wire; the content directives (``chunks``,
``echo``, ``tricky``) are honoured as in `fake_wires`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

import orjson

from sluice_fakes import fake_content as fc
from sluice_fakes.fake_reply import SSE_TYPE, Call, Reply, json_reply

CREATED: Final = 1_700_000_000
ENCRYPTED: Final = "gAAAAfake-encrypted-reasoning"


def responses(call: Call) -> Reply:
    body = call.body
    prompt = fc.estimate_tokens(call.raw)
    response_id = "resp_" + hashlib.blake2b(call.raw, digest_size=12).hexdigest()
    items = body.get("input")
    tool = _tool(body, items)
    reasoning = _reasoning(body)
    if tool is not None:
        return _reply(call.model, response_id, None, tool, reasoning, 1, prompt, call.stream)
    faults = call.faults
    if faults.echo:
        text = _last_user_text(items)
    elif faults.tricky:
        text = fc.TRICKY_TEXT
    else:
        text = fc.simulated_text(call.model, faults.chunks or fc.DEFAULT_CHUNKS)
    chunks = faults.chunks or fc.DEFAULT_CHUNKS
    return _reply(call.model, response_id, text, None, reasoning, chunks, prompt, call.stream)


def _last_user_text(items: object) -> str:
    if isinstance(items, str):
        return items
    return fc.last_user_text(items)


def _tool(body: Mapping[str, Any], items: object) -> str | None:
    """The function to call: the forced one, else the first function tool; none once a tool answered."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    last = items[-1] if isinstance(items, list) and items else None
    if isinstance(last, dict) and last.get("type") == "function_call_output":
        return None
    if isinstance(choice, Mapping) and isinstance(choice.get("name"), str):
        return str(choice["name"])
    for tool in tools:
        if isinstance(tool, Mapping) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
            return str(tool["name"])
    return None


def _reasoning(body: Mapping[str, Any]) -> str | None:
    """None without `reasoning`; else the encrypted content to return ("" when not asked for)."""
    if not isinstance(body.get("reasoning"), Mapping):
        return None
    include = body.get("include")
    wanted = isinstance(include, list) and "reasoning.encrypted_content" in include
    return ENCRYPTED if wanted else ""


def _event(kind: str, sequence: int, **fields: Any) -> bytes:
    value = {"type": kind, "sequence_number": sequence, **fields}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(value) + b"\n\n"


@lru_cache(maxsize=512)
def _reply(
    model: str,
    response_id: str,
    text: str | None,
    tool: str | None,
    reasoning: str | None,
    chunks: int,
    prompt: int,
    stream: bool,
) -> Reply:
    pieces = fc.split_text(text or "", chunks)
    output_tokens = len(pieces) if tool is None else 5
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0 if reasoning is None else 3},
        "total_tokens": prompt + output_tokens,
    }
    output: list[dict[str, Any]] = []
    if reasoning is not None:
        item: dict[str, Any] = {"id": "rs_fake", "type": "reasoning", "summary": []}
        if reasoning:
            item["encrypted_content"] = reasoning
        output.append(item)
    if tool is None:
        part = {"type": "output_text", "text": text or "", "annotations": []}
        output.append(
            {
                "id": "msg_fake",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    else:
        output.append(
            {
                "id": "fc_fake",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_fake_0",
                "name": tool,
                "arguments": "{}",
            }
        )
    done = _response(model, response_id, "completed", output, usage)
    if not stream:
        return json_reply(done)
    return Reply(content_type=SSE_TYPE, frames=_frames(model, response_id, output, pieces, done))


def _response(
    model: str, response_id: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
        "usage": usage,
    }


def _frames(
    model: str,
    response_id: str,
    output: list[dict[str, Any]],
    pieces: list[str],
    done: dict[str, Any],
) -> tuple[bytes, ...]:
    started = _response(model, response_id, "in_progress", [], None)
    frames = [
        _event("response.created", 0, response=started),
        _event("response.in_progress", 1, response=started),
    ]
    for index, item in enumerate(output):
        opened = {**item, "status": "in_progress"} if "status" in item else item
        if item["type"] == "message":
            opened = {**opened, "content": []}
        if item["type"] == "function_call":
            opened = {**opened, "arguments": ""}
        frames.append(_event("response.output_item.added", len(frames), output_index=index, item=opened))
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            empty = {"type": "output_text", "text": "", "annotations": []}
            frames.append(
                _event("response.content_part.added", len(frames), **where, content_index=0, part=empty)
            )
            for piece in pieces:
                frames.append(
                    _event("response.output_text.delta", len(frames), **where, content_index=0, delta=piece)
                )
            text = item["content"][0]["text"]
            frames.append(
                _event("response.output_text.done", len(frames), **where, content_index=0, text=text)
            )
            part = item["content"][0]
            frames.append(
                _event("response.content_part.done", len(frames), **where, content_index=0, part=part)
            )
        elif item["type"] == "function_call":
            arguments = item["arguments"]
            frames.append(
                _event("response.function_call_arguments.delta", len(frames), **where, delta=arguments)
            )
            frames.append(
                _event("response.function_call_arguments.done", len(frames), **where, arguments=arguments)
            )
        frames.append(_event("response.output_item.done", len(frames), output_index=index, item=item))
    frames.append(_event("response.completed", len(frames), response=done))
    return tuple(frames)
