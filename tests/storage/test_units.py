"""Pure parts of storage: the chain's hashing, the spool file, and `90d`-style times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.storage.chain import GENESIS, Chain, from_json, row_hash, to_json, writer_origin
from gateway.storage.db import json_text
from gateway.storage.spool import Spool
from gateway.storage.timespec import parse_duration, parse_moment
from tests.storage.support import event


def test_a_chain_links_and_hashes_every_column() -> None:
    chain = Chain("host-a-12-abcd")
    first, second = chain.append(event(1)), chain.append(event(2))
    assert (first["seq"], first["prev_hash"], second["seq"]) == (1, GENESIS, 2)
    assert second["prev_hash"] == first["hash"] == row_hash(first)
    for column, value in (
        ("decision", "blocked"),
        ("badges", ["no-training"]),
        ("seq", 3),
        ("latency_ms", 1.0),
    ):
        assert row_hash({**first, column: value}) != first["hash"], column
    assert writer_origin(chain.writer) == ("host-a", 12)


def test_rows_survive_the_spool_format_and_naive_times() -> None:
    row = Chain().append(event(1, extra={"b": 1, "a": [1.5, None]}, requested_model="m\x00odel"))
    assert "\x00" not in row["requested_model"]
    again = from_json(to_json(row))
    assert again == row and row_hash(again) == row["hash"]
    naive = {**row, "time": row["time"].astimezone(UTC).replace(tzinfo=None)}
    assert row_hash(naive) == row["hash"], "SQLite hands back naive UTC times"
    with pytest.raises(ValueError):
        from_json(b'{"writer": "x"}')


def test_long_values_are_cut_to_their_columns() -> None:
    row = Chain().append(event(1, requested_model="m" * 1000, reasons=("r" * 2000,)))
    assert len(row["requested_model"]) == 256 and len(row["reasons"][0]) == 512


def test_spool_appends_claims_and_replays_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "audit.spool")
    chain = Chain()
    assert not spool.pending() and spool.claim() == []
    spool.append([chain.append(event(i)) for i in range(1, 4)])
    first = spool.claim()
    spool.append([chain.append(event(4))])  # lands in a new file, after the claim
    claims = spool.claim()
    assert len(claims) == 2 and claims[0] == first[0]
    seqs = [r["seq"] for c in claims for batch in Spool.batches(c, 2) for r in batch]
    assert seqs == [1, 2, 3, 4]
    for claimed in claims:
        Spool.remove(claimed)
    assert not spool.pending()


def test_a_damaged_spool_line_is_skipped_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "audit.spool")
    chain = Chain()
    spool.append([chain.append(event(1))])
    with (tmp_path / "audit.spool").open("ab") as handle:
        handle.write(b'{"half a line\n')
    spool.append([chain.append(event(2))])
    (claimed,) = spool.claim()
    assert [r["seq"] for b in Spool.batches(claimed, 10) for r in b] == [1, 2]
    assert "line 2 is damaged" in caplog.text


def test_durations_and_dates() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("2w") == timedelta(days=14) and parse_duration("30m") == timedelta(minutes=30)
    assert parse_moment("30d", now=now, direction="past") == datetime(2026, 5, 2, tzinfo=UTC)
    assert parse_moment("12h", now=now, direction="future") == now + timedelta(hours=12)
    assert parse_moment("2026-12-31", now=now, direction="future") == datetime(2026, 12, 31, tzinfo=UTC)
    for bad in ("soon", "90x", "-1d", ""):
        with pytest.raises(ValueError):
            parse_moment(bad, now=now, direction="past")


@pytest.mark.parametrize(
    "value",
    [
        ["no-training-only", "zdr"],
        {"features": ["web_search"], "store_false": True},
        {},
        None,
        "é\x00",
        [1 << 70],  # past orjson: the standard library's encoder
        {1: "a key that is not a string"},
    ],
)
def test_json_columns_read_back_as_the_standard_library_would_have_written_them(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))
