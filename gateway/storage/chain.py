"""Ledger rows and their hash chain: from an `AuditEvent` to a row, and how a row is hashed.

What belongs here: the row shape (the columns of `audit_events`, metadata only), its canonical
bytes, the per-writer `Chain` that numbers and links rows, and the JSON form the spool stores.
Every row holds the hash of the previous row of the same writer, and its own hash covers every
column (the previous hash included), so a deleted or edited row breaks the chain.
A row is hashed when it is recorded, so it hashes the same whether it reaches the database at once
or after a stay in the spool. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from gateway.observability.audit import AuditEvent

Row = dict[str, Any]

GENESIS: Final = ""
HASH_PREFIX: Final = "sha256:"
# Column -> the longest value stored (the hash covers what is stored, so values are cut first).
TEXT_LIMITS: Final[dict[str, int]] = {
    "request_id": 64,
    "key_name": 64,
    "endpoint": 32,
    "requested_model": 256,
    "served_model": 256,
    "deployment": 256,
    "upstream_model": 256,
    "provider": 64,
    "channel": 128,
    "decision": 16,
    "error_code": 64,
}
LIST_COLUMNS: Final = ("policy", "badges", "reasons")
INT_COLUMNS: Final = ("status", "attempts")
OPTIONAL_INT_COLUMNS: Final = ("prompt_tokens", "completion_tokens")
BOOL_COLUMNS: Final = ("stream", "client_cancelled", "simulated")
CHAIN_COLUMNS: Final = ("writer", "seq", "prev_hash")
EVENT_COLUMNS: Final = (
    "request_id",
    "time",
    "key_name",
    "endpoint",
    "requested_model",
    "served_model",
    "deployment",
    "upstream_model",
    "provider",
    "channel",
    "policy",
    "decision",
    "badges",
    "reasons",
    "status",
    "error_code",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "stream",
    "client_cancelled",
    "attempts",
    "simulated",
    "extra",
)
HASHED_COLUMNS: Final = (*CHAIN_COLUMNS, *EVENT_COLUMNS)
ROW_COLUMNS: Final = (*HASHED_COLUMNS, "hash")
MAX_REASON = 512
MAX_LIST = 256
INT32 = 2**31 - 1


def new_writer_id() -> str:
    """`host-pid-random`: unique per process, and says where a chain was written."""
    host = socket.gethostname().replace(" ", "_")[:96] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _json_safe(value: Any) -> Any:
    """Only what JSON keeps exactly, so the hash of a row read back equals the hash recorded."""
    raw = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    return orjson.loads(raw.replace(b"\\u0000", b"\\ufffd"))


def utc(moment: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes; events are always recorded in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# (column, longest value) of the list columns, in `LIST_COLUMNS` order.
_LIST_LIMITS: Final = tuple((name, MAX_REASON if name == "reasons" else 128) for name in LIST_COLUMNS)
_TEXT_LIMITS: Final = tuple(TEXT_LIMITS.items())


def event_row(event: AuditEvent) -> Row:
    """The columns of one event, cut to the column sizes; no chain fields yet.

    Once per request, so nothing is a call per column. Text has NUL replaced (PostgreSQL refuses it
    in text: a client-chosen model name must not poison the ledger); integers are clamped to int32
    (token counts come from upstream answers: a huge one must not make a row the database refuses);
    an empty `extra`, the usual case, is `{}` without `_json_safe`'s JSON round trip."""
    extra = event.extra
    row: Row = {
        "time": utc(event.time),
        "latency_ms": float(event.latency_ms),
        "extra": {} if type(extra) is dict and not extra else _json_safe(extra),
    }
    for name, limit in _TEXT_LIMITS:
        value = getattr(event, name)
        row[name] = None if value is None else str(value).replace("\x00", "\ufffd")[:limit]
    for name, limit in _LIST_LIMITS:
        row[name] = [str(item).replace("\x00", "\ufffd")[:limit] for item in getattr(event, name)][:MAX_LIST]
    for name in INT_COLUMNS:
        row[name] = max(-INT32, min(INT32, int(getattr(event, name))))
    for name in OPTIONAL_INT_COLUMNS:
        value = getattr(event, name)
        row[name] = None if value is None else max(-INT32, min(INT32, int(value)))
    for name in BOOL_COLUMNS:
        row[name] = bool(getattr(event, name))
    return row


def _canonical_fields(row: Row, names: tuple[str, ...]) -> dict[str, Any]:
    """`names`' columns as JSON keeps them: the time in ISO form, the latency a float, lists as lists."""
    data = {name: row[name] for name in names}
    data["time"] = utc(data["time"]).isoformat(timespec="microseconds")
    data["latency_ms"] = float(data["latency_ms"])
    for name in LIST_COLUMNS:
        data[name] = list(data[name])
    return data


def canonical(row: Row) -> bytes:
    """The bytes a row's hash covers: every column but `id` and `hash`, keys sorted."""
    return orjson.dumps(_canonical_fields(row, HASHED_COLUMNS), option=orjson.OPT_SORT_KEYS)


def row_hash(row: Row) -> str:
    return HASH_PREFIX + hashlib.sha256(canonical(row)).hexdigest()


@dataclass
class Chain:
    """One writer's chain: numbers rows from 1 and links each to the previous row's hash."""

    writer: str = field(default_factory=new_writer_id)
    seq: int = 0
    last_hash: str = GENESIS

    def append(self, event: AuditEvent) -> Row:
        row = event_row(event)
        row["writer"] = self.writer
        row["seq"] = self.seq + 1
        row["prev_hash"] = self.last_hash
        row["hash"] = row_hash(row)
        self.seq += 1
        self.last_hash = row["hash"]
        return row


def to_json(row: Row) -> bytes:
    """One spool line (no newline)."""
    return orjson.dumps(_canonical_fields(row, ROW_COLUMNS))


def from_json(line: bytes) -> Row:
    """A row from a spool line; raises ValueError on a damaged line."""
    data = orjson.loads(line)
    if not isinstance(data, dict) or any(name not in data for name in ROW_COLUMNS):
        raise ValueError("a spool line without every ledger column")
    data["time"] = utc(datetime.fromisoformat(data["time"]))
    return {name: data[name] for name in ROW_COLUMNS}


def writer_origin(writer: str) -> tuple[str, int]:
    """(host, pid) from a writer id `host-pid-random`."""
    parts = writer.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return writer, 0
