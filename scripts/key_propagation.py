"""How long a key revocation takes to reach another replica: two real `sluice serve` on one PostgreSQL.

    .venv/bin/python scripts/key_propagation.py [--revocations 200] [--cli 5] [--database-url URL]
        [--bound 10] [--json]

Starts two `sluice serve --config config/sluice.yaml` processes (A and B, 127.0.0.1, a master key)
on one PostgreSQL database: a fresh `sluice_keyprop_<random>` on 127.0.0.1:5432, dropped afterwards,
unless `--database-url` names one. Then, for each of `--revocations` keys: create it through A's
`POST /admin/keys`, use it once on B (`GET /v1/models`: 200, so B has it cached), revoke it through
A's `DELETE /admin/keys/{name}` and poll B as fast as one connection can until it answers 401. The
delay is from A's answer to the revocation (the transaction, with its NOTIFY, has committed) to the
first 401 on B; each poll is one request, so the figure includes up to one request's latency.
`--cli N` revokes N more keys with `sluice keys revoke NAME` (a process of its own) and measures from
that process's exit. Prints p50 / p99 / max in ms (or JSON); exits 1 if any revocation took longer
than `--bound` seconds. Traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-sluice-keyprop-master-" + secrets.token_hex(8)
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(url: str, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "SLUICE_DATABASE_URL": url,
        "SLUICE_MASTER_KEY": MASTER_KEY,
        "SLUICE_AUDIT_SPOOL": str(spool),
        "SLUICE_CONFIG": str(ROOT / "config" / "sluice.yaml"),
        "SLUICE_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def replica(url: str, workdir: Path, name: str) -> Iterator[str]:
    """`sluice serve` as a process of its own; yields its base URL once /readyz says the key
    change channel is up."""
    port = free_port()
    log = (workdir / f"{name}.log").open("w")
    command = [sys.executable, "-m", "gateway.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment(url, workdir / f"{name}.spool"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"replica {name} exited: {(workdir / f'{name}.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
                ready = httpx.get(f"{base}/readyz", timeout=1).json()
                if ready["keys"]["status"] == "ok":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {name} never became ready")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    name = f"sluice_keyprop_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def wait_refused(b: httpx.AsyncClient, key: str, bound: float) -> float:
    """Poll B until the key gets 401; the moment it did (perf_counter), or inf past the bound."""
    deadline = time.perf_counter() + bound
    while time.perf_counter() < deadline:
        answer = await b.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        if answer.status_code == 401:
            return time.perf_counter()
        if answer.status_code != 200:
            raise RuntimeError(f"unexpected answer from B: {answer.status_code} {answer.text[:200]}")
    return float("inf")


async def create_and_warm(a: httpx.AsyncClient, b: httpx.AsyncClient, name: str) -> str:
    created = await a.post("/admin/keys", headers=MASTER, json={"name": name})
    if created.status_code != 201:
        raise RuntimeError(f"creating {name}: {created.status_code} {created.text[:200]}")
    key: str = created.json()["key"]
    for _ in range(100):  # B learns the key from the create message, or looks it up (a 503 past the cap)
        used = await b.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        if used.status_code == 200:
            return key
        if used.status_code != 503:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"B refused a new key: {used.status_code}")


def cli_revoke(url: str, name: str) -> None:
    env = environment(url, Path(tempfile.gettempdir()) / "keyprop-cli.spool")
    command = [sys.executable, "-m", "gateway.cli.main", "keys", "revoke", name]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)


async def measure(url: str, revocations: int, cli: int, bound: float, workdir: Path) -> dict[str, object]:
    with replica(url, workdir, "a") as base_a, replica(url, workdir, "b") as base_b:
        async with (
            httpx.AsyncClient(base_url=base_a, timeout=30) as a,
            httpx.AsyncClient(base_url=base_b, timeout=30) as b,
        ):
            api: list[float] = []
            for i in range(revocations):
                key = await create_and_warm(a, b, f"prop-{i}")
                revoked = await a.delete(f"/admin/keys/prop-{i}", headers=MASTER)
                committed = time.perf_counter()
                if revoked.status_code != 200:
                    raise RuntimeError(f"revoking prop-{i}: {revoked.status_code}")
                api.append(await wait_refused(b, key, bound) - committed)
            by_cli: list[float] = []
            for i in range(cli):
                key = await create_and_warm(a, b, f"cli-{i}")
                await asyncio.to_thread(cli_revoke, url, f"cli-{i}")
                committed = time.perf_counter()
                by_cli.append(await wait_refused(b, key, bound) - committed)
                # A, which never cached this key's revocation itself, refuses it too.
                answer = await a.get("/v1/models", headers={"authorization": f"Bearer {key}"})
                if answer.status_code != 401:
                    raise RuntimeError("replica A still accepts a key revoked by the CLI")
            metrics_b = (await b.get("/metrics", headers=MASTER)).text
    return {"admin_api": summary(api), "cli": summary(by_cli), "b_metrics": key_metrics(metrics_b)}


def summary(delays: list[float]) -> dict[str, object]:
    if not delays:
        return {"n": 0}
    ms = sorted(d * 1000 for d in delays)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(ms[-1], 2),
        "within_bound": all(d != float("inf") for d in ms),
    }


def key_metrics(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("sluice_key_cache_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--cli", type=int, default=5)
    parser.add_argument("--bound", type=float, default=10.0, help="seconds; longer fails the run")
    parser.add_argument("--database-url", help="an existing PostgreSQL database (default: a scratch one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    async def run() -> dict[str, object]:
        with tempfile.TemporaryDirectory(prefix="keyprop-") as tmp:
            if args.database_url:
                return await measure(args.database_url, args.revocations, args.cli, args.bound, Path(tmp))
            async with scratch_database() as url:
                return await measure(url, args.revocations, args.cli, args.bound, Path(tmp))

    result = asyncio.run(run())
    ok = all(bool(part.get("within_bound", True)) for part in (result["admin_api"], result["cli"]))  # type: ignore[union-attr]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for label in ("admin_api", "cli"):
            print(f"{label}: {result[label]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
