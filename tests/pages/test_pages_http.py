"""The transparency pages over HTTP, in process (the browser tests are in `test_browser.py`): what
each page says, the report's sign-in and session, `SLUICE_PAGES=off`, and that no secret shows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.pages import charts
from gateway.pages.session import COOKIE, PageSessions
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, chat_body

MASTER = "master-key-for-the-pages-0123"
BASE = "http://sluice.test"
SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def _settings(fake: FakeUpstream, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        config=DEMO_CONFIG,
        allow_simulate=True,
        fake_upstream_url=fake.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        audit_spool=tmp_path / "audit.spool",
        master_key=MASTER,
        **extra,  # type: ignore[arg-type]
    )


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture
async def web(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(_settings(fake, tmp_path)):
        yield http


async def test_home_shows_every_model_with_its_outcome_and_badges_linked_to_sources(
    web: httpx.AsyncClient,
) -> None:
    page = await web.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    models = (await web.get("/v1/models", headers=AUTH)).json()["data"]
    outcomes = dict(re.findall(r'data-model="([^"]+)" data-outcome="([^"]+)"', page.text))
    assert set(outcomes) == {m["id"] for m in models}
    assert outcomes["gemini-flash-free"] == "blocked"
    assert outcomes["deepseek-chat"] == "rerouted"
    assert outcomes["gpt-4o-mini"] == "allowed"
    links = set(re.findall(r'<a class="badge [a-z]+" href="([^"]+)"[^>]*data-badge="([^"]+)"', page.text))
    for model in models:
        for dep in model["privacy"]["deployments"]:
            for b in dep["badges"]:
                if b["source"]:
                    assert (b["source"], b["id"]) in links, (model["id"], b["id"])
    assert "operator's word (attested)" in page.text  # gemini-flash's paid_tier attestation


async def test_catalog_compares_every_channel_and_filters_without_javascript(web: httpx.AsyncClient) -> None:
    everything = await web.get("/catalog")
    channels = (await web.get("/v1/privacy/catalog")).json()["channels"]
    shown = re.findall(r'data-channel="([^"]+)"', everything.text)
    assert sorted(shown) == sorted(c["id"] for c in channels)
    assert shown.index("openai.chatgpt") < shown.index("openai.api"), "consumer product beside the API"
    google = await web.get("/catalog", params={"provider": "google"})
    assert {c.split(".")[0] for c in re.findall(r'data-channel="([^"]+)"', google.text)} == {"google"}
    zero = await web.get("/catalog", params={"policy": "zero-retention"})
    passing = re.findall(r'data-channel="([^"]+)"', zero.text)
    assert "self_hosted.vllm" in passing and "openai.chatgpt" not in passing and "openai.api" not in passing
    unknown = await web.get("/catalog", params={"provider": "nobody"})
    assert unknown.status_code == 400 and "no provider with that id" in unknown.text


async def test_pages_are_off_with_sluice_pages_off(fake: FakeUpstream, tmp_path: Path) -> None:
    async for http in _client(_settings(fake, tmp_path, pages=False)):
        for path in ("/", "/catalog", "/static/sluice.css"):
            assert (await http.get(path)).status_code == 404, path
        # /admin again refuses before routing, as for every other /admin path
        assert (await http.get("/admin/report")).status_code == 401
        assert (await http.post("/admin/login", content="master_key=x", headers=FORM)).status_code == 401


async def _sign_in(web: httpx.AsyncClient, key: str = MASTER, **headers: str) -> httpx.Response:
    headers = {**FORM, **SAME_SITE, **headers}
    return await web.post("/admin/login", content=f"master_key={key}", headers=headers)


async def test_sign_in_sets_a_strict_httponly_cookie_and_logout_ends_it(web: httpx.AsyncClient) -> None:
    form = await web.get("/admin/report")
    assert form.status_code == 200 and 'action="/admin/login"' in form.text and "Sign out" not in form.text
    assert (await _sign_in(web, "not-the-master-key-000")).status_code == 401
    crowded = "&".join(f"f{i}=x" for i in range(20)) + f"&master_key={MASTER}"
    assert (await _sign_in(web, crowded)).status_code == 401, "a form with too many fields is no sign-in"
    assert COOKIE not in web.cookies
    signed = await _sign_in(web)
    assert signed.status_code == 303 and signed.headers["location"] == "/admin/report"
    cookie = signed.headers["set-cookie"]
    assert MASTER not in cookie
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/admin", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower(), "plain http: a Secure cookie would never come back"
    report = await web.get("/admin/report")
    assert report.status_code == 200 and "Requests over time" in report.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', report.text)
    assert csrf is not None
    refused = await web.post("/admin/logout", content="csrf=wrong", headers={**FORM, **SAME_SITE})
    assert refused.status_code == 403
    assert "Requests over time" in (await web.get("/admin/report")).text, "a forged sign-out changes nothing"
    token = web.cookies[COOKIE]
    out = await web.post("/admin/logout", content=f"csrf={csrf.group(1)}", headers={**FORM, **SAME_SITE})
    assert out.status_code == 303
    web.cookies.set(COOKIE, token, domain="sluice.test", path="/admin")  # a copy kept from before
    assert "Requests over time" not in (await web.get("/admin/report")).text


async def test_cross_site_sign_in_is_refused(web: httpx.AsyncClient) -> None:
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"origin": "null"}):
        answer = await web.post("/admin/login", content=f"master_key={MASTER}", headers={**FORM, **headers})
        assert answer.status_code == 403, headers
        assert "set-cookie" not in answer.headers


async def test_report_with_a_bearer_key_counts_what_the_ledger_holds(web: httpx.AsyncClient) -> None:
    assert (await web.get("/admin/report", headers=AUTH)).status_code == 403, "a client key is not enough"
    for model in ("gpt-4o-mini", "gemini-flash-free", "deepseek-chat"):
        await web.post("/v1/chat/completions", headers=AUTH, json=chat_body(model))
    master = {"authorization": f"Bearer {MASTER}"}
    for _ in range(500):  # the ledger writes in the background: poll, bounded
        page = await web.get("/admin/report", headers=master)
        if "<strong>3</strong> requests" in page.text:
            break
    else:
        raise AssertionError("the report never counted the three requests")
    for shown in ("<strong>1</strong> allowed", "<strong>1</strong> rerouted", "<strong>1</strong> blocked"):
        assert shown in page.text
    assert "Gemini API (free tier)" in page.text, "the blocked request's reason"
    assert "<svg" in page.text and 'class="s-blocked"' in page.text


async def test_no_page_shows_keys_key_hashes_or_prompts(web: httpx.AsyncClient) -> None:
    secret_prompt = "my-very-private-prompt-text"
    await web.post("/v1/chat/completions", headers=AUTH, json=chat_body("gpt-4o-mini", secret_prompt))
    await _sign_in(web)
    for path in ("/", "/catalog", "/admin/report", "/admin/report?window=30d"):
        text = (await web.get(path)).text
        for secret in (MASTER, DEMO_KEY, "sha256:", "1c590839af894cf25f9a5fe06929af05", secret_prompt):
            assert secret not in text, (path, secret)


def test_a_session_expires_and_a_new_master_key_ends_every_session() -> None:
    now = [1_000_000.0]
    sessions = PageSessions(MASTER, ttl_seconds=60, clock=lambda: now[0])
    token = sessions.sign_in(MASTER)
    assert token is not None and sessions.check(token) is not None
    assert sessions.sign_in(MASTER[:-1] + "x") is None
    assert PageSessions(MASTER + "-rotated", ttl_seconds=60, clock=lambda: now[0]).check(token) is None
    nonce, expires, signature = token.split(".")
    assert sessions.check(f"{nonce}.{int(expires) + 3600}.{signature}") is None, "expiry is signed"
    now[0] += 61
    assert sessions.check(token) is None
    assert PageSessions(None, ttl_seconds=60).sign_in("") is None


def test_sluice_pages_off_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PAGES", "off")
    assert Settings().pages is False
    monkeypatch.delenv("SLUICE_PAGES")
    assert Settings().pages is True


def test_timeline_columns_stack_by_decision_up_to_the_busiest_step() -> None:
    since = datetime(2026, 12, 1, tzinfo=UTC)
    chart = charts.timeline(
        [{"allowed": 2, "blocked": 2}, {}, {"rerouted": 1}], since=since, step=timedelta(hours=1)
    )
    first, empty, last = chart.columns
    assert [s.series for s in first.segments] == ["allowed", "blocked"]
    assert sum(s.height for s in first.segments) == pytest.approx(chart.plot_bottom - chart.plot_top)
    assert first.segments[1].y == pytest.approx(chart.plot_top), "the busiest step reaches the top"
    assert empty.segments == [] and last.total == 1 and last.start == since + timedelta(hours=2)
    bars = charts.bars({"a": 1, "b": 4}, limit=1)
    assert [b.label for b in bars.bars] == ["b"] and bars.rest == 1 and bars.rows == [("b", 4), ("a", 1)]
