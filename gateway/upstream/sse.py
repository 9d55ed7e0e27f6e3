"""Server-sent events as the OpenAI and Anthropic wires frame them, defined once.

What belongs here: framing one event (`frame`; `typed`, with an `event:` line, as the Responses API
and Anthropic's Messages API name each event), the `[DONE]` mark that ends a Chat Completions stream
(`DONE_DATA`, the payload; `DONE`, the framed event), the media type and headers of a relayed stream,
and `UsageFilter`, which drops the usage-only chunk Sluice asked for when the client did not.
Reading an upstream's events is each wire's own (`openai_wire`, `limits`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

MEDIA_TYPE: Final = "text/event-stream"
# No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
HEADERS: Final = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DONE_DATA: Final = b"[DONE]"
DONE: Final = b"data: " + DONE_DATA + b"\n\n"


def frame(data: bytes) -> bytes:
    """One event carrying `data` (a JSON document: it holds no newline)."""
    return b"data: " + data + b"\n\n"


class UsageFilter:
    """Drops a stream's usage-only chunk (`"choices": []` with `usage`): Sluice asks for usage
    (`stream_options.include_usage`) to count a key's tokens, and a client that did not ask must
    not see it. Holds back at most one incomplete event between chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return b""
        self._pending = data[cut + 2 :]
        whole = data[: cut + 2]
        if b'"usage"' not in whole:
            return whole
        return b"".join(event + b"\n\n" for event in whole.split(b"\n\n")[:-1] if not _usage_only(event))

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def _usage_only(event: bytes) -> bool:
    if b'"usage"' not in event:
        return False
    data = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("choices") == [] and isinstance(parsed.get("usage"), dict)


def typed(name: str, data: bytes) -> bytes:
    """One event named `name` (the Responses API's `response.created`, ...) carrying `data`."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _data(event: bytes) -> bytes:
    return b"\n".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))


def data_of(chunk: bytes) -> list[bytes]:
    """The data of each whole event in `chunk`."""
    return [data for event in chunk.replace(b"\r\n", b"\n").split(b"\n\n") if (data := _data(event))]


async def data_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The data of each event of a stream, in order; keep-alives and `[DONE]` skipped."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            data = _data(event)
            if data and data != DONE_DATA:
                yield data


async def first_event(chunks: AsyncIterator[bytes]) -> tuple[dict[str, Any], bytes]:
    """The first event of a stream (its JSON data), and the bytes read past it; ValueError when the
    stream ends first or the event is not a JSON object."""
    buffer = b""
    while True:
        sep = buffer.find(b"\n\n")
        if sep >= 0:
            event, buffer = buffer[:sep], buffer[sep + 2 :]
            data = _data(event)
            if not data:
                continue
            parsed = orjson.loads(data)
            if not isinstance(parsed, dict):
                raise ValueError("the first event is not an object")
            return parsed, buffer
        try:
            buffer += (await anext(chunks)).replace(b"\r\n", b"\n")
        except StopAsyncIteration:
            raise ValueError("the stream ended before its first event") from None
