"""`sluice audit report` counts the data paths requests used (DESIGN.md, Data paths): the ledger
records feature ids in `extra.features`, written by the pipeline, read by the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from gateway.settings import Settings
from gateway.storage.db import Database, audit_events
from gateway.storage.report import report
from tests.conftest import AUTH, chat_body
from tests.helpers import until
from tests.storage.conftest import app_on, asgi
from tests.storage.support import event, sluice, write_events


async def test_the_report_counts_requests_per_feature(db_url: str, db: Database, tmp_path: Path) -> None:
    events = [
        event(1, extra={"features": ["stored_response"]}),
        event(2, extra={"features": ["remote_mcp", "stored_response"]}, decision="blocked", status=403),
        event(3, extra={"store_false": True}),
        event(4),
    ]
    await write_events(db_url, tmp_path / "audit.spool", events)
    found = await report(db, since=datetime.now(UTC) - timedelta(days=1))
    assert found.features == {"stored_response": 2, "remote_mcp": 1}
    run = await sluice("audit", "report", "--json", url=db_url)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["features"] == {"stored_response": 2, "remote_mcp": 1}
    run = await sluice("audit", "report", url=db_url)
    assert "requests that used a data path, per feature: stored_response 2, remote_mcp 1" in run.stdout
    run = await sluice("audit", "report", "--csv", url=db_url)
    assert "feature,stored_response,2" in run.stdout


async def test_a_stored_response_reaches_the_ledger_as_its_feature_id(
    settings: Settings, db: Database
) -> None:
    app = app_on(settings)
    async with asgi(app) as http:
        reply = await http.post("/v1/chat/completions", headers=AUTH, json=chat_body(store=True))
        assert reply.headers["x-privacy-features"] == "stored_response"
        sink = app.state.sluice.audit
        await until(lambda: sink.backlog == 0 and sink.stats.written == 1, "the writer")
    async with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(audit_events))]
    assert [r["extra"] for r in rows] == [{"features": ["stored_response"]}]
    assert (await report(db)).features == {"stored_response": 1}
