"""The transparency pages: `GET /` (the configured models), `GET /catalog` (every channel side by
side) and `GET /admin/report` (the ledger as pictures, master key only), with the report's sign-in.

What belongs here: the handlers and `Pages`, the per-app state they share (the Jinja2 templates, the
stylesheet and script, the browser sessions, a small cache of rendered public pages). What a page
shows is built in `gateway.pages.views` and `gateway.pages.charts` from what `policies`,
`gateway.core` and `gateway.storage.report` already compute. Read-only, server-rendered, readable
without JavaScript, nothing loaded from anywhere but Sluice (a Content-Security-Policy says so to
the browser), no keys, key hashes or prompts. `SLUICE_PAGES=off`: none of these routes exist.

The report's sign-in posts the master key in a form (never a URL) and gets a session cookie
(`gateway.pages.session`); `/admin/report`, `/admin/login` and `/admin/logout` are the only
`/admin` paths `gateway.api.admin.AdminGuard` lets through without the master key header, because
they check the key, or the session, themselves. A bearer master key works too (curl).

Jinja2, the views, the charts and the ledger report are imported when a page is first rendered, not
when the app is built: about 35 ms of CPU on the way to ready that a gateway serving only the API
never needs back. The route table is the same either way (`gateway.api.routes`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from gateway.core.services import Services
from gateway.errors import SluiceError
from gateway.pages.session import COOKIE, PageSessions, Session
from gateway.storage.ledger import DB_ERRORS, describe

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger("sluice.pages")
REPORT, LOGIN, LOGOUT = "/admin/report", "/admin/login", "/admin/logout"
OWN_AUTH = frozenset({REPORT, LOGIN, LOGOUT})  # AdminGuard lets these through: they check for themselves
FORM_LIMIT = 4096
CACHE_LIMIT = 512  # rendered public pages: (page, filters, day); filters are checked, so the keys are few
WINDOWS = {
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
    "30d": (timedelta(days=30), timedelta(days=1)),
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    # Not `no-referrer`: with it a browser sends `Origin: null` on the sign-in form, which
    # `_same_origin` must refuse. Links to sources on other sites still get no referrer.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
ASSETS = {
    "/static/sluice.css": "text/css; charset=utf-8",
    "/static/sluice.js": "text/javascript; charset=utf-8",
}


class Pages:
    """One app's page state, built by `gateway.app.build_app` when the pages are on."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._env: Environment | None = None  # built on the first render (see the module header)
        master = services.settings.master_key
        self.sessions = PageSessions(
            master.get_secret_value() if master is not None else None,
            ttl_seconds=services.settings.pages_session_hours * 3600,
        )
        static = files("gateway").joinpath("static")
        self.assets = {path: static.joinpath(path.rsplit("/", 1)[1]).read_bytes() for path in ASSETS}
        self._cache: dict[tuple[str, ...], bytes] = {}

    def render(self, template: str, **context: Any) -> bytes:
        if self._env is None:
            self._env = _templates()
        return self._env.get_template(template).render(**context).encode()

    def cached(self, key: tuple[str, ...], build: Callable[[], bytes]) -> bytes:
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[key] = build()
        return found


def _templates() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("gateway", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _html(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "cache-control": "no-store", **(headers or {})},
    )


async def home(request: Request) -> Response:
    pages = _pages(request)
    services = pages.services
    day = services.today

    def build() -> bytes:
        from gateway.pages.views import home_view

        config = services.config
        view = home_view(
            services.router,
            services.policies,
            default_policy=list(config.server.default_policy),
            on_violation=config.server.on_violation,
            reroute_to={m.name: list(m.reroute_to) for m in config.models},
            day=day,
        )
        return pages.render("home.html", view=view, page="home", session=None)

    return _html(pages.cached(("home", day.isoformat()), build))


async def catalog(request: Request, provider: str | None = None, policy: str | None = None) -> Response:
    pages = _pages(request)
    services = pages.services
    day = services.today
    provider, policy = provider or None, policy or None
    problems = []
    if provider is not None and provider not in {c.provider for c in services.catalog}:
        problems.append("There is no provider with that id in the catalog; showing every provider.")
        provider = None
    if policy is not None and policy not in services.policies:
        problems.append("There is no policy with that name; showing every channel.")
        policy = None

    def build() -> bytes:
        from gateway.pages.views import catalog_view

        view = catalog_view(services.catalog, services.policies, provider=provider, policy=policy, day=day)
        return pages.render("catalog.html", view=view, page="catalog", problems=problems, session=None)

    if problems:
        return _html(build(), status=400)
    return _html(pages.cached(("catalog", provider or "", policy or "", day.isoformat()), build))


async def asset(request: Request) -> Response:
    path = request.url.path
    return Response(
        _pages(request).assets[path],
        media_type=ASSETS[path],
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )


# -- the report and its sign-in ---------------------------------------------------------------------
def _same_origin(request: Request) -> bool:
    """A form post from a page of this site: cross-site posts (CSRF) are refused. Browsers send
    `Sec-Fetch-Site` and `Origin` on form posts; a client that sends neither is no browser."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form (the sign-in and sign-out forms); anything else is empty."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    try:
        parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than any of our forms has
        return {}
    return {name: values[0] for name, values in parsed.items() if values}


def _sign_in_page(pages: Pages, *, status: int, message: str | None) -> Response:
    body = pages.render(
        "signin.html", page="report", session=None, message=message, enabled=pages.sessions.enabled
    )
    return _html(body, status=status)


async def _authorised(request: Request, pages: Pages) -> tuple[Session | None, SluiceError | None, bool]:
    """(the browser session, a refusal of the bearer key, whether the bearer master key was sent)."""
    session = pages.sessions.check(request.cookies.get(COOKIE))
    if session is not None:
        return session, None, False
    if "authorization" in request.headers or "x-api-key" in request.headers or "api-key" in request.headers:
        try:
            await pages.services.auth.master(request.headers, refusal="the report needs the master key")
        except SluiceError as exc:
            return None, exc, False
        return None, None, True
    return None, None, False


async def admin_report(request: Request, window: str = "24h") -> Response:
    pages = _pages(request)
    session, refused, bearer = await _authorised(request, pages)
    if refused is not None:  # a key in a header: a script, answered as the API answers (401, 403)
        raise refused
    if session is None and not bearer:  # nothing offered: the page is the sign-in form
        return _sign_in_page(pages, status=200, message=None)
    if window not in WINDOWS:
        window = "24h"
    span, step = WINDOWS[window]
    now = datetime.now(UTC)
    # Steps on round boundaries (whole hours, whole days), the last one holding now.
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    until = now - (now - epoch) % step + step
    since = until - span
    from gateway.pages import charts
    from gateway.storage import report as ledger_report

    storage = pages.services.storage
    context: dict[str, Any] = {
        "page": "report",
        "session": session,
        "window": window,
        "windows": list(WINDOWS),
    }
    context["summary"] = None
    context["unavailable"] = False
    if storage is not None:
        try:
            summary = await ledger_report.report(storage.db, since=since, until=until)
            activity = await ledger_report.activity(storage.db, since=since, until=until, step=step)
        except DB_ERRORS as exc:
            log.error("report page: the ledger database is unavailable: %s", describe(exc))
            context["unavailable"] = True
            return _html(pages.render("report.html", **context), status=503)
        context.update(
            summary=summary,
            since=since,
            until=until,
            timeline=charts.timeline(activity.steps, since=activity.since, step=step),
            decisions=summary.decisions,
            providers=charts.bars(summary.providers),
            channels=charts.bars(summary.channels),
            keys=charts.bars(activity.keys),
            blocked=charts.bars(activity.blocked_reasons, limit=8, width=1200, label_width=640),
            shares=[
                charts.Share("no-training channels", summary.served_no_training, summary.served),
                charts.Share(
                    "zero-retention channels (ZDR or self-hosted)",
                    activity.served_zero_retention,
                    summary.served,
                ),
            ],
        )
    return _html(pages.render("report.html", **context))


async def admin_login(request: Request) -> Response:
    pages = _pages(request)
    if not _same_origin(request):
        return _sign_in_page(
            pages, status=403, message="Sign-in refused: the form was not sent from this site."
        )
    token = pages.sessions.sign_in((await _form(request)).get("master_key", ""))
    if token is None:
        message = "That is not the master key." if pages.sessions.enabled else None
        return _sign_in_page(pages, status=401, message=message)
    response = RedirectResponse(REPORT, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        token,
        max_age=pages.sessions.ttl_seconds,
        path="/admin",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def admin_logout(request: Request) -> Response:
    pages = _pages(request)
    session = pages.sessions.check(request.cookies.get(COOKIE))
    offered = (await _form(request)).get("csrf", "")
    if session is None or not _same_origin(request) or not hmac.compare_digest(offered, session.csrf):
        return _sign_in_page(pages, status=403, message="Sign-out refused: the form was not this session's.")
    pages.sessions.sign_out(session)
    response = RedirectResponse(REPORT, status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(
        COOKIE, path="/admin", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
    return response
