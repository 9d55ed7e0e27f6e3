"""The hot path: chat and embeddings requests handled straight from ASGI.

What belongs here: a small ASGI middleware that sends `POST /v1/chat/completions` and
`POST /v1/embeddings` to `routers.chat.handle` without FastAPI's routing, dependency solving and
per-route middleware (a measurable share of the per-request CPU), and everything else on to the
FastAPI app. Errors render exactly as the app's handlers render them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import SluiceError, render
from gateway.routers.chat import CHAT, EMBEDDINGS, handle
from gateway.state import Services

HOT_PATHS = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}


class HotPath:
    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = HOT_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handle(request, self.services, endpoint)
        except SluiceError as exc:
            response = render(exc, request_id=getattr(request.state, "request_id", None))
        await response(scope, receive, send)
