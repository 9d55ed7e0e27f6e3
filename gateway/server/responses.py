"""The response a chat stream is sent with: it stops relaying as soon as the client has gone.

What belongs here: `RelayResponse`, Starlette's `StreamingResponse` with three guarantees the relay
needs (checklist T4): no chunk is pulled from the upstream after the client disconnected; the body
(`ChatService._relay`, which closes the upstream call and writes the ledger record) is closed when
the response ends, not whenever the garbage collector finalises it; and a burst of chunks already
buffered from the upstream is relayed `BURST` chunks at a time, between which the event loop runs
(it would otherwise see neither the client's disconnect nor any other connection until the burst
is through: up to a megabyte of small chunks, hundreds of milliseconds). A stream whose chunks
arrive one by one (an LLM's tokens) waits for each anyway, so the extra pause costs it nothing.

Why not Starlette's own disconnect watch: it stops the stream by cancelling it through an anyio
cancel scope, and anyio delivers that cancellation only while the stream's task waits on a future
that is not done yet. When the upstream keeps data coming (under uvloop, with the relay reading
buffered bytes), the task is always about to wake when anyio looks, so the cancellation never
lands; and uvicorn's `send` to a closed connection returns without error (ASGI 2.3). The relay
would read the whole upstream answer into a dead socket (tokens paid for nobody) and the ledger
would record a completed stream. Its task group also cost ~70 µs of CPU per stream. Here the stream
runs in the request's own task; the watch (`gateway.server.gone`) marks the client gone, which the
next send checks, and cancels the task, which asyncio delivers at the stream's next await.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import orjson
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.server.gone import disconnected, unless_gone

BURST: Final = 32


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


class _ClientGone(Exception):
    """Raised by `send` once the client has disconnected; ends the stream like a cancellation."""


class RelayResponse(StreamingResponse):
    gone = False  # set by the receive watch once the client has disconnected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched() -> None:
            await disconnected(receive)
            self.gone = (
                True  # before the stream is cancelled: a stream that ignores it stops at its next send
            )

        try:
            # The stream in the request's own task, cancelled if the client leaves (Starlette's own
            # watch, a task group, cost ~70 µs per stream: gateway.server.gone).
            await unless_gone(self.stream_response(send), watched())
        except _ClientGone:
            pass  # the client left; closing the body below records it and closes the upstream call
        except OSError:  # an ASGI 2.4 server's send to a gone client: what Starlette raises for it
            raise ClientDisconnect() from None
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        """Starlette's loop, with the client-gone check and the burst pause in it (a wrapper of
        `send` would add a Python call to every chunk's way out)."""
        if self.gone:
            raise _ClientGone
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        sent = 1
        async for chunk in self.body_iterator:
            if self.gone:
                raise _ClientGone
            if not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
            if sent % BURST == 0:
                await asyncio.sleep(0)  # let the loop run: I/O events, the disconnect watch, others
        if self.gone:
            raise _ClientGone
        await send({"type": "http.response.body", "body": b"", "more_body": False})
