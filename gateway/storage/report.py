"""Reading the ledger: `tail`, the compliance `report`, and `verify` of every hash chain.

What belongs here: queries over `audit_events` and `audit_writers` and the plain data they return
(rendering is the CLI's). The report answers "which requests reached which channels": counts by
decision, provider, channel and badge; the share of served requests whose channel carries the
`no-training` or `training-opt-in` badge, the two that pass `no-training-only` (served = sent to a
deployment, whatever the upstream answered); every blocked request with its reasons; and how many
requests each sensitive-content detector tightened (`sensitive`) or, in report mode, would have
tightened (`sensitive_report`), and the data paths requests used (`features`), from the ledger's
`extra`, which holds ids only. `activity()` adds what the report page draws (`gateway/api/pages.py`):
requests per time step by decision, requests per key, the share served by zero-retention channels,
and blocked requests by reason.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from gateway.names import DecisionKind
from gateway.storage.chain import GENESIS, row_hash, utc
from gateway.storage.db import Database, audit_events, audit_writers

# The badges of channels that pass `no-training-only`: never trained on, or only if the account opts in
# (the catalog's `opt_in`; an attested opt-in turns the badge into a training one).
NOT_TRAINED = frozenset({"no-training", "training-opt-in"})
# The badges of channels that keep nothing: zero data retention by the provider, or the operator's own host.
ZERO_RETENTION = frozenset({"zdr", "self-hosted"})
TAIL_COLUMNS = (
    "time",
    "key_name",
    "endpoint",
    "requested_model",
    "decision",
    "provider",
    "channel",
    "status",
    "badges",
    "request_id",
)


def _filters(since: datetime | None, until: datetime | None, key: str | None) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(audit_events.c.time >= utc(since))
    if until is not None:
        clauses.append(audit_events.c.time < utc(until))
    if key is not None:
        clauses.append(audit_events.c.key_name == key)
    return clauses


async def tail(db: Database, n: int = 20, *, key: str | None = None) -> list[dict[str, Any]]:
    """The newest `n` records, oldest first."""
    await db.ensure_schema()
    columns = [audit_events.c[name] for name in TAIL_COLUMNS]
    query = select(*columns).where(*_filters(None, None, key)).order_by(audit_events.c.id.desc()).limit(n)
    async with db.engine.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
    for row in rows:
        row["time"] = utc(row["time"]).isoformat(timespec="milliseconds")
    return rows[::-1]


@dataclass
class BlockedRequest:
    request_id: str
    time: str
    key_name: str
    requested_model: str
    policy: list[str]
    reasons: list[str]


@dataclass
class Report:
    since: str | None
    until: str | None
    key: str | None
    total: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    providers: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    badges: dict[str, int] = field(default_factory=dict)
    served: int = 0
    served_no_training: int = 0
    no_training_share: float | None = None
    served_without_no_training: dict[str, int] = field(default_factory=dict)
    blocked: list[BlockedRequest] = field(default_factory=list)
    sensitive: dict[str, int] = field(default_factory=dict)
    sensitive_report: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)  # requests per data path (`extra.features`)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _grouped(conn: Any, column: Any, where: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    query: Select[Any] = (
        select(column, func.count()).where(*where).group_by(column).order_by(func.count().desc(), column)
    )
    return {
        str(value) if value is not None else "-": int(count) for value, count in await conn.execute(query)
    }


_EXTRA_LISTS = ("sensitive", "sensitive_report", "features")


async def _extra_lists(conn: Any, where: Sequence[ColumnElement[bool]]) -> dict[str, dict[str, int]]:
    """Requests per id of each list in `extra`: detector ids tightened (`sensitive`) and reported
    only (`sensitive_report`), data paths used (`features`). Counted here rather than in SQL: JSON
    functions differ between SQLite and PostgreSQL."""
    counters: dict[str, Counter[str]] = {name: Counter() for name in _EXTRA_LISTS}
    async for row in await conn.stream(select(audit_events.c.extra).where(*where)):
        extra = row.extra if isinstance(row.extra, dict) else {}
        for name, counter in counters.items():
            ids = extra.get(name)
            if isinstance(ids, list):
                counter.update(str(i) for i in ids)
    return {name: dict(counter.most_common()) for name, counter in counters.items()}


async def report(
    db: Database, *, since: datetime | None = None, until: datetime | None = None, key: str | None = None
) -> Report:
    await db.ensure_schema()
    where = _filters(since, until, key)
    result = Report(
        since=utc(since).isoformat(timespec="seconds") if since else None,
        until=utc(until).isoformat(timespec="seconds") if until else None,
        key=key,
    )
    served_where = [*where, audit_events.c.provider.is_not(None)]
    async with db.engine.connect() as conn:
        result.decisions = await _grouped(conn, audit_events.c.decision, where)
        result.total = sum(result.decisions.values())
        result.providers = await _grouped(conn, audit_events.c.provider, served_where)
        result.channels = await _grouped(conn, audit_events.c.channel, served_where)
        badges: Counter[str] = Counter()
        elsewhere: Counter[str] = Counter()
        served = select(audit_events.c.badges, audit_events.c.channel).where(*served_where)
        async for row in await conn.stream(served):
            result.served += 1
            badges.update(row.badges)
            if NOT_TRAINED.intersection(row.badges):
                result.served_no_training += 1
            else:
                elsewhere[row.channel] += 1
        blocked = (
            select(audit_events)
            .where(*where, audit_events.c.decision == DecisionKind.BLOCKED.value)
            .order_by(audit_events.c.time, audit_events.c.id)
        )
        async for row in await conn.stream(blocked):
            result.blocked.append(
                BlockedRequest(
                    request_id=row.request_id,
                    time=utc(row.time).isoformat(timespec="seconds"),
                    key_name=row.key_name,
                    requested_model=row.requested_model,
                    policy=list(row.policy),
                    reasons=list(row.reasons),
                )
            )
        lists = await _extra_lists(conn, where)
        result.sensitive, result.sensitive_report = lists["sensitive"], lists["sensitive_report"]
        result.features = lists["features"]
    result.badges = dict(badges.most_common())
    result.served_without_no_training = dict(elsewhere.most_common())
    if result.served:
        result.no_training_share = round(result.served_no_training / result.served, 6)
    return result


@dataclass
class Activity:
    """The ledger between `since` and `until`, for pictures: `steps[i]` counts decisions in the
    `i`-th step of `step` from `since`; `keys` requests per key name; `served_zero_retention` the
    served requests whose channel keeps nothing; `blocked_reasons` blocked requests per reason."""

    since: datetime
    until: datetime
    step: timedelta
    steps: list[dict[str, int]] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    served_zero_retention: int = 0
    blocked_reasons: dict[str, int] = field(default_factory=dict)


async def activity(db: Database, *, since: datetime, until: datetime, step: timedelta) -> Activity:
    """One pass over the window's records (time, decision, key, badges, reasons; never content).
    Time steps are counted here rather than in SQL: date arithmetic differs between SQLite and PostgreSQL."""
    await db.ensure_schema()
    since, until = utc(since), utc(until)
    count = max(1, math.ceil((until - since) / step))
    result = Activity(since, until, step, steps=[{} for _ in range(count)])
    keys: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    columns = (
        audit_events.c.time,
        audit_events.c.decision,
        audit_events.c.key_name,
        audit_events.c.badges,
        audit_events.c.provider,
        audit_events.c.reasons,
    )
    query = select(*columns).where(*_filters(since, until, None))
    async with db.engine.connect() as conn:
        async for row in await conn.stream(query):
            index = min(count - 1, int((utc(row.time) - since) / step))
            bucket = result.steps[index]
            bucket[row.decision] = bucket.get(row.decision, 0) + 1
            keys[row.key_name] += 1
            if row.provider is not None and ZERO_RETENTION.intersection(row.badges):
                result.served_zero_retention += 1
            if row.decision == DecisionKind.BLOCKED.value:
                reasons.update(set(row.reasons) or {"-"})
    result.keys = dict(keys.most_common())
    result.blocked_reasons = dict(reasons.most_common())
    return result


@dataclass(frozen=True)
class ChainBreak:
    writer: str
    seq: int
    row_id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" + (f" (row id {self.row_id})" if self.row_id is not None else "")
        return f"chain {self.writer}: broken at {where}: {self.problem}"


@dataclass
class ChainState:
    writer: str
    records: int
    last_seq: int
    last_hash: str


@dataclass
class Verification:
    chains: list[ChainState] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)


def _check(row: dict[str, Any], expected_seq: int, prev: str) -> str | None:
    if row["seq"] > expected_seq:
        missing = f"{expected_seq}" if row["seq"] == expected_seq + 1 else f"{expected_seq}-{row['seq'] - 1}"
        return f"record(s) {missing} missing (deleted or never written)"
    if row["seq"] < expected_seq:
        return "sequence number repeated"
    if row["prev_hash"] != prev:
        return "does not link to the previous record (a record before it was edited or replaced)"
    if row_hash(row) != row["hash"]:
        return "edited: its content does not match its hash"
    return None


async def _verify_chain(
    conn: Any, writer: str, head: tuple[int, str] | None, page: int
) -> tuple[ChainState, ChainBreak | None]:
    state = ChainState(writer, 0, 0, GENESIS)
    found: ChainBreak | None = None
    while True:
        query = (
            select(audit_events)
            .where(audit_events.c.writer == writer, audit_events.c.seq > state.last_seq)
            .order_by(audit_events.c.seq)
            .limit(page)
        )
        rows = [dict(r._mapping) for r in await conn.execute(query)]
        for row in rows:
            problem = _check(row, state.last_seq + 1, state.last_hash)
            if problem is not None and found is None:
                found = ChainBreak(writer, row["seq"], row["id"], problem)
            state.records += 1
            state.last_seq, state.last_hash = row["seq"], row["hash"]
        if len(rows) < page:
            break
    if found is None:
        if head is None:
            found = ChainBreak(writer, state.last_seq, None, "no chain head in audit_writers (deleted?)")
        elif head[0] > state.last_seq:
            found = ChainBreak(
                writer, state.last_seq + 1, None, f"records {state.last_seq + 1}-{head[0]} missing at the end"
            )
        elif head != (state.last_seq, state.last_hash):
            found = ChainBreak(writer, state.last_seq, None, "the newest record differs from the chain head")
    return state, found


async def verify(db: Database, *, page: int = 1000) -> Verification:
    """Check every writer's chain from its first record to its head; the first break of each."""
    await db.ensure_schema()
    result = Verification()
    async with db.engine.connect() as conn:
        heads = {
            row.writer: (int(row.last_seq), row.last_hash)
            for row in await conn.execute(
                select(audit_writers.c.writer, audit_writers.c.last_seq, audit_writers.c.last_hash)
            )
        }
        writers = {row.writer for row in await conn.execute(select(audit_events.c.writer).distinct())}
        for writer in sorted(writers | set(heads)):
            state, found = await _verify_chain(conn, writer, heads.get(writer), page)
            result.chains.append(state)
            if found is not None:
                result.breaks.append(found)
    return result
