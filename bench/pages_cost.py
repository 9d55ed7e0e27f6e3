"""What the transparency pages cost the API paths, in process: CPU per request with the pages on and
off (`SLUICE_PAGES`), interleaved rounds, same app otherwise.

    .venv/bin/python bench/pages_cost.py [requests per round] [rounds]

Each request goes through the whole ASGI app (EdgeGuard, AdminGuard, the route table, the handler):
a chat completion refused for a missing key (no upstream call: what is measured is the app's own
path), `GET /v1/models` with the demo key, and `GET /` itself (served from the page cache). CPU time
(`time.process_time`), not wall-clock, so that other load on the machine matters less.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "chat 401": ("POST", "/v1/chat/completions", {}, b'{"model": "gpt-4o-mini", "messages": []}'),
    "models": ("GET", "/v1/models", {"authorization": "Bearer sk-sluice-demo"}, b""),
    "page /": ("GET", "/", {}, b""),
}


async def measure(pages: bool, n: int, folder: Path) -> dict[str, float]:
    settings = Settings(
        config=ROOT / "config" / "demo.yaml",
        allow_simulate=True,
        fake_upstream_url="http://127.0.0.1:9",
        database_url=f"sqlite+aiosqlite:///{folder / f'{pages}.db'}",
        audit_spool=folder / f"{pages}.spool",
        pages=pages,
    )
    app = create_app(settings, audit=MemoryAuditSink())
    out: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test") as http:
            for name, (method, path, headers, body) in CASES.items():
                if name.startswith("page") and not pages:
                    continue
                for _ in range(50):
                    await http.request(method, path, headers=headers, content=body)
                start = time.process_time()
                for _ in range(n):
                    await http.request(method, path, headers=headers, content=body)
                out[name] = (time.process_time() - start) / n * 1e6
    return out


async def main(n: int, rounds: int) -> None:
    results: dict[tuple[bool, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for pages in (False, True) if i % 2 == 0 else (True, False):  # neither always goes first
                for name, us in (await measure(pages, n, Path(tmp))).items():
                    results.setdefault((pages, name), []).append(us)
    for name in CASES:
        off = results.get((False, name))
        on = results[(True, name)]
        shown = f"off {statistics.median(off):7.1f} us  " if off else " " * 19
        print(f"{name:10} {shown}on {statistics.median(on):7.1f} us  (CPU per request, median of {rounds})")


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    )
