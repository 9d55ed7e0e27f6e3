"""The edge every request passes: the guards of every route, and the frame of each pipeline route.

What belongs here: `EdgeGuard`, the outermost middleware of the app: it counts every response for
`GET /metrics` and refuses a request whose headers are past Envoy's edge limits (431) before
anything else reads it; it guards and never dispatches (the pipeline routes are dispatched in front
of it, `gateway.server.dispatch`, which does the same two things for them). And `Guarded`, the ASGI
app that runs each pipeline route of `gateway.api.routes` (chat, embeddings): the in-flight cap
(past it, a fast 429 with Retry-After rather than an unbounded queue), the request id, the answer to
the body deadline (a body that trickles in would hold a slot of the cap: it must arrive whole within
`SLUICE_BODY_TIMEOUT`, else a 408; the deadline itself is timed by the HTTP protocol,
`gateway.server.uvicorn_deadlines`, which hands it over in the scope; only under another ASGI server
does the edge time it), cancelling the handler's work when the client disconnects before its
response starts (a stream that runs notices a gone client itself: `gateway.server.responses`), and
the request's claims (its key's slot, its body bytes): context managers the handler enters into
`Inbound.claims`, one `ExitStack` that closes once the response has been sent, whatever happened in
between. Errors render exactly as the app's handlers render them.

Why pipeline routes are plain Starlette routes with this frame rather than FastAPI routes:
dependency solving and FastAPI's request wrapping were a measurable share of the per-request CPU
(bench/PROFILE.md); the route table and its 404/405 answers are the app's as for every route.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.services import Services
from gateway.errors import HeadersTooLarge, RateLimited, RequestTimeout, SluiceError, render
from gateway.server.gone import disconnected, unless_gone
from gateway.server.request_body import (
    BODY_DEADLINE,
    HEADERS_LIMIT,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    BodyDeadline,
    new_request_id,
)


@dataclass(frozen=True)
class Inbound:
    """What the edge hands a pipeline handler: the request, its id, its start, and its claims."""

    request: Request
    services: Services
    request_id: str
    started: float
    claims: ExitStack  # closed after the response has been sent (or the client has gone)


Handler = Callable[[Inbound], Awaitable[Response]]
Renderer = Callable[..., Response]  # `gateway.errors.render`, or an API's own envelope (`render_anthropic`)


def headers_too_large(scope: Scope) -> bool:
    """Past Envoy's edge limits: more header lines, or more header bytes, than it accepts."""
    headers = scope["headers"]
    return len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES


class EdgeGuard:
    """ASGI middleware around the whole app: every response counted, oversized headers refused."""

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.responses = services.metrics.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._counted(scope["path"], send)
        if headers_too_large(scope):
            await render(HeadersTooLarge(HEADERS_LIMIT))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _counted(self, path: str, send: Send) -> Send:
        """`send`, counting the response's status for `GET /metrics` (every route, every refusal)."""
        responses = self.responses

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                responses.observe(path, message["status"])
            await send(message)

        return counted


async def _disconnected(receive: Receive, body_read: asyncio.Event) -> None:
    """Return when the client disconnects (only listened for once the body has been read)."""
    await body_read.wait()
    await disconnected(receive)


class Guarded:
    """The ASGI app of one pipeline route: `handler` run inside the edge's guards; its errors (and
    the edge's own) rendered by `render`, in the envelope of the route's API."""

    def __init__(self, handler: Handler, *, render: Renderer = render) -> None:
        self.handler = handler
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["app"].state.sluice
        in_flight = services.in_flight  # shared with GET /metrics
        if in_flight.count >= services.settings.max_concurrency:
            busy = RateLimited(
                "Sluice is at its concurrency limit; retry shortly", headers={"retry-after": "1"}
            )
            await self.render(busy)(scope, receive, send)
            return
        in_flight.count += 1
        try:
            with ExitStack() as claims:
                response = await self._respond(scope, receive, services, claims)
                if response is not None:
                    await response(scope, receive, send)
        finally:
            in_flight.count -= 1

    async def _respond(
        self, scope: Scope, receive: Receive, services: Services, claims: ExitStack
    ) -> Response | None:
        started = time.perf_counter()
        body_read = asyncio.Event()
        # The protocol times the body deadline and wakes us when it passes; only under another
        # ASGI server (no `BodyDeadline` in the scope) is it timed here.
        owned: BodyDeadline | None = scope.get("extensions", {}).get(BODY_DEADLINE)
        if owned is not None:
            owned.claimed = True
        body_timeout = owned.seconds if owned is not None else services.settings.body_timeout
        late = f"the request body did not arrive within {body_timeout:g} s"
        deadline = None if owned is not None else asyncio.get_running_loop().time() + body_timeout

        async def tracked() -> Message:
            try:
                async with asyncio.timeout_at(None if body_read.is_set() else deadline):
                    message = await receive()
            except TimeoutError:  # the body is read before any upstream call, so none was made
                raise RequestTimeout(late) from None
            if owned is not None and owned.expired and not body_read.is_set():
                raise RequestTimeout(late)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        request = Request(scope, tracked)
        inbound = Inbound(request, services, new_request_id(request), started, claims)
        return await unless_gone(self._handle(inbound), _disconnected(receive, body_read))

    async def _handle(self, inbound: Inbound) -> Response | None:
        try:
            return await self.handler(inbound)
        except SluiceError as exc:
            return self.render(exc, request_id=inbound.request_id)
        except ClientDisconnect:  # gone while sending its body: no decision was made, nobody to answer
            return None
