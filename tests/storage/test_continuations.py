"""`previous_response_id` across replicas and restarts: the ledger says which deployment answered.

A response id is recorded with its answer (`extra.response_id`); a process that never saw the
answer (another replica, or this one after a restart) finds the deployment there, on SQLite and
on PostgreSQL. Only successful Responses answers count, and only for the key that received them.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.continuations import Continuations, Origin
from gateway.storage.continuations import origin_finder
from gateway.storage.db import Database
from tests.storage.support import event, write_events


async def test_the_ledger_knows_which_deployment_answered(db_url: str, tmp_path: Path) -> None:
    answered = {"endpoint": "responses", "deployment": "gpt-4o-mini#0"}
    await write_events(
        db_url,
        tmp_path / "spool",
        [
            event(1, **answered, extra={"response_id": "resp_a"}),
            event(2, **{**answered, "deployment": "other#0"}, status=502, extra={"response_id": "resp_b"}),
            event(3, endpoint="chat", deployment="chat#0", extra={"response_id": "resp_c"}),
            event(4, **answered, key_name="legal-demo", extra={"response_id": "resp_d", "sensitive": []}),
        ],
    )
    db = Database(db_url)
    try:
        find = origin_finder(db)
        assert await find("resp_a") == Origin("demo", "gpt-4o-mini#0")
        assert await find("resp_b") is None  # a failed answer continues nothing
        assert await find("resp_c") is None  # not a Responses answer
        assert await find("resp_unknown") is None
        fresh = Continuations(lookup=find)  # a process that never saw these answers
        assert await fresh.origin("resp_a", "demo") == "gpt-4o-mini#0"
        assert await fresh.origin("resp_d", "demo") is None  # another key's
        assert await fresh.origin("resp_d", "legal-demo") == "gpt-4o-mini#0"
    finally:
        await db.dispose()


async def test_an_unreachable_ledger_knows_nothing(tmp_path: Path) -> None:
    db = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none", connect_timeout=1)
    try:
        assert await origin_finder(db)("resp_a") is None
    finally:
        await db.dispose()


def test_the_map_is_bounded_oldest_first() -> None:
    continuations = Continuations(limit=2)
    for name in ("a", "b", "c"):
        continuations.remember(f"resp_{name}", "demo", f"{name}#0")
    assert list(continuations._known) == ["resp_b", "resp_c"]
