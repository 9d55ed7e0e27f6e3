"""The audit ledger's writer: `LedgerSink`, the database-backed `AuditSink`.

What belongs here: queueing rows without blocking the request (`record()` is sync, cheap and never
raises), the batched writer task, and what happens when the database is down or slow:

- rows are chained and hashed in `record()` (see `chain`), in the order requests finished;
- the writer inserts batches in one transaction with the writer's chain head (`audit_writers`);
- a failed insert puts its batch back, and everything queued goes to the spool file (`spool`);
  while the database is down the writer keeps spooling and retries with a capped backoff;
- when the queue reaches `queue_size` (a slow database), the queue is spooled from `record()`;
- once the database answers, the spool is replayed, in order, before anything newer is written
  (a replay is idempotent: rows already present, by (writer, seq), are skipped);
- if the spool cannot be written either, rows stay in memory up to `hold_limit` (beyond it the
  oldest are dropped, which `sluice audit verify` then shows as a gap), every failure is logged as
  an error, and `status()` turns unready so `/readyz` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from gateway.observability.audit import AuditEvent
from gateway.storage.chain import ROW_COLUMNS, Chain, Row, writer_origin
from gateway.storage.db import Database, audit_events, audit_writers
from gateway.storage.spool import Spool

log = logging.getLogger("sluice.audit")

# What an unreachable, slow or refusing database raises through SQLAlchemy and its drivers.
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError)


def describe(exc: BaseException) -> str:
    """One line about a database error: the driver's message, never SQL parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:200]}" if lines else type(cause).__name__


def _insert(table_dialect: str, table: Any) -> Insert:
    module = postgresql if table_dialect == "postgresql" else sqlite
    statement: Insert = module.insert(table)
    return statement


@functools.cache
def insert_rows(dialect: str) -> Insert:
    """Insert ledger rows, skipping any already present (a replay after a crash mid-replay)."""
    statement: Any = _insert(dialect, audit_events)
    result: Insert = statement.on_conflict_do_nothing(index_elements=["writer", "seq"])
    return result


@functools.cache
def upsert_heads(dialect: str) -> Insert:
    """Move each writer's head forward (never back: replays may arrive after newer rows).

    Executed with the heads as parameters (executemany), so SQLAlchemy compiles it once per
    dialect rather than once per batch with the values inlined.
    """
    statement: Any = _insert(dialect, audit_writers)
    excluded = statement.excluded
    result: Insert = statement.on_conflict_do_update(
        index_elements=["writer"],
        set_={
            "last_seq": excluded.last_seq,
            "last_hash": excluded.last_hash,
            "updated_at": excluded.updated_at,
        },
        where=audit_writers.c.last_seq < excluded.last_seq,
    )
    return result


def chain_heads(rows: Sequence[Row]) -> list[dict[str, Any]]:
    last: dict[str, Row] = {}
    for row in rows:
        seen = last.get(row["writer"])
        if seen is None or row["seq"] > seen["seq"]:
            last[row["writer"]] = row
    now = datetime.now(UTC)
    heads = []
    for writer, row in last.items():
        host, pid = writer_origin(writer)
        heads.append(
            {
                "writer": writer,
                "host": host[:255],
                "pid": pid,
                "started_at": now,
                "last_seq": row["seq"],
                "last_hash": row["hash"],
                "updated_at": now,
                "note": None,
            }
        )
    return heads


@dataclass(frozen=True)
class _RowInsert:
    """`insert_rows` compiled once for one dialect: its SQL, the row columns in parameter order, and
    SQLAlchemy's bind processor of each column that has one (by position)."""

    sql: str
    columns: Callable[[Row], tuple[Any, ...]]  # operator.itemgetter of the columns in order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
        found = []
        for row in rows:
            values = list(self.columns(row))
            for position, process in self.processors:
                values[position] = process(values[position])
            found.append(tuple(values))
        return found


# Per dialect object (an engine's own: its JSON serializer is part of the processors); weak, so a
# disposed engine's dialect is not kept.
_ROW_INSERTS: weakref.WeakKeyDictionary[Dialect, _RowInsert | None] = weakref.WeakKeyDictionary()


def _row_insert(dialect: Dialect) -> _RowInsert | None:
    """The compiled row insert, or None where the dialect's parameters are not positional."""
    if dialect in _ROW_INSERTS:
        return _ROW_INSERTS[dialect]
    compiled: Any = insert_rows(dialect.name).compile(dialect=dialect, column_keys=list(ROW_COLUMNS))
    found = None
    if compiled.positional and not compiled.literal_execute_params and not compiled.post_compile_params:
        # SQLAlchemy's own processors, as its executemany applies them (a private attribute of its
        # compiler: tests/storage/test_ledger_insert.py compares what is stored with its own insert).
        processors = compiled._bind_processors
        names = tuple(compiled.positiontup)
        found = _RowInsert(
            compiled.string,
            operator.itemgetter(*names),
            tuple((i, processors[name]) for i, name in enumerate(names) if name in processors),
        )
    _ROW_INSERTS[dialect] = found
    return found


async def write_rows(db: Database, rows: Sequence[Row]) -> None:
    """Insert rows and move their writers' heads, in one transaction.

    The rows go to the driver's executemany with the statement compiled once and SQLAlchemy's own
    bind processors: the same SQL and values as `conn.execute(insert_rows(...), rows)`, without
    SQLAlchemy building each row's parameters through its compiler (about half of a row's cost)."""
    async with db.engine.begin() as conn:
        prepared = _row_insert(conn.dialect)
        if prepared is None:
            await conn.execute(insert_rows(conn.dialect.name), list(rows))
        else:
            await conn.exec_driver_sql(prepared.sql, prepared.parameters(rows))
        await conn.execute(upsert_heads(conn.dialect.name), chain_heads(rows))


@dataclass
class LedgerStats:
    written: int = 0
    replayed: int = 0
    spooled: int = 0
    dropped: int = 0


@dataclass
class _Health:
    connected: bool = False
    down: bool = False
    down_since: datetime | None = None
    db_error: str | None = None
    retry_at: float = 0.0
    backoff: float = 0.0
    spool_error: str | None = None


class LedgerSink:
    """Writes one chained row per `AuditEvent` to the database, through the spool when it must."""

    def __init__(
        self,
        db: Database,
        spool_path: Path,
        *,
        writer: str | None = None,
        batch_size: int = 500,
        queue_size: int = 10_000,
        hold_limit: int = 100_000,
        flush_interval: float = 0.2,
        retry_initial: float = 0.25,
        retry_max: float = 10.0,
        stop_timeout: float = 30.0,
        heartbeat: float = 15.0,
    ) -> None:
        self._db = db
        self._spool = Spool(spool_path)
        self._chain = Chain(writer) if writer else Chain()
        self._batch_size = batch_size
        self._queue_size = queue_size
        self._hold_limit = max(hold_limit, queue_size)
        self._flush_interval = flush_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_timeout = stop_timeout
        self._heartbeat = heartbeat
        self._lock = threading.Lock()  # record() may come from another thread; held only briefly
        self._pending: deque[Row] = deque()
        self._inflight: list[Row] = []
        self._inflight_spilled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._health = _Health()
        self.stats = LedgerStats()

    @property
    def writer(self) -> str:
        return self._chain.writer

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    @property
    def backlog(self) -> int:
        """Rows recorded but not yet in the database or the spool."""
        with self._lock:
            return len(self._pending) + (0 if self._inflight_spilled else len(self._inflight))

    # -- the request side ----------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        try:
            with self._lock:
                self._pending.append(self._chain.append(event))
                if self._closed or len(self._pending) >= self._queue_size:
                    self._spill_locked(include_inflight=True)
        except (TypeError, ValueError) as exc:
            self.stats.dropped += 1
            log.error(
                "audit record for %s could not be built (%s): lost", event.request_id, type(exc).__name__
            )
            return
        self._notify()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    # -- the spool -----------------------------------------------------------------------------
    def _spill_locked(self, *, include_inflight: bool) -> bool:
        """Move queued rows (oldest first) to the spool; the caller holds the lock."""
        rows: list[Row] = []
        if include_inflight and self._inflight and not self._inflight_spilled:
            rows.extend(self._inflight)
        rows.extend(self._pending)
        if not rows:
            return True
        try:
            self._spool.append(rows)
        except OSError as exc:
            self._spool_failed(exc)
            return False
        if include_inflight and self._inflight:
            self._inflight_spilled = True
        self._pending.clear()
        self.stats.spooled += len(rows)
        if self._health.spool_error is not None:
            log.warning("audit spool %s is writable again", self._spool.path)
            self._health.spool_error = None
        return True

    def _spool_failed(self, exc: OSError) -> None:
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        if self._health.spool_error is None:
            log.error(
                "AUDIT RECORDS AT RISK: the database is unavailable and the spool %s cannot be written (%s);"
                " holding up to %d records in memory",
                self._spool.path,
                reason,
                self._hold_limit,
            )
        self._health.spool_error = reason
        excess = len(self._pending) - self._hold_limit
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.stats.dropped += excess
            log.error("AUDIT RECORDS LOST: %d dropped (%d in total)", excess, self.stats.dropped)

    # -- the writer task -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()  # first cycle at once: the schema, and any spool a previous run left
        self._stopping = self._closed = False
        self._task = asyncio.create_task(self._run(), name="sluice-audit-writer")

    async def stop(self) -> None:
        task, wake = self._task, self._wake
        if task is not None and wake is not None:
            self._stopping = True
            wake.set()
            done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
            if not done:
                log.error(
                    "audit writer did not finish within %.0f s; spooling what is left", self._stop_timeout
                )
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("audit writer failed: %s", type(task.exception()).__name__)
        with self._lock:
            self._closed = True
            self._spill_locked(include_inflight=False)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wait()
            final = self._stopping
            await self._cycle(final=final)
            if final:
                return

    async def _wait(self) -> None:
        assert self._wake is not None and self._loop is not None
        if self._stopping:
            return
        if self._health.down:
            timeout = max(0.0, self._health.retry_at - self._loop.time())
        else:
            timeout = self._heartbeat  # an idle writer still notices a database that went away
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass  # a retry or a heartbeat is due
        self._wake.clear()
        if not self._stopping and self.backlog < self._batch_size:
            await asyncio.sleep(self._flush_interval)  # let a batch gather

    async def _cycle(self, *, final: bool) -> None:
        assert self._loop is not None
        if self._health.down and self._loop.time() < self._health.retry_at:
            with self._lock:
                self._spill_locked(include_inflight=False)
            return
        try:
            await self._db.ensure_schema()
            moved = await self._replay()
            moved += await self._drain(final=final)
            if not moved:
                await self._db.ping()
        except DB_ERRORS as exc:
            self._went_down(exc)
            with self._lock:
                self._spill_locked(include_inflight=False)
        else:
            self._came_up()

    async def _replay(self) -> int:
        """Insert spooled rows, oldest claim first; rows already in the database are skipped."""
        count = 0
        try:
            while self._spool.pending():
                claims = self._spool.claim()
                for claimed in claims:
                    with contextlib.closing(self._spool.batches(claimed, self._batch_size)) as batches:
                        for batch in batches:
                            await write_rows(self._db, batch)
                            count += len(batch)
                    self._spool.remove(claimed)
                if not claims:
                    break
        except PermissionError as exc:
            # Unreadable spool: keep the database current with what is in memory; say so loudly.
            self._spool_failed(exc)
        self.stats.replayed += count
        if count:
            log.info("audit spool: replayed %d records into the database", count)
        return count

    async def _drain(self, *, final: bool = False) -> int:
        """Write what is queued, a batch at a time. Rows queued while a batch is written wait for the
        next cycle (`flush_interval`) unless a whole batch is waiting, or the writer is stopping:
        going on at once wrote a transaction every few requests under steady load (each costs about
        1 ms of CPU whatever its size, most of the pass-through's CPU at one request in flight)."""
        count = 0
        while True:
            with self._lock:
                if not self._pending or (count and not final and len(self._pending) < self._batch_size):
                    return count
                size = min(self._batch_size, len(self._pending))
                batch = [self._pending.popleft() for _ in range(size)]
                self._inflight, self._inflight_spilled = batch, False
            written = False
            try:
                await write_rows(self._db, batch)
                written = True
            finally:
                with self._lock:
                    if not written and not self._inflight_spilled:
                        self._pending.extendleft(reversed(batch))  # back in front, in order
                    self._inflight, self._inflight_spilled = [], False
            count += len(batch)
            self.stats.written += len(batch)

    def _went_down(self, exc: BaseException) -> None:
        assert self._loop is not None
        health = self._health
        reason = describe(exc)
        if not health.down:
            log.error(
                "audit database %s unavailable (%s): spooling to %s",
                self._db.display_url,
                reason,
                self._spool.path,
            )
            health.down, health.down_since, health.backoff = True, datetime.now(UTC), self._retry_initial
        else:
            health.backoff = min(health.backoff * 2, self._retry_max)
        health.db_error = reason
        health.retry_at = self._loop.time() + health.backoff

    def _came_up(self) -> None:
        health = self._health
        if health.down:
            log.warning("audit database %s is back; the spool is replayed", self._db.display_url)
        health.connected, health.down, health.down_since, health.db_error = True, False, None, None

    def answered(self) -> None:
        """The database answered outside the writer (start-up applied the migrations): `status()` says
        so at once, not only after the writer's first cycle."""
        if not self._health.down:
            self._health.connected = True

    def status(self) -> tuple[bool, str]:
        health, task = self._health, self._task
        lost = f"; {self.stats.dropped} records lost" if self.stats.dropped else ""
        if task is not None and task.done() and not self._stopping:
            failure = None if task.cancelled() else task.exception()
            return False, f"audit writer stopped ({type(failure).__name__ if failure else 'cancelled'}){lost}"
        if health.spool_error is not None:
            return False, (
                f"database unavailable ({health.db_error}) and audit spool {self._spool.path} not writable "
                f"({health.spool_error}); {self.backlog} records held in memory{lost}"
            )
        if health.down:
            since = health.down_since.isoformat(timespec="seconds") if health.down_since else "?"
            spooling = f"spooling to {self._spool.path}{lost}"
            return True, f"database unavailable since {since} ({health.db_error}); {spooling}"
        if not health.connected:  # nothing has reached the database yet, neither start-up nor the writer
            return True, f"{self._db.dialect}: waiting for the audit writer's first contact{lost}"
        return True, f"ok ({self._db.dialect}){lost}"
