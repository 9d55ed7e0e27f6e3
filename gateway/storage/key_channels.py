"""How a change to `api_keys`, made by any process, reaches every gateway's key cache.

What belongs here: `notify_change`, which every writer of `api_keys` calls inside its transaction,
and the two change sources a `KeyCache` uses (`gateway.storage.runtime.change_source` picks one):

- PostgreSQL, `PgChangeListener`: writers `pg_notify('sluice_keys', '{"op": ..., "name": ...}')` in
  the transaction of the change (PostgreSQL delivers it at commit, never for a rollback). Each
  gateway process listens on one dedicated connection (`application_name` `sluice-key-listener`);
  a message marks that name's entries stale. While the channel is down (database restarted,
  connection killed, probe unanswered) entries live at most `fallback_ttl` seconds, `/readyz` says
  `degraded`, and the listener reconnects with a backoff; on losing the channel and on every
  (re)connect the whole cache goes stale, since messages may have been missed. Bound on serving a
  revoked key: the time to notice the loss (at once for a closed or terminated connection; at most
  `PROBE_INTERVAL + PROBE_TIMEOUT` for a silent one) plus `fallback_ttl`.
- SQLite, `SqliteVersionWatch`: one read-only connection of its own asks `PRAGMA data_version`
  before every lookup (about 2 us, no I/O: it reads the WAL index); the number moves whenever any
  other connection, of this process or another (`sluice keys revoke`), commits, and then the whole
  cache goes stale. The ledger's batches (at most 5 a second) do that too: one lookup per key in
  use per batch (requests that miss together share it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.key_cache import FALLBACK_TTL, KeyCache

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("sluice.keys.cache")

CHANNEL = "sluice_keys"
LISTENER_NAME = "sluice-key-listener"  # application_name of the LISTEN connection (pg_stat_activity)
Op = Literal["create", "revoke", "update"]
PROBE_INTERVAL = 5.0  # how often an idle LISTEN connection is asked `SELECT 1`
PROBE_TIMEOUT = 2.0
RECONNECT_FIRST, RECONNECT_MAX = 0.25, 5.0  # the listener's backoff, doubling


async def notify_change(conn: AsyncConnection, op: Op, name: str) -> None:
    """Tell every gateway on this PostgreSQL that key `name` changed; call inside the change's
    transaction (PostgreSQL delivers it at commit, and never for a rollback). No-op on SQLite."""
    if conn.dialect.name == "postgresql":
        payload = json.dumps({"op": op, "name": name})
        await conn.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


class SqliteVersionWatch:
    """SQLite: empties the cache whenever `PRAGMA data_version` of a connection of our own moves."""

    def __init__(self, cache: KeyCache, path: str) -> None:
        self._cache = cache
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._problem: str | None = None

    @property
    def ttl(self) -> float | None:
        return None if self._conn is not None else 0.0

    def check(self) -> None:
        try:
            if self._conn is None:
                # Read-only, autocommit; the event loop's thread only (a ~2 us call, never a wait:
                # in WAL mode a reader takes no lock a writer holds).
                self._conn = sqlite3.connect(
                    f"file:{self._path}?mode=ro", uri=True, isolation_level=None, timeout=0.1
                )
                self._version = None
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            self._close(f"cannot watch {self._path} ({type(exc).__name__}); every lookup asks the database")
            return
        self._problem = None
        version = int(row[0])
        if version != self._version:
            if self._version is not None:
                self._cache.flush()
            self._version = version

    def _close(self, problem: str) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._version = None, None
        if problem != self._problem:
            log.warning("key cache: %s", problem)
        self._problem = problem
        self._cache.flush()

    def status(self) -> tuple[str, str]:
        if self._problem is not None:
            return "degraded", self._problem
        return "ok", "cached; any commit to the database file (PRAGMA data_version) drops the cache"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PgChangeListener:
    """PostgreSQL: one `LISTEN sluice_keys` connection, probed, reconnected with a backoff."""

    def __init__(
        self,
        cache: KeyCache,
        url: URL,
        *,
        fallback_ttl: float = FALLBACK_TTL,
        probe_interval: float = PROBE_INTERVAL,
        connect_timeout: float = 5.0,
    ) -> None:
        self._cache = cache
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._fallback_ttl = fallback_ttl
        self._probe_interval = probe_interval
        self._connect_timeout = connect_timeout
        self._live = False
        self._since = time.time()
        self._task: asyncio.Task[None] | None = None
        self.losses = 0  # times the channel went down after being up

    @property
    def ttl(self) -> float | None:
        return None if self._live else self._fallback_ttl

    def check(self) -> None:
        return None

    def status(self) -> tuple[str, str]:
        if self._live:
            return "ok", f"cached; changes arrive by LISTEN {CHANNEL}"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since))
        return (
            "degraded",
            f"key change channel down since {since}; cached keys are trusted for {self._fallback_ttl:g} s "
            "only, reconnecting",
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sluice-key-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _down(self, why: str) -> None:
        if self._live:
            log.warning(
                "key change channel lost (%s): falling back to a %g s time-to-live", why, self._fallback_ttl
            )
            self._since = time.time()
            self.losses += 1
        self._live = False
        # Messages sent while the channel was going down are lost: start over from the database.
        self._cache.flush()

    def _message(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            op, name = str(data["op"]), data.get("name")
        except (ValueError, KeyError, TypeError):
            op, name = "update", None
        self._cache.changed(op, name if isinstance(name, str) else None)

    async def _run(self) -> None:
        import asyncpg  # PostgreSQL's driver: imported only when the database is PostgreSQL (~4 MB)

        delay = RECONNECT_FIRST
        while True:
            try:
                await self._listen()
                delay = RECONNECT_FIRST  # it was up: the next drop starts the backoff anew
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self._down(type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _listen(self) -> None:
        import asyncpg

        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout, server_settings={"application_name": LISTENER_NAME}
        )
        closed = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: closed.set())
            await conn.add_listener(CHANNEL, self._message)
            self._cache.flush()  # whatever changed before the channel was up
            if not self._live:
                log.info("key change channel up (LISTEN %s)", CHANNEL)
            self._live = True
            while not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), self._probe_interval)
                if closed.is_set() or conn.is_closed():
                    break
                await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
            self._down("connection closed")
        finally:
            if not conn.is_closed():
                conn.terminate()
