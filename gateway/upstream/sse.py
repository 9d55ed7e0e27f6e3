"""Server-sent events as the OpenAI wire frames them, defined once.

What belongs here: framing one event (`frame`), the `[DONE]` mark that ends a stream (`DONE_DATA`,
the payload; `DONE`, the framed event), and the media type and headers of a relayed stream.
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
