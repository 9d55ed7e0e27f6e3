"""`sluice audit verify` finds a deleted row, an edited row, a re-hashed edit and a cut tail."""

from __future__ import annotations

from pathlib import Path

from gateway.storage.db import Database
from gateway.storage.report import verify
from tests.storage.conftest import execute
from tests.storage.support import event, sluice, write_events


async def chain_of(db_url: str, tmp_path: Path, n: int = 10) -> str:
    return await write_events(db_url, tmp_path / "audit.spool", [event(i) for i in range(1, n + 1)])


async def verified(db: Database) -> list[str]:
    return [str(b) for b in (await verify(db)).breaks]


async def test_an_intact_ledger_verifies(db_url: str, db: Database, tmp_path: Path) -> None:
    first = await chain_of(db_url, tmp_path)
    second = await chain_of(db_url, tmp_path, n=3)
    result = await verify(db)
    assert result.ok and result.records == 13
    assert {c.writer: c.last_seq for c in result.chains} == {first: 10, second: 3}
    run = await sluice("audit", "verify", url=db_url)
    assert run.exit_code == 0, run.output
    assert "2 chain(s), 13 record(s): intact" in run.stdout


async def test_a_deleted_row_breaks_the_chain(db_url: str, db: Database, tmp_path: Path) -> None:
    writer = await chain_of(db_url, tmp_path)
    await execute(db_url, "DELETE FROM audit_events WHERE seq = 5")
    assert await verified(db) == [
        f"chain {writer}: broken at seq 6 (row id 6): record(s) 5 missing (deleted or never written)"
    ]
    run = await sluice("audit", "verify", url=db_url)
    assert run.exit_code == 1
    assert "BROKEN" in run.stdout and "seq 6" in run.stdout


async def test_an_edited_row_breaks_the_chain(db_url: str, db: Database, tmp_path: Path) -> None:
    writer = await chain_of(db_url, tmp_path)
    await execute(db_url, "UPDATE audit_events SET channel = 'google.gemini_api_free' WHERE seq = 3")
    breaks = await verified(db)
    assert breaks == [
        f"chain {writer}: broken at seq 3 (row id 3): edited: its content does not match its hash"
    ]
    run = await sluice("audit", "verify", "--json", url=db_url)
    assert run.exit_code == 1 and '"ok": false' in run.stdout


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    from gateway.storage.chain import row_hash
    from tests.storage.conftest import ledger_rows

    writer = await chain_of(db_url, tmp_path)
    row = (await ledger_rows(db_url))[3]
    row["decision"] = "blocked"
    await execute(
        db_url, "UPDATE audit_events SET decision = 'blocked', hash = :h WHERE seq = 4", h=row_hash(row)
    )
    assert await verified(db) == [
        f"chain {writer}: broken at seq 5 (row id 5): does not link to the previous record "
        "(a record before it was edited or replaced)"
    ]


async def test_a_cut_tail_is_found_from_the_chain_head(db_url: str, db: Database, tmp_path: Path) -> None:
    writer = await chain_of(db_url, tmp_path)
    await execute(db_url, "DELETE FROM audit_events WHERE seq >= 9")
    assert await verified(db) == [f"chain {writer}: broken at seq 9: records 9-10 missing at the end"]


async def test_a_whole_chain_deleted_is_found(db_url: str, db: Database, tmp_path: Path) -> None:
    writer = await chain_of(db_url, tmp_path, n=4)
    await execute(db_url, "DELETE FROM audit_events")
    assert await verified(db) == [f"chain {writer}: broken at seq 1: records 1-4 missing at the end"]
    run = await sluice("audit", "verify", url=db_url)
    assert run.exit_code == 1
