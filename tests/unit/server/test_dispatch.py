"""gateway/server/dispatch.py: the pipeline routes are dispatched before FastAPI's middleware and
router, and answer exactly as they did through them (errors, 431, 404/405, the metrics count)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.admin import AdminGuard
from gateway.api.routes import PIPELINE, add_routes
from gateway.errors import ModelNotFound, install_handlers
from gateway.server.dispatch import DispatchingApp, direct_routes
from gateway.server.edge import EdgeGuard, Guarded, Inbound
from gateway.server.request_body import MAX_HEADERS

PATH = "/v1/chat/completions"


class Counted:
    """Stands in for `GatewayMetrics.http`: the statuses counted for `GET /metrics`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def observe(self, path: str, status: int) -> None:
        self.seen.append((path, status))


class Passing:
    """A middleware the shortcut does not know: its presence sends every request through FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def app_with(handler: Callable[[Inbound], Any], *, shortcut: bool) -> tuple[DispatchingApp, Counted]:
    counted = Counted()
    services = SimpleNamespace(
        metrics=SimpleNamespace(http=counted),
        in_flight=SimpleNamespace(count=0),
        settings=SimpleNamespace(max_concurrency=10, body_timeout=5.0, pages=False),
    )
    app = DispatchingApp(redirect_slashes=False, openapi_url=None)
    app.state.sluice = services
    if not shortcut:
        app.add_middleware(Passing)
    app.add_middleware(AdminGuard, services=services)  # type: ignore[arg-type]
    app.add_middleware(EdgeGuard, services=services)  # type: ignore[arg-type]
    app.router.routes.append(Route(PATH, Guarded(handler), methods=["POST"]))
    install_handlers(app, endpoints=[("POST", PATH)])
    return app, counted


def seen_scope(into: list[Scope]) -> Callable[[Inbound], Any]:
    async def handler(inbound: Inbound) -> Response:
        into.append(inbound.request.scope)
        raise ModelNotFound("no such model")

    return handler


def test_every_pipeline_route_is_dispatched_directly() -> None:
    app = FastAPI()
    add_routes(app, pages=True)
    assert set(direct_routes(app.router.routes)) == {path for path, _, _ in PIPELINE}


def test_a_route_shadowed_by_an_earlier_one_or_with_parameters_is_left_to_the_router() -> None:
    async def other(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError

    guarded = Guarded(seen_scope([]))
    routes = [
        Route("/v1/{anything}", other, methods=["POST"]),
        Route("/v1/shadowed", guarded, methods=["POST"]),
        Route("/v1/items/{name}", guarded, methods=["POST"]),
        Route("/v1/read", guarded, methods=["GET"]),
    ]
    assert direct_routes(routes) == {}


@pytest.mark.parametrize("shortcut", [True, False])
def test_the_shortcut_is_taken_only_with_the_middleware_it_replicates(shortcut: bool) -> None:
    scopes: list[Scope] = []
    app, counted = app_with(seen_scope(scopes), shortcut=shortcut)
    response = TestClient(app).post(PATH, json={})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert ("router" not in scopes[0]) is shortcut  # the router never saw a dispatched request
    assert counted.seen == [(PATH, 404)]


def answers(handler: Callable[[Inbound], Any], **request: Any) -> list[tuple[int, Any, Any]]:
    """(status, body, (has a request id, statuses counted)): through the shortcut, then without it."""
    out = []
    for shortcut in (True, False):
        app, counted = app_with(handler, shortcut=shortcut)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.request(**{"method": "POST", "url": PATH, **request})
        marks = ("x-request-id" in response.headers, counted.seen)
        out.append((response.status_code, response.json(), marks))
    return out


def test_an_unexpected_error_is_a_500_envelope_as_before() -> None:
    async def broken(inbound: Inbound) -> Response:
        raise RuntimeError("a bug, with request content in its message")

    direct, routed = answers(broken)
    assert direct == routed
    status, body, (has_id, seen) = direct
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "request content" not in str(body)
    assert has_id and seen == []  # answered outside EdgeGuard, as ServerErrorMiddleware did


def test_the_unexpected_error_still_reaches_the_server() -> None:
    async def broken(inbound: Inbound) -> Response:
        raise RuntimeError("boom")

    app, _ = app_with(broken, shortcut=True)
    with pytest.raises(RuntimeError):
        TestClient(app).post(PATH, json={})


def test_an_error_with_a_handler_is_answered_by_it_and_counted() -> None:
    async def refused(inbound: Inbound) -> Response:
        raise HTTPException(status_code=409)

    direct, routed = answers(refused)
    assert direct == routed
    assert direct[0] == 409 and direct[1]["error"]["code"] == "invalid_value"
    assert direct[2] == (True, [(PATH, 409)])


def test_headers_past_the_edge_limits_are_refused_and_counted() -> None:
    many = {f"x-h{i}": "v" for i in range(MAX_HEADERS + 1)}
    direct, routed = answers(seen_scope([]), headers=many)
    assert direct == routed
    assert direct[0] == 431 and direct[1]["error"]["code"] == "headers_too_large"
    assert direct[2] == (False, [(PATH, 431)])


@pytest.mark.parametrize(("method", "url", "status"), [("GET", PATH, 405), ("POST", PATH + "/", 404)])
def test_other_methods_and_paths_are_the_router_s(method: str, url: str, status: int) -> None:
    scopes: list[Scope] = []
    app, counted = app_with(seen_scope(scopes), shortcut=True)
    response = TestClient(app).request(method, url)
    assert response.status_code == status and "error" in response.json()
    assert scopes == [] and counted.seen == [(url, status)]
