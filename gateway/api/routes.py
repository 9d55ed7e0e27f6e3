"""Every endpoint Sluice serves, by URL: the one route table of the app.

What belongs here: the table only, in the order the app matches it (and a 404 lists the public paths
in). The pipeline routes (chat, embeddings, responses, messages) are Starlette routes run inside the
edge's guards (`gateway.server.edge.Guarded`: the in-flight cap, the body deadline, the request's
claims), which the app dispatches before FastAPI's middleware and router (`gateway.server.dispatch`:
their POSTs; any other method or path is the router's); the others are FastAPI routes whose handlers
reach the services through dependencies. Each handler lives in its API's module; the admin routes
are also guarded by `gateway.api.admin.AdminGuard`, before routing. The transparency pages come last
(the API paths are matched first), and only when they are on (`SLUICE_PAGES`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from gateway.api import admin, chat, embeddings, health, messages, metrics, models, pages, privacy, responses
from gateway.errors import render, render_anthropic
from gateway.server.edge import Guarded, Handler, Renderer

# (path, handler, the envelope its errors are rendered in)
PIPELINE: tuple[tuple[str, Handler, Renderer], ...] = (
    ("/v1/chat/completions", chat.completions, render),
    ("/v1/embeddings", embeddings.create, render),
    ("/v1/responses", responses.create, render),
    ("/v1/messages", messages.create, render_anthropic),
    ("/v1/messages/count_tokens", messages.count_tokens, render_anthropic),
)
API: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("GET", "/v1/models", models.list_models),
    ("GET", "/v1/models/{model_id:path}", models.get_model),
    ("GET", "/v1/privacy/catalog", privacy.catalog),
    ("GET", "/v1/privacy/policies", privacy.policies),
    ("GET", "/healthz", health.healthz),
    ("GET", "/readyz", health.readyz),
    ("GET", "/metrics", metrics.metrics),
    ("GET", "/admin/keys", admin.get_keys),
    ("POST", "/admin/keys", admin.post_key),
    ("DELETE", "/admin/keys/{name}", admin.delete_key),
    ("PATCH", "/admin/keys/{name}", admin.patch_key),
)
PAGES: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("GET", "/", pages.home),
    ("GET", "/catalog", pages.catalog),
    ("GET", "/static/sluice.css", pages.asset),
    ("GET", "/static/sluice.js", pages.asset),
    ("GET", pages.REPORT, pages.admin_report),
    ("POST", pages.LOGIN, pages.admin_login),
    ("POST", pages.LOGOUT, pages.admin_logout),
)


def add_routes(app: FastAPI, *, pages: bool) -> None:
    """Add the table to `app`, in its order (the app's own route list: nothing included lazily)."""
    for path, handler, renderer in PIPELINE:
        app.router.routes.append(Route(path, Guarded(handler, render=renderer), methods=["POST"]))
    for method, path, endpoint in (*API, *(PAGES if pages else ())):
        app.add_api_route(path, endpoint, methods=[method], response_model=None)
