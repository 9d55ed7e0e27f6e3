"""The key cache (gateway/storage/key_cache.py): database keys answered from memory, changes pushed.

On SQLite and PostgreSQL: repeated requests with one key cost one lookup; a revocation made by
another process (`sluice keys revoke`) is seen; a flood of unknown keys stays under the lookup cap
while a valid key is served. On PostgreSQL: the LISTEN connection terminated from the server's side
degrades to the fallback time-to-live (shown in /readyz and /metrics), within which a revocation
still applies, and the channel comes back. Two real `sluice serve` processes are in
test_key_replicas.py.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from gateway.settings import Settings
from gateway.storage.key_channels import LISTENER_NAME
from tests.conftest import ROOT, chat_body
from tests.helpers import until
from tests.storage.conftest import MASTER, PG_HOST, PG_PORT, app_on, asgi


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of a /metrics exposition (0 when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def scrape(http: httpx.AsyncClient, name: str, labels: str = "") -> float:
    answer = await http.get("/metrics", headers=MASTER)
    assert answer.status_code == 200
    return metric(answer.text, name, labels)


async def lookups(http: httpx.AsyncClient, event: str = "database") -> float:
    return await scrape(http, "sluice_key_cache_events_total", f'event="{event}"')


async def models(http: httpx.AsyncClient, key: str) -> int:
    return (await http.get("/v1/models", headers=bearer(key))).status_code


def revoke_in_another_process(url: str, name: str) -> subprocess.CompletedProcess[str]:
    """`sluice keys revoke NAME` as a process of its own (its own connection, its own pid)."""
    env = {"SLUICE_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "keys", "revoke", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_database_key_is_looked_up_once(settings: Settings) -> None:
    async with asgi(app_on(settings)) as http:
        key = (await http.post("/admin/keys", headers=MASTER, json={"name": "team"})).json()["key"]
        served = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
        assert served.status_code == 200
        before = await lookups(http)
        for _ in range(20):
            assert await models(http, key) == 200
        # Filled on first use; on SQLite a ledger batch committed meanwhile costs one more lookup.
        assert await lookups(http) - before <= 1
        assert await lookups(http, "hit") >= 19
        ready = (await http.get("/readyz")).json()
        assert ready["keys"]["status"] == "ok"


async def test_requests_that_miss_together_share_one_lookup(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        return  # SQLite is where every commit (the ledger's too) makes the cache stale
    async with asgi(app_on(settings)) as http:
        key = (await http.post("/admin/keys", headers=MASTER, json={"name": "busy"})).json()["key"]
        assert await models(http, key) == 200
        # Another commit to the file: every cached entry is stale, and 50 requests arrive at once.
        assert (await http.post("/admin/keys", headers=MASTER, json={"name": "other"})).status_code == 201
        before = await lookups(http)
        assert await asyncio.gather(*(models(http, key) for _ in range(50))) == [200] * 50
        assert await lookups(http) - before <= 2  # one, plus one if a ledger batch committed meanwhile
        assert await lookups(http, "shared") >= 45


async def test_sqlite_sees_a_revocation_by_another_process(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        return  # PostgreSQL: test_key_replicas.py, through LISTEN/NOTIFY
    async with asgi(app_on(settings)) as http:
        key = (await http.post("/admin/keys", headers=MASTER, json={"name": "contractor"})).json()["key"]
        assert await models(http, key) == 200
        assert await models(http, key) == 200  # now cached
        done = await asyncio.to_thread(revoke_in_another_process, settings.database_url, "contractor")
        assert done.returncode == 0, done.stderr
        # The very next request: PRAGMA data_version moved when the other process committed.
        assert await models(http, key) == 401


async def test_an_unknown_key_flood_stays_under_the_lookup_cap(settings: Settings) -> None:
    flood_settings = Settings.model_validate({**settings.model_dump(), "unknown_key_lookups_per_second": 20})
    async with asgi(app_on(flood_settings)) as http:
        # The negative cache: an unknown key is looked up once, then answered from memory.
        strangers = [f"sk-sluice-{secrets.token_urlsafe(24)}" for _ in range(5)]
        assert [await models(http, k) for k in strangers] == [401] * 5
        before = await lookups(http, "unknown_database")
        assert [await models(http, k) for k in strangers] == [401] * 5
        assert await lookups(http, "unknown_database") == before
        assert await lookups(http, "unknown_hit") == 5

        # More keys in use than unknown lookups allowed per second: all were cached before the flood.
        keys = [
            (await http.post("/admin/keys", headers=MASTER, json={"name": f"steady-{i}"})).json()["key"]
            for i in range(25)
        ]

        async def served(key: str) -> bool:
            return await models(http, key) == 200

        # A new key is fetched by name on its create message; until then its first use is an
        # unknown-key lookup, which past the cap is a 503 to retry.
        for k in keys:
            await until(lambda k=k: served(k), "a new key to be served")  # type: ignore[misc]
        before = await lookups(http, "unknown_database")
        throttled_before = await lookups(http, "throttled")
        started = time.monotonic()
        answers: dict[int, int] = {}
        valid: list[int] = []
        for round_ in range(20):
            random_keys = [f"sk-sluice-{secrets.token_urlsafe(24)}" for _ in range(100)]
            for status in await asyncio.gather(*(models(http, k) for k in random_keys)):
                answers[status] = answers.get(status, 0) + 1
            if round_ == 10:
                # A change mid-flood (SQLite: every cached entry goes stale): the keys in use are
                # looked up again without competing with the flood for lookups.
                assert (
                    await http.post("/admin/keys", headers=MASTER, json={"name": "new"})
                ).status_code == 201
            valid += await asyncio.gather(*(models(http, k) for k in keys))
        elapsed = time.monotonic() - started
        queried = await lookups(http, "unknown_database") - before
        throttled = await lookups(http, "throttled") - throttled_before
    assert sum(answers.values()) == 2000 and set(answers) <= {401, 503}, answers
    assert valid == [200] * 25 * 20, "the valid keys are served throughout"
    # A token bucket of 20 per second, holding at most one second's worth.
    assert queried <= 20 * (elapsed + 1), (queried, elapsed)
    assert queried + throttled >= 2000 - 10


async def test_the_listen_connection_killed(settings: Settings, tmp_path: Path) -> None:
    if not settings.database_url.startswith("postgresql"):
        return  # SQLite has no channel to lose
    ttl = 1.0
    url = make_url(settings.database_url)
    ours = Settings.model_validate({**settings.model_dump(), "key_cache_fallback_ttl": ttl})
    admin: asyncpg.Connection = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=url.username, database="postgres"
    )
    try:
        async with asgi(app_on(ours)) as http:

            async def channel(state: str) -> bool:
                return (await http.get("/readyz")).json()["keys"]["status"] == state

            async def refused(key: str) -> bool:
                return await models(http, key) == 401

            await until(lambda: channel("ok"), "the key change channel to come up")
            created = [
                (await http.post("/admin/keys", headers=MASTER, json={"name": f"k{i}"})).json()["key"]
                for i in range(3)
            ]
            # Hold a few pooled connections, so requests need no new one while connections are refused.
            await asyncio.gather(*(models(http, k) for k in created * 3))
            revoker = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=url.username, database=url.database
            )
            await admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = $2",
                LISTENER_NAME,
                url.database,
            )
            assert killed == 1
            await until(lambda: channel("degraded"), "/readyz to say the channel is down")
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and "reconnecting" in ready.json()["keys"]["detail"]
            assert await scrape(http, "sluice_key_cache_channel_up") == 0
            assert await scrape(http, "sluice_key_cache_ttl_seconds") == ttl

            # Revoked behind the gateway's back (no notification can reach it now): refused within
            # the time-to-live; a valid key keeps working meanwhile.
            assert await models(http, created[0]) == 200
            await revoker.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'k0'")
            await revoker.close()
            await until(
                lambda: refused(created[0]), "the revocation within the fallback bound", within=ttl + 10
            )
            assert await channel("degraded")
            assert await models(http, created[1]) == 200

            # The channel comes back: /readyz and /metrics say so, and a revocation is pushed again.
            await admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
            await until(lambda: channel("ok"), "the key change channel to come back")
            assert await scrape(http, "sluice_key_cache_channel_up") == 1
            assert await models(http, created[2]) == 200
            done = await asyncio.to_thread(revoke_in_another_process, settings.database_url, "k2")
            assert done.returncode == 0, done.stderr
            await until(lambda: refused(created[2]), "the revocation, pushed")
            assert await models(http, created[1]) == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        await admin.close()
