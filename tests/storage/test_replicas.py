"""Several real `sluice serve` processes, one config, one PostgreSQL, one Redis: per-key limits,
circuit breakers and Retry-After holds hold across replicas, and a Redis that goes away (its port
blocked: the replicas reach it through a `TcpProxy` this test stops) costs no request, falls back
to per-process limits (shown by /readyz and /metrics) and is used again once it is back.

Every replica speaks to the same fake upstream (sluice_fakes) as a self-hosted vLLM. Each test
uses a Redis key prefix of its own and deletes only that prefix's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.core.auth import hash_key
from tests.conftest import ROOT, chat_body, port_open, require_service
from tests.helpers import until
from tests.storage.conftest import MASTER_KEY, TcpProxy, free_port, ledger_rows

REDIS = ("127.0.0.1", 6379)
KEYS = {name: f"sk-replicas-{name}-{secrets.token_hex(8)}" for name in ("rpm", "conc", "tpm", "free", "out")}
LIMITS = {"rpm": "rpm: 10", "conc": "max_concurrency: 2", "tpm": "tpm: 100", "free": "", "out": "rpm: 3"}


def config(fake_url: str) -> str:
    def model(name: str) -> str:
        return (
            f"  - name: {name}\n    deployments:\n      - {{provider: self_hosted, "
            f"channel: self_hosted.vllm, model: hosted_vllm/gpt-4o-mini, api_base: '{fake_url}/v1'}}\n"
        )

    def key(name: str) -> str:
        limits = f", {LIMITS[name]}" if LIMITS[name] else ""
        return f"  - {{name: {name}-team, key_hash: '{hash_key(KEYS[name])}'{limits}}}\n"

    keys = "".join(key(name) for name in KEYS)
    return (
        "server: {default_policy: no-training-only, on_violation: block}\nmodels:\n"
        + model("gpt-4o-mini")
        + model("flaky")
        + model("held")
        + "keys:\n"
        + keys
    )


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    if not port_open(*REDIS):
        require_service(f"Redis is not reachable on {REDIS[0]}:{REDIS[1]}")
    prefix = f"sluice-test-{secrets.token_hex(6)}"
    yield prefix
    client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        names = [n async for n in client.scan_iter(match=f"{prefix}:*")]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(free_port(), target=REDIS)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def spawn(name: str, env: dict[str, str], workdir: Path, workers: int) -> Replica:
    port, log = free_port(), workdir / f"{name}.log"
    command = [sys.executable, "-m", "gateway.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, f"http://127.0.0.1:{port}", process, log)


@contextlib.asynccontextmanager
async def replicas(
    workers: list[int], *, fake: FakeUpstream, pg_url: str, redis_url: str, prefix: str, workdir: Path
) -> AsyncIterator[list[Replica]]:
    """Real `sluice serve` processes (`workers[i]` uvicorn workers for the i-th) on one config,
    database and Redis; ready when yielded."""
    config_path = workdir / "sluice.yaml"
    config_path.write_text(config(fake.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")} | {
        "SLUICE_CONFIG": str(config_path),
        "SLUICE_DATABASE_URL": pg_url,
        "SLUICE_MASTER_KEY": MASTER_KEY,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_REDIS_PREFIX": prefix,
        "SLUICE_REDIS_TIMEOUT": "0.5",
        "SLUICE_BREAKER_FAILURES": "2",
        "SLUICE_METRICS_PUBLIC": "true",
        "SLUICE_LOG_LEVEL": "WARNING",
    }
    started: list[Replica] = []
    try:
        for i, count in enumerate(workers):
            started.append(
                spawn(f"r{i}", env | {"SLUICE_AUDIT_SPOOL": str(workdir / f"r{i}.spool")}, workdir, count)
            )
        async with httpx.AsyncClient(timeout=5) as http:
            for replica in started:

                async def ready(replica: Replica = replica) -> bool:
                    assert replica.process.poll() is None, replica.log_text()[-3000:]
                    try:
                        answer = await http.get(f"{replica.url}/readyz")
                    except httpx.TransportError:
                        return False
                    return answer.status_code == 200 and answer.json()["shared_state"]["status"] == "ok"

                await until(ready, f"replica {replica.name} to be ready with Redis", within=120)
        yield started
    finally:
        for replica in started:
            replica.process.terminate()
        for replica in started:
            try:
                await asyncio.to_thread(replica.process.wait, 20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                await asyncio.to_thread(replica.process.wait, 20)


async def metric(http: httpx.AsyncClient, replica: Replica, line_start: str) -> float | None:
    text = (await http.get(f"{replica.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def shows(
    http: httpx.AsyncClient, replica: Replica, line_start: str, ok: Callable[[float], bool]
) -> bool:
    """Whether the replica's /metrics has the sample `line_start` and its value passes `ok`."""
    value = await metric(http, replica, line_start)
    return value is not None and ok(value)


async def readyz(http: httpx.AsyncClient, replica: Replica) -> tuple[int, str]:
    answer = await http.get(f"{replica.url}/readyz")
    return answer.status_code, answer.json()["shared_state"]["status"]


async def chat(http: httpx.AsyncClient, replica: Replica, key: str, **body: object) -> httpx.Response:
    return await http.post(f"{replica.url}/v1/chat/completions", json=chat_body(**body), headers=auth(key))


@pytest.fixture
async def cluster(
    fake: FakeUpstream, pg_url: str, redis_prefix: str, redis_proxy: TcpProxy, tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with replicas(
        [1, 1, 1], fake=fake, pg_url=pg_url, redis_url=url, prefix=redis_prefix, workdir=tmp_path
    ) as started:
        yield started


async def test_limits_hold_across_replicas(
    fake: FakeUpstream, pg_url: str, redis_prefix: str, redis_proxy: TcpProxy, tmp_path: Path
) -> None:
    # The first replica runs two workers (`sluice serve --workers 2`): four processes share the limits.
    url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with (
        replicas(
            [2, 1, 1], fake=fake, pg_url=pg_url, redis_url=url, prefix=redis_prefix, workdir=tmp_path
        ) as cluster,
        httpx.AsyncClient(timeout=30) as http,
    ):
        # rpm 10: twenty requests at once, spread over the three replicas: exactly ten get through.
        answers = await asyncio.gather(*(chat(http, cluster[i % 3], "rpm") for i in range(20)))
        codes = [a.status_code for a in answers]
        assert codes.count(200) == 10 and codes.count(429) == 10, codes
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["x-ratelimit-limit-requests"] == "10"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(refused.headers["retry-after"]) <= 60

        # max_concurrency 2: two slow requests on two replicas hold both slots; a third is refused.
        slow = [
            asyncio.create_task(chat(http, cluster[i], "conc", content="[[fake:delay_ms=4000]]"))
            for i in (0, 1)
        ]
        await until(lambda: sum("delay_ms" in r.directives for r in fake.requests) == 2, "both slow calls")
        third = await chat(http, cluster[2], "conc")
        assert third.status_code == 429 and "in flight" in third.json()["error"]["message"]
        assert [(await s).status_code for s in slow] == [200, 200]
        assert (await chat(http, cluster[2], "conc")).status_code == 200  # both slots released

        # tpm 100, counted from streamed usage the clients did not ask for (about 51 tokens each).
        for replica in cluster[:2]:
            client = openai.AsyncOpenAI(
                api_key=KEYS["tpm"], base_url=f"{replica.url}/v1", http_client=http, max_retries=0
            )
            chunks = [c async for c in await client.chat.completions.create(**chat_body(), stream=True)]
            assert chunks and all(c.usage is None for c in chunks)  # Sluice's usage chunk kept back
        redis = aioredis.Redis(host=REDIS[0], port=REDIS[1])
        try:

            async def counted() -> bool:
                # One field a second, plus `s` (their sum) and `o` (the oldest second counted).
                counts = await redis.hgetall(f"{redis_prefix}:tokens:tpm-team")
                seconds = sum(int(v) for k, v in counts.items() if k not in (b"s", b"o"))
                return seconds >= 100 and int(counts[b"s"]) == seconds

            await until(counted, "both streams' tokens counted in Redis")
        finally:
            await redis.aclose()
        over = await chat(http, cluster[2], "tpm", stream=True)
        assert over.status_code == 429
        assert over.headers["x-ratelimit-remaining-tokens"] == "0"

    async def recorded() -> bool:
        rows = [r for r in await ledger_rows(pg_url) if r["key_name"] == "rpm-team"]
        return len(rows) == 20

    await until(recorded, "twenty ledger records for rpm-team")
    rows = [r for r in await ledger_rows(pg_url) if r["key_name"] == "rpm-team"]
    assert (
        sorted((r["status"], r["error_code"]) for r in rows)
        == [(200, None)] * 10 + [(429, "rate_limited")] * 10
    )


async def test_a_breaker_and_a_hold_reach_every_replica(cluster: list[Replica], fake: FakeUpstream) -> None:
    a, b, c = cluster
    async with httpx.AsyncClient(timeout=30) as http:
        # Two provider failures on replica a open flaky's circuit (SLUICE_BREAKER_FAILURES=2) ...
        for _ in range(2):
            failed = await chat(http, a, "free", model="flaky", content="[[fake:status=503]]")
            assert failed.status_code == 502
        state = 'sluice_circuit_breaker_state{deployment="flaky#0",state="open"}'
        for other in (b, c):
            await until(
                lambda other=other: shows(http, other, state, lambda v: v == 1.0), f"{other.name} opens"
            )
        # ... and b and c skip flaky without calling it, though they never saw it fail.
        calls = len(fake.requests)
        for other in (b, c):
            skipped = await chat(http, other, "free", model="flaky")
            assert skipped.status_code == 502 and "circuit open" in skipped.json()["error"]["message"]
        assert len(fake.requests) == calls

        # A 429 with Retry-After on replica b holds `held` on every replica.
        asked = await chat(http, b, "free", model="held", content="[[fake:status=429,retry_after=40]]")
        assert asked.status_code == 429
        hold = 'sluice_deployment_hold_seconds{deployment="held#0"}'
        for other in (a, c):
            await until(
                lambda other=other: shows(http, other, hold, lambda v: v > 30.0), f"{other.name} holds"
            )
        calls = len(fake.requests)
        for other in (a, c):
            waited = await chat(http, other, "free", model="held")
            assert waited.status_code == 429 and 30 <= int(waited.headers["retry-after"]) <= 40
        assert len(fake.requests) == calls


async def test_redis_away_costs_no_request_and_comes_back(
    cluster: list[Replica], redis_proxy: TcpProxy
) -> None:
    a, b, _ = cluster[0], cluster[1], cluster[2]
    async with httpx.AsyncClient(timeout=30) as http:
        await redis_proxy.stop()  # every connection to Redis dropped, and new ones refused
        # Requests sent at once, before any replica noticed: none fails because of it.
        answers = await asyncio.gather(*(chat(http, cluster[i % 3], "free") for i in range(9)))
        assert [x.status_code for x in answers] == [200] * 9
        for replica in (a, b):
            await until(
                lambda replica=replica: shows(http, replica, "sluice_shared_state_up", lambda v: v == 0.0),
                f"{replica.name} to report Redis away",
            )
            assert await readyz(http, replica) == (200, "degraded")  # still ready
        # Per-process limits meanwhile: rpm 3 holds on each replica on its own.
        for replica in (a, b):
            codes = [(await chat(http, replica, "out")).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]

        await redis_proxy.start()
        for replica in (a, b):
            await until(
                lambda replica=replica: shows(http, replica, "sluice_shared_state_up", lambda v: v == 1.0),
                f"{replica.name} to use Redis again",
            )
            assert await readyz(http, replica) == (200, "ok")
        # Shared again: the Redis window for `out` is empty (nothing was counted there while it was
        # away), and three requests over both replicas use it up.
        codes = [(await chat(http, (a, b)[i % 2], "out")).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
    for replica in (a, b):
        lines = replica.log_text().splitlines()
        assert sum("Redis at" in line and "unreachable" in line for line in lines) == 1, replica.log_text()
        assert sum("limits shared again" in line for line in lines) == 1
        assert "Traceback" not in replica.log_text()
