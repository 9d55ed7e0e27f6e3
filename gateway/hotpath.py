"""The hot path: chat and embeddings requests handled straight from ASGI.

What belongs here: a small ASGI middleware that sends `POST /v1/chat/completions` and
`POST /v1/embeddings` to `routers.chat.handle` without FastAPI's routing, dependency solving and
per-route middleware (a measurable share of the per-request CPU), and everything else on to the
FastAPI app. It counts every response for `GET /metrics`, checks every request's header count and
size (431 past Envoy's edge limits), and owns two per-process limits of the hot path: a cap on
requests in flight (past it, a fast 429 with Retry-After rather than an unbounded queue; the
per-key slots and the body budget that `routers.chat.handle` claims are freed here too), and
cancelling the work of a client that disconnects before its response starts (a stream that runs
notices a gone client itself: `gateway.streaming`). A body that trickles in would hold a slot of
the cap: it must arrive whole within `SLUICE_BODY_TIMEOUT`, else a 408 (slowloris; the headers'
deadline is `gateway.uvicorn_protocol`'s). Errors render exactly as the app's handlers render them.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import HeadersTooLarge, RateLimited, RequestTimeout, SluiceError, render
from gateway.http import HEADERS_LIMIT, MAX_HEADER_BYTES, MAX_HEADERS
from gateway.routers.chat import CHAT, EMBEDDINGS, handle
from gateway.state import Services

HOT_PATHS = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}


def _headers_too_large(scope: Scope) -> bool:
    headers = scope["headers"]
    return len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES


async def _disconnected(receive: Receive, body_read: asyncio.Event) -> None:
    """Return when the client disconnects (only listened for once the body has been read)."""
    await body_read.wait()
    while (await receive())["type"] != "http.disconnect":
        continue


class HotPath:
    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services
        self.in_flight = services.in_flight  # shared with GET /metrics
        self.limit = services.settings.max_concurrency
        self.body_timeout = services.settings.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = self._counted(scope["path"], send)
        if scope["type"] == "http" and _headers_too_large(scope):
            too_large = HeadersTooLarge(HEADERS_LIMIT)
            await render(too_large)(scope, receive, send)
            return
        endpoint = HOT_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight.count >= self.limit:
            busy = RateLimited(
                "Sluice is at its concurrency limit; retry shortly", headers={"retry-after": "1"}
            )
            await render(busy)(scope, receive, send)
            return
        self.in_flight.count += 1
        try:
            response = await self._respond(scope, receive, endpoint)
            if response is not None:
                await response(scope, receive, send)
        finally:
            self.in_flight.count -= 1
            self.services.key_slots.release(scope)
            self.services.body_budget.release(scope)

    def _counted(self, path: str, send: Send) -> Send:
        """`send`, counting the response's status for `GET /metrics` (every route, every refusal)."""
        responses = self.services.metrics.http

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                responses.observe(path, message["status"])
            await send(message)

        return counted

    async def _respond(self, scope: Scope, receive: Receive, endpoint: str) -> Response | None:
        body_read = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def tracked() -> Message:
            try:
                async with asyncio.timeout_at(None if body_read.is_set() else deadline):
                    message = await receive()
            except TimeoutError:  # the body is read before any upstream call, so none was made
                late = f"the request body did not arrive within {self.body_timeout:g} s"
                raise RequestTimeout(late) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        request = Request(scope, tracked)
        work = asyncio.ensure_future(self._handle(request, endpoint))
        gone = asyncio.ensure_future(_disconnected(receive, body_read))
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            gone.cancel()
            return work.result()
        work.cancel()  # the client left: abandon the upstream call (the service records it)
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return None

    async def _handle(self, request: Request, endpoint: str) -> Response | None:
        try:
            return await handle(request, self.services, endpoint)
        except SluiceError as exc:
            return render(exc, request_id=getattr(request.state, "request_id", None))
        except ClientDisconnect:  # gone while sending its body: no decision was made, nobody to answer
            return None
