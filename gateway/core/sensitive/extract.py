"""The text a model reads in a request, per wire format: what the detectors scan.

What belongs here: one function per wire format, from a validated request's fields to the strings
it carries (every message's text, whoever wrote it: system and developer prompts, user turns,
assistant turns, tool results, tool-call arguments and names), and `EXTRACTORS`, keyed by the
service's endpoint name. Adding a wire format (OpenAI's Responses API, Anthropic's Messages API)
is one function here and one entry in `EXTRACTORS`; nothing else changes.

Not text, so not scanned: images, audio and files (base64 data would only add false positives),
and embedding inputs given as token ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Extractor = Callable[[Mapping[str, Any]], Iterator[str]]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value


def _content(content: Any) -> Iterator[str]:
    """A message's `content`: a string, or parts of which `text` (and `refusal`) parts are text."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                yield from _strings(part.get("text"))
                yield from _strings(part.get("refusal"))


def _call(call: Any) -> Iterator[str]:
    """A tool or function call an assistant made: its name and its arguments (a JSON string)."""
    if isinstance(call, dict):
        function = call.get("function", call)
        if isinstance(function, dict):
            yield from _strings(function.get("name"))
            yield from _strings(function.get("arguments"))


def chat_texts(fields: Mapping[str, Any]) -> Iterator[str]:
    """OpenAI Chat Completions: every message of every role."""
    messages = fields.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        yield from _content(message.get("content"))
        yield from _strings(message.get("refusal"))
        yield from _strings(message.get("name"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            yield from _call(call)
        yield from _call(message.get("function_call"))


def embedding_texts(fields: Mapping[str, Any]) -> Iterator[str]:
    """OpenAI Embeddings: `input` as a string or an array of strings (token ids are not text)."""
    value = fields.get("input")
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _response_item(item: Any) -> Iterator[str]:
    """One Responses input item: a message (content as a string or parts), a function or custom tool
    call (name, arguments or input), a tool's output, a reasoning item's summary and text (its
    `encrypted_content` is opaque, not text)."""
    if isinstance(item, str):
        yield item
        return
    if not isinstance(item, dict):
        return
    yield from _content(item.get("content"))
    for name in ("name", "arguments", "input"):
        yield from _strings(item.get(name))
    yield from _content(item.get("output"))  # a string, or parts of which `text` parts are text
    summary = item.get("summary")
    for part in summary if isinstance(summary, list) else ():
        if isinstance(part, dict):
            yield from _strings(part.get("text"))


def responses_texts(fields: Mapping[str, Any]) -> Iterator[str]:
    """OpenAI Responses: `instructions`, and every input item (a string input is one user turn)."""
    yield from _strings(fields.get("instructions"))
    value = fields.get("input")
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _response_item(item)


def _anthropic_blocks(content: Any, depth: int = 0) -> Iterator[str]:
    """Anthropic content: a string, or blocks: `text` and `thinking` text, a text document's data,
    a `tool_use`'s name and input (every string in it), a `tool_result`'s content (a string or
    blocks, once nested). Images and PDFs (base64) are not text."""
    if isinstance(content, str):
        yield content
        return
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        yield from _strings(block.get("text"))
        yield from _strings(block.get("thinking"))
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") in ("text", "content"):  # a document's text
            yield from _strings(source.get("data"))
            if depth == 0:
                yield from _anthropic_blocks(source.get("content"), depth + 1)
        if "input" in block:  # tool_use, server_tool_use, mcp_tool_use
            yield from _strings(block.get("name"))
            yield from _json_strings(block.get("input"))
        if depth == 0 and "content" in block:  # tool_result and its kin
            yield from _anthropic_blocks(block.get("content"), depth + 1)


def _json_strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (a tool call's input), keys excluded; iterative, any depth."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def messages_texts(fields: Mapping[str, Any]) -> Iterator[str]:
    """Anthropic Messages: the system prompt (a string or text blocks) and every message's blocks."""
    yield from _anthropic_blocks(fields.get("system"))
    messages = fields.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            yield from _anthropic_blocks(message.get("content"))


EXTRACTORS: dict[str, Extractor] = {
    "chat": chat_texts,
    "embeddings": embedding_texts,
    "responses": responses_texts,
    "messages": messages_texts,
    "count_tokens": messages_texts,
}
