"""Server-sent events as the OpenAI wires frame them, defined once.

What belongs here: framing one event (`frame`; `typed`, with an `event:` line, as the Responses API
names each event), the `[DONE]` mark that ends a Chat Completions stream (`DONE_DATA`, the payload;
`DONE`, the framed event), and the media type and headers of a relayed stream.
Reading an upstream's events is each wire's own (`openai_wire`, `limits`).
"""

from __future__ import annotations

from typing import Final

MEDIA_TYPE: Final = "text/event-stream"
# No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
HEADERS: Final = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DONE_DATA: Final = b"[DONE]"
DONE: Final = b"data: " + DONE_DATA + b"\n\n"


def frame(data: bytes) -> bytes:
    """One event carrying `data` (a JSON document: it holds no newline)."""
    return b"data: " + data + b"\n\n"


def typed(name: str, data: bytes) -> bytes:
    """One event named `name` (the Responses API's `response.created`, ...) carrying `data`."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
