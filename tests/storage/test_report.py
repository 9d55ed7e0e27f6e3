"""`sluice audit report` and `tail`: counts, the no-training share and every blocked request's reasons."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.report import report
from tests.conftest import AUTH, LEGAL_KEY, chat_body
from tests.helpers import until
from tests.storage.conftest import app_on, asgi
from tests.storage.support import event, sluice, write_events

LEGAL = {"authorization": f"Bearer {LEGAL_KEY}"}
TRAFFIC = (
    (AUTH, "gpt-4o-mini"),
    (AUTH, "gpt-4o-mini"),
    (AUTH, "claude-sonnet"),
    (AUTH, "deepseek-chat"),
    (AUTH, "gemini-flash-free"),
    (LEGAL, "gemini-flash-free"),
    (LEGAL, "gpt-4o-mini"),
    (LEGAL, "llama-local"),
)


async def test_report_counts_what_the_responses_said(settings: Settings, db: Database) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    blocked_ids = []
    app = app_on(settings)
    async with asgi(app) as http:
        for headers, model in TRAFFIC:
            reply = await http.post("/v1/chat/completions", headers=headers, json=chat_body(model))
            decision = reply.headers["x-privacy-decision"]
            expected["decision", decision] += 1
            if decision == "blocked":
                blocked_ids.append(reply.headers["x-request-id"])
            else:
                expected["channel", reply.headers["x-privacy-channel"]] += 1
                expected["provider", reply.headers["x-privacy-provider"]] += 1
                for badge in reply.headers["x-privacy-badges"].split(", "):
                    expected["badge", badge] += 1
        sink = app.state.sluice.audit
        await until(lambda: sink.backlog == 0 and sink.stats.written == len(TRAFFIC), "the writer")

    found = await report(db, since=datetime.now(UTC) - timedelta(days=30))
    assert found.total == len(TRAFFIC)
    for kind, counts in (
        ("decision", found.decisions),
        ("channel", found.channels),
        ("provider", found.providers),
        ("badge", found.badges),
    ):
        assert counts == {name: n for (k, name), n in expected.items() if k == kind}, kind
    served = len(TRAFFIC) - len(blocked_ids)
    assert found.served == served and blocked_ids
    not_trained = expected["badge", "no-training"] + expected["badge", "training-opt-in"]
    assert expected["badge", "training-opt-in"]  # the demo's OpenAI and Anthropic channels are opt-in
    assert found.served_no_training == not_trained
    assert found.no_training_share == round(not_trained / served, 6)
    assert [b.request_id for b in found.blocked] == blocked_ids
    assert all(b.reasons for b in found.blocked)

    legal = await report(db, key="legal-demo")
    assert legal.total == 3 and {b.key_name for b in legal.blocked} == {"legal-demo"}

    run = await sluice("audit", "report", "--since", "30d", "--json", url=settings.database_url)
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["total"] == len(TRAFFIC) and data["decisions"] == found.decisions
    assert [b["request_id"] for b in data["blocked"]] == blocked_ids

    run = await sluice(
        "audit", "report", "--since", "30d", "--csv", "--key", "legal-demo", url=settings.database_url
    )
    assert run.exit_code == 0, run.output
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert {r["section"] for r in rows} >= {"summary", "decision", "blocked"}
    assert next(r for r in rows if r["name"] == "total")["count"] == "3"
    assert all(r["reasons"] for r in rows if r["section"] == "blocked")

    run = await sluice("audit", "report", url=settings.database_url)
    assert run.exit_code == 0 and "blocked request(s)" in run.stdout

    run = await sluice("audit", "tail", "-n", "3", "--json", url=settings.database_url)
    assert run.exit_code == 0, run.output
    assert [json.loads(line)["requested_model"] for line in run.stdout.splitlines()] == [
        model for _, model in TRAFFIC[-3:]
    ]


async def test_report_window_and_the_no_training_share(db_url: str, db: Database, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    events = [
        event(1, time=now - timedelta(days=45)),  # outside a 30-day window
        event(2),
        event(3, channel="mistral.api", provider="mistral", badges=("api-channel", "retention-30d")),
        event(5, channel="openai.api", provider="openai", badges=("api-channel", "training-opt-in")),
        event(
            4,
            decision="blocked",
            status=403,
            provider=None,
            channel=None,
            badges=(),
            reasons=("trains on data",),
        ),
    ]
    await write_events(db_url, tmp_path / "audit.spool", events)
    found = await report(db, since=now - timedelta(days=30))
    assert found.total == 4 and found.served == 3 and found.served_no_training == 2
    assert found.no_training_share == round(2 / 3, 6)
    assert found.served_without_no_training == {"mistral.api": 1}
    assert [b.reasons for b in found.blocked] == [["trains on data"]]
    everything = await report(db)
    assert everything.total == 5
    assert (await report(db, since=now + timedelta(days=1))).no_training_share is None
    run = await sluice("audit", "report", "--since", "soon", url=db_url)
    assert run.exit_code == 2 and "--since" in run.stderr
