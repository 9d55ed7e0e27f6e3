"""Every request that reached a decision writes exactly one ledger record, on SQLite and PostgreSQL.

Allowed, rerouted, blocked, upstream failure and a stream the client walked away from, each
through the real app (the database sink `create_app` builds from settings) in front of the fake
upstream. A canary string from the prompts never reaches any row, nor the spool.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx

from gateway.settings import Settings
from tests.conftest import AUTH, LEGAL_KEY, chat_body
from tests.helpers import served, until
from tests.storage.conftest import app_on, asgi, dump_tables, ledger_rows


def by_request(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["request_id"] not in found, f"two records for {row['request_id']}"
        found[row["request_id"]] = row
    return found


async def test_each_kind_of_request_writes_one_record(settings: Settings) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    app = app_on(settings)
    async with asgi(app) as http:
        allowed = await http.post("/v1/chat/completions", headers=AUTH, json=chat_body(content=canary))
        rerouted = await http.post(
            "/v1/chat/completions", headers=AUTH, json=chat_body("deepseek-chat", content=canary)
        )
        legal = {"authorization": f"Bearer {LEGAL_KEY}"}
        blocked = await http.post(
            "/v1/chat/completions", headers=legal, json=chat_body("gemini-flash-free", content=canary)
        )
        failed = await http.post(
            "/v1/chat/completions", headers=AUTH, json=chat_body(content=f"{canary} [[fake:status=503]]")
        )
        unauthenticated = await http.post(
            "/v1/chat/completions", headers={"authorization": "Bearer nope"}, json=chat_body(content=canary)
        )
        sink = app.state.sluice.audit
        await until(lambda: sink.backlog == 0 and sink.stats.written >= 4, "the writer to flush")
        ready = await http.get("/readyz")
    assert (allowed.status_code, rerouted.status_code, blocked.status_code) == (200, 200, 403)
    assert failed.status_code == 502
    assert unauthenticated.status_code == 401  # no decision, so no record
    assert ready.status_code == 200 and ready.json()["database"]["status"] == "ok"

    rows = await ledger_rows(settings.database_url)
    records = by_request(rows)
    assert len(rows) == 4
    ids = {
        name: r.headers["x-request-id"]
        for name, r in (
            ("allowed", allowed),
            ("rerouted", rerouted),
            ("blocked", blocked),
            ("failed", failed),
        )
    }
    assert set(records) == set(ids.values())

    row = records[ids["allowed"]]
    assert (row["decision"], row["status"], row["key_name"], row["endpoint"]) == (
        "allowed",
        200,
        "demo",
        "chat",
    )
    assert (row["provider"], row["channel"], row["requested_model"]) == (
        "openai",
        "openai.api",
        "gpt-4o-mini",
    )
    assert row["served_model"] == "gpt-4o-mini" and row["upstream_model"] == "openai/gpt-4o-mini"
    assert "training-opt-in" in row["badges"]
    assert row["policy"] == allowed.headers["x-privacy-policy"].split(", ")
    assert row["prompt_tokens"] is not None and row["attempts"] == 1 and row["simulated"] is True
    assert row["reasons"] == [] and row["error_code"] is None and row["stream"] is False

    row = records[ids["rerouted"]]
    assert (row["decision"], row["status"], row["requested_model"]) == ("rerouted", 200, "deepseek-chat")
    assert (row["provider"], row["channel"]) == ("self_hosted", "self_hosted.vllm")

    row = records[ids["blocked"]]
    assert (row["decision"], row["status"], row["key_name"]) == ("blocked", 403, "legal-demo")
    assert row["provider"] is None and row["channel"] is None and row["badges"] == []
    assert row["reasons"] and row["error_code"] == "no_compliant_deployment"
    assert "zero-retention" in row["policy"]

    row = records[ids["failed"]]
    assert (row["decision"], row["status"], row["error_code"]) == ("allowed", 502, "upstream_unavailable")
    assert row["provider"] == "openai"

    assert canary not in await dump_tables(settings.database_url)
    assert "sk-sluice-demo" not in await dump_tables(settings.database_url)
    assert not settings.audit_spool.exists() or canary not in settings.audit_spool.read_text()


async def test_stream_cancelled_by_the_client_writes_one_record(settings: Settings) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    app = app_on(settings)
    async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = chat_body(content=f"{canary} [[fake:stall_after=2]]", stream=True)
        async with http.stream("POST", "/v1/chat/completions", headers=AUTH, json=body) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            async for _ in response.aiter_bytes():
                break  # the first chunk arrived; the client walks away
        sink = app.state.sluice.audit

        async def recorded() -> bool:
            return sink.backlog == 0 and any(
                r["request_id"] == request_id for r in await ledger_rows(settings.database_url)
            )

        await until(recorded, "the cancelled stream's record")
        done = await http.post("/v1/chat/completions", headers=AUTH, json=chat_body(stream=True))
        assert done.status_code == 200
        await until(lambda: sink.backlog == 0 and sink.stats.written >= 2, "the second stream's record")
    rows = by_request(await ledger_rows(settings.database_url))
    assert len(rows) == 2
    row = rows[request_id]
    assert row["stream"] is True and row["client_cancelled"] is True
    assert (row["decision"], row["provider"], row["channel"]) == ("allowed", "openai", "openai.api")
    other = next(r for r in rows.values() if r["request_id"] != request_id)
    assert other["stream"] is True and other["client_cancelled"] is False and other["status"] == 200
    assert canary not in await dump_tables(settings.database_url)


async def test_concurrent_requests_chain_in_order(settings: Settings) -> None:
    count = 25
    app = app_on(settings)
    async with asgi(app) as http:
        replies = await asyncio.gather(
            *(http.post("/v1/chat/completions", headers=AUTH, json=chat_body()) for _ in range(count))
        )
        sink = app.state.sluice.audit
        await until(lambda: sink.backlog == 0 and sink.stats.written >= count, "the writer to flush")
    assert all(r.status_code == 200 for r in replies)
    rows = await ledger_rows(settings.database_url)
    assert [r["seq"] for r in rows] == list(range(1, count + 1))
    assert all(r["writer"] == sink.writer for r in rows)
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
