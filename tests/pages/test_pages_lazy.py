"""The pages' libraries (Jinja2, the views, the charts, the ledger report) load on a page's first
render, not when the app is built (`gateway.api.pages`): an app that serves only the API never loads
them, and the first page asked for still renders. In a fresh interpreter, since this one has them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_CONFIG

PAGE_MODULES = ("jinja2", "gateway.pages.views", "gateway.pages.charts", "gateway.storage.report")

SCRIPT = """
import asyncio, json, sys
from pathlib import Path
import httpx
from gateway.app import create_app
from gateway.settings import Settings

folder = Path(sys.argv[2])
settings = Settings(
    config=Path(sys.argv[1]), allow_simulate=True, fake_upstream_url="http://127.0.0.1:9",
    database_url=f"sqlite+aiosqlite:///{folder / 'sluice.db'}", audit_spool=folder / "audit.spool",
)
modules = sys.argv[3].split(",")

async def main() -> dict[str, object]:
    app = create_app(settings)
    built = [m for m in modules if m in sys.modules]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), client as c:
        ready = (await c.get("/readyz")).status_code
        before = [m for m in modules if m in sys.modules]
        home = await c.get("/")
        catalog = await c.get("/catalog")
        report = await c.get("/admin/report")
    return {
        "built": built, "ready": ready, "before": before, "home": home.status_code,
        "home_has_models": 'data-model="gpt-4o-mini"' in home.text, "catalog": catalog.status_code,
        "report": report.status_code, "after": [m for m in modules if m in sys.modules],
    }

print(json.dumps(asyncio.run(main())))
"""


def test_the_pages_libraries_load_on_the_first_page_and_the_pages_render(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(DEMO_CONFIG), str(tmp_path), ",".join(PAGE_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["built"] == [] and seen["before"] == [], seen  # not when built, nor for /readyz
    assert seen["ready"] == 200
    assert seen["home"] == 200 and seen["home_has_models"] and seen["catalog"] == 200
    assert seen["report"] == 200  # the sign-in form (no master key configured: sign-in is off)
    assert {"jinja2", "gateway.pages.views"} <= set(seen["after"]), seen
