"""The transparency pages in headless Chromium (Debian's `chromium`, driven by Playwright), against a
running `sluice demo`: every page renders, shows every demo model (the blocked and rerouted ones as
such), links each badge to its source, works with JavaScript off, logs no console error, asks no
host but Sluice for anything, and passes axe-core's accessibility rules in light and dark.

Chromium comes from the system (`apt-get install chromium`; Playwright's own download cannot work
here); axe-core from `scripts/fetch_axe.sh` (npm, integrity-checked). Without either the tests skip,
and CI (`SLUICE_TEST_REQUIRE_SERVICES=1`) turns that skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli.test_demo import sluice_script
from tests.conftest import AUTH, ROOT, chat_body, require_service
from tests.gateway.support import free_port, stop_process, wait_healthy

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(os.environ.get("SLUICE_TEST_AXE", ROOT / ".cache" / "axe-core-4.14.1" / "axe.min.js"))
MASTER = "master-key-for-the-browser-0123"
PAGES = ("/", "/catalog", "/admin/report")


@dataclass
class Demo:
    root: str
    host: str  # host:port, the only one the browser may talk to


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if not CHROMIUM.is_file():
        require_service(f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)")
    root = tmp_path_factory.mktemp("pages-demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(SLUICE_MASTER_KEY=MASTER, TMPDIR=str(root))
    log = root / "demo.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(sluice_script()), "demo", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, log)
        with httpx.Client(base_url=base, timeout=60) as http:  # a ledger to draw: every outcome
            for model in (
                "gpt-4o-mini",
                "claude-sonnet",
                "gemini-flash-free",
                "deepseek-chat",
                "llama-local",
            ):
                assert http.post("/v1/chat/completions", headers=AUTH, json=chat_body(model)).status_code in (
                    200,
                    403,
                )
        yield Demo(base, f"127.0.0.1:{port}")
    finally:
        stop_process(proc)


@dataclass
class Watch:
    """What a browser context did: console errors, uncaught errors, and every URL it requested."""

    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _context(browser: Any, watch: Watch, **options: Any) -> Any:
    context = browser.new_context(**options)
    context.on("request", lambda request: watch.urls.append(request.url))
    context.on("weberror", lambda error: watch.errors.append(str(error.error)))

    def console(message: Any) -> None:
        if message.type == "error":
            watch.errors.append(message.text)

    context.on("console", console)
    return context


def _sign_in(page: Any, demo: Demo) -> None:
    page.goto(demo.root + "/admin/report")
    page.fill("#master_key", MASTER)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("svg.timeline")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_every_page_renders_with_no_console_error_and_no_foreign_request(
    demo: Demo, browser: Any, javascript: bool
) -> None:
    watch = Watch()
    context = _context(browser, watch, java_script_enabled=javascript)
    try:
        page = context.new_page()
        for path in PAGES[:2]:
            response = page.goto(demo.root + path)
            assert response is not None and response.status == 200, path
            assert page.locator("main h1").count() == 1
        _sign_in(page, demo)
        assert "master" not in page.url and MASTER not in page.url, "the key never goes in a URL"
        assert page.locator("figure.chart").count() >= 5
    finally:
        context.close()
    assert watch.errors == []
    foreign = [u for u in watch.urls if urlsplit(u).scheme != "data" and urlsplit(u).netloc != demo.host]
    assert foreign == [], "only Sluice is asked for anything"
    assert any(u.endswith("/static/sluice.css") for u in watch.urls)


def test_home_shows_every_model_the_blocked_and_rerouted_ones_and_links_badges_to_sources(
    demo: Demo, browser: Any
) -> None:
    models = httpx.get(demo.root + "/v1/models", headers=AUTH).json()["data"]
    context = _context(browser, Watch(), java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(demo.root + "/")
        outcomes = {
            s.get_attribute("data-model"): s.get_attribute("data-outcome")
            for s in page.locator("section.model").all()
        }
        assert set(outcomes) == {m["id"] for m in models}
        assert outcomes["gemini-flash-free"] == "blocked"
        assert outcomes["deepseek-chat"] == "rerouted"
        blocked = page.locator("section[data-model=gemini-flash-free]")
        assert "blocked" in blocked.locator(".pill").inner_text()
        assert "trains" in blocked.locator(".why").inner_text().lower() or blocked.locator(".why li").count()
        rerouted = page.locator("section[data-model=deepseek-chat] .pill").inner_text()
        assert "rerouted to llama-local" in rerouted
        for model in models:
            section = page.locator(f"section[data-model='{model['id']}']")
            links = {
                (a.get_attribute("data-badge"), a.get_attribute("href"))
                for a in section.locator("a.badge").all()
            }
            for dep in model["privacy"]["deployments"]:
                for b in dep["badges"]:
                    if b["source"]:
                        assert (b["id"], b["source"]) in links, (model["id"], b["id"])
    finally:
        context.close()


def test_catalog_filters_without_javascript_and_in_place_with_it(demo: Demo, browser: Any) -> None:
    for javascript in (False, True):
        context = _context(browser, Watch(), java_script_enabled=javascript)
        try:
            page = context.new_page()
            page.goto(demo.root + "/catalog")
            total = page.locator("tr[data-channel]").count()
            assert total >= 40
            page.select_option("select[name=provider]", "openai")
            if not javascript:
                page.click("form.filters button[type=submit]")
                page.wait_for_url("**/catalog?provider=openai*")
            else:
                page.wait_for_url("**/catalog?provider=openai")
            rows = page.locator("tr[data-channel]:visible")
            channels = {r.get_attribute("data-channel") for r in rows.all()}
            assert channels >= {"openai.api", "openai.chatgpt"}
            assert all(c.startswith("openai.") for c in channels), channels
            assert page.locator("[data-shown]").inner_text() == str(len(channels))
        finally:
            context.close()


def test_report_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_it(demo: Demo, browser: Any) -> None:
    context = _context(browser, Watch())
    try:
        page = context.new_page()
        _sign_in(page, demo)
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
        assert MASTER not in cookie["value"]
        assert page.evaluate("document.cookie") == "", "not readable by scripts"
        page.click("form.logout button[type=submit]")
        page.wait_for_selector("form.signin")
        assert context.cookies() == []
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_pass_axe_core(demo: Demo, browser: Any, scheme: str) -> None:
    if not AXE.is_file():
        require_service(f"axe-core not found at {AXE} (run scripts/fetch_axe.sh)")
    axe = AXE.read_text()
    # bypass_csp: the pages' Content-Security-Policy rightly refuses the test's injected script.
    context = _context(browser, Watch(), color_scheme=scheme, bypass_csp=True)
    found: dict[str, list[str]] = {}
    checked = 0

    def check(page: Any, path: str) -> None:
        nonlocal checked
        page.add_script_tag(content=axe)
        result = page.evaluate(
            "() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']})"
        )
        checked += len(result["passes"])
        for violation in result["violations"]:
            found[f"{path} {violation['id']}"] = [str(n["target"]) for n in violation["nodes"][:3]]

    try:
        page = context.new_page()
        page.goto(demo.root + "/admin/report")
        check(page, "sign-in")
        _sign_in(page, demo)
        for path in ("/admin/report", "/", "/catalog", "/admin/report?window=7d"):
            page.goto(demo.root + path)
            check(page, path)
    finally:
        context.close()
    assert checked > 50, "axe ran its rules"
    assert found == {}
