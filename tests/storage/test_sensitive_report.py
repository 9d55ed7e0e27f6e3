"""`sluice audit report` counts the requests each sensitive-content detector tightened (and, in report
mode, would have tightened); the ledger holds detector ids only, never the matched text."""

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

FAKE_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id


async def test_the_report_counts_requests_per_detector(db_url: str, db: Database, tmp_path: Path) -> None:
    events = [
        event(1, extra={"sensitive": ["secrets"]}, decision="rerouted"),
        event(2, extra={"sensitive": ["pii", "secrets"]}, decision="blocked", status=403, provider=None),
        event(3, extra={"sensitive_report": ["pii"]}),
        event(4),
    ]
    await write_events(db_url, tmp_path / "audit.spool", events)
    found = await report(db, since=datetime.now(UTC) - timedelta(days=1))
    assert found.sensitive == {"secrets": 2, "pii": 1}
    assert found.sensitive_report == {"pii": 1}
    run = await sluice("audit", "report", "--json", url=db_url)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["sensitive"] == {"secrets": 2, "pii": 1}
    run = await sluice("audit", "report", url=db_url)
    assert "requests tightened by sensitive content, per detector: secrets 2, pii 1" in run.stdout
    assert "requests that report mode would have tightened, per detector: pii 1" in run.stdout
    run = await sluice("audit", "report", "--csv", url=db_url)
    assert "sensitive,secrets,2" in run.stdout


async def test_a_tightened_request_reaches_the_ledger_as_ids_only(settings: Settings, db: Database) -> None:
    app = app_on(settings)
    async with asgi(app) as http:
        reply = await http.post(
            "/v1/chat/completions", headers=AUTH, json=chat_body(content=f"key {FAKE_KEY}")
        )
        assert reply.headers["x-privacy-sensitive"] == "secrets"
        sink = app.state.sluice.audit
        await until(lambda: sink.backlog == 0 and sink.stats.written == 1, "the writer")
    async with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(audit_events))]
    assert [r["extra"] for r in rows] == [{"sensitive": ["secrets"]}]
    assert FAKE_KEY not in repr(rows)
    assert (await report(db)).sensitive == {"secrets": 1}
