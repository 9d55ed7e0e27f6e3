"""The app's outermost ASGI callable: the pipeline routes go straight to their `Guarded` app.

What belongs here: `DispatchingApp`, the FastAPI app with one shortcut in front of it. A `POST` to a
pipeline route (`gateway.api.routes.PIPELINE`: chat, embeddings, Responses, Messages) is handed to
its `Guarded` app directly, with the only work the layers it skips would have done for it:

- `EdgeGuard`'s: a request whose headers are past the edge's limits answered 431, and every
  response's status counted for `GET /metrics`;
- the error middleware's (Starlette's `ExceptionMiddleware` and `ServerErrorMiddleware`, with the
  handlers of `gateway.errors.install_handlers`): an exception that escapes before the response
  starts is answered by the app's handler for it; one without a handler is answered 500
  `internal_error` (not counted, as outside `EdgeGuard` before) and raised on to the server, which
  logs it; one after the response started is raised on (the server closes the connection).

`AdminGuard` only acts on `/admin` paths, and FastAPI's telemetry, body-limit and exit-stack layers
are off or idle for these routes, so nothing else is skipped. Everything else (another method or a
trailing slash on the same path, every other route, the lifespan) goes through FastAPI as before,
so 404, 405, HEAD and OPTIONS answers are the route table's own. The shortcut is taken only when
the app's middleware is exactly `EdgeGuard` and `AdminGuard` (anything else would be skipped), for
routes no earlier route shadows, and without a `root_path` (the router strips it; this does not).

Why: FastAPI/Starlette's seven middleware layers and the router cost about 60 µs of CPU per
request on the pass-through's ~0.7 ms (bench/PROFILE.md, "Issue 15 item 4"), and each ASGI send of
a streamed response went through three of their send wrappers before uvicorn's; here it goes
through one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.admin import AdminGuard
from gateway.errors import HeadersTooLarge, render
from gateway.observability.metrics import HttpResponses
from gateway.server.edge import EdgeGuard, Guarded, headers_too_large
from gateway.server.request_body import HEADERS_LIMIT

# The middleware whose work the shortcut does itself.
REPLICATED: frozenset[object] = frozenset({EdgeGuard, AdminGuard})


def direct_routes(routes: list[Any]) -> dict[str, Guarded]:
    """Path -> `Guarded` app of each POST pipeline route with a plain path that no earlier route
    matches (the router would answer that one first)."""
    direct: dict[str, Guarded] = {}
    for index, route in enumerate(routes):
        if not (isinstance(route, Route) and isinstance(route.endpoint, Guarded)):
            continue
        if route.param_convertors or route.methods is None or "POST" not in route.methods:
            continue
        probe: Scope = {"type": "http", "path": route.path, "method": "POST", "root_path": ""}
        if any(earlier.matches(probe)[0] is not Match.NONE for earlier in routes[:index]):
            continue
        direct.setdefault(route.path, route.endpoint)
    return direct


def _handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The handler Starlette's `ExceptionMiddleware` would pick: by status for an HTTPException,
    else by the exception's classes, nearest first (`Exception` itself is the 500 handler's)."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is not Exception and cls in handlers:
            return handlers[cls]
    return None


async def _called(handler: Any, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]


class DispatchingApp(FastAPI):
    """FastAPI, with the pipeline routes dispatched before its middleware and router (above)."""

    _direct: dict[str, Guarded] | None = None  # built with the middleware stack, on first use
    _responses: HttpResponses | None = None

    def build_middleware_stack(self) -> ASGIApp:
        middleware: set[object] = {m.cls for m in self.user_middleware}
        replicated = middleware == REPLICATED and not self.root_path
        self._direct = direct_routes(self.router.routes) if replicated else {}
        self._responses = self.state.sluice.metrics.http if self._direct else None
        return super().build_middleware_stack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            assert self._direct is not None
            guarded = self._direct.get(scope["path"])
            if guarded is not None:
                scope["app"] = self
                await self._dispatch(guarded, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _dispatch(self, guarded: Guarded, scope: Scope, receive: Receive, send: Send) -> None:
        responses, path = self._responses, scope["path"]
        assert responses is not None
        started = False

        async def edge_send(message: Message) -> None:
            """The one wrapper of `send`: counts the status (as `EdgeGuard`), notes the start."""
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                responses.observe(path, message["status"])
            await send(message)

        try:
            if headers_too_large(scope):
                await render(HeadersTooLarge(HEADERS_LIMIT))(scope, receive, edge_send)
                return
            await guarded(scope, receive, edge_send)
        except Exception as exc:
            if started:
                raise
            await self._answer(exc, scope, receive, send, edge_send)

    async def _answer(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send, counted: Send
    ) -> None:
        """What the error middleware answered for `exc`, raised before the response started."""
        handler = _handler_for(self.exception_handlers, exc)
        if handler is not None:  # ExceptionMiddleware's, inside EdgeGuard: counted
            response = await _called(handler, Request(scope, receive, counted), exc)
            await response(scope, receive, counted)
            exc.__traceback__ = None  # as Starlette: a reused exception would pile up tracebacks
            return
        fallback = self.exception_handlers.get(500) or self.exception_handlers.get(Exception)
        if fallback is None:
            response = PlainTextResponse("Internal Server Error", status_code=500)
        else:
            response = await _called(fallback, Request(scope), exc)
        await response(scope, receive, send)  # ServerErrorMiddleware's, outside EdgeGuard
        raise exc  # the server logs it, as before
