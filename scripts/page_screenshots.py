"""Screenshots of the transparency pages, light and dark, for the README (docs/pages-*.png).

Run against a `sluice demo` started with a master key, after some traffic:
    SLUICE_MASTER_KEY=... sluice demo --port 8080 &
    python scripts/page_screenshots.py http://127.0.0.1:8080 "$SLUICE_MASTER_KEY"
Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package of the dev lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent.parent / "docs"
TRAFFIC = {
    "sk-sluice-demo": ["gpt-4o-mini", "claude-sonnet", "gemini-flash", "gemini-flash-free", "deepseek-chat"],
    "sk-sluice-demo-legal": ["gpt-4o-mini", "llama-local", "claude-sonnet"],
}


def traffic(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for key, models in TRAFFIC.items():
            for model in models * 3:
                body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
                http.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body)


def main(base: str, master: str) -> None:
    traffic(base)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
            page = context.new_page()
            page.goto(base + "/")
            page.screenshot(path=DOCS / f"pages-home-{scheme}.png")
            page.goto(base + "/catalog?provider=openai")
            page.screenshot(path=DOCS / f"pages-catalog-{scheme}.png")
            page.goto(base + "/admin/report")
            page.fill("#master_key", master)
            page.click("form.signin button[type=submit]")
            page.wait_for_selector("svg.timeline")
            page.screenshot(path=DOCS / f"pages-report-{scheme}.png", full_page=True)
            context.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
