"""What `create_app` builds over `SLUICE_DATABASE_URL`: the `Storage` of one gateway process.

What belongs here: assembling the database, the key store (a `KeyCache` over the database, with
the change source that fits the backend) and the ledger writer from settings,
and their start-up and shutdown. Start-up applies migrations and refuses a key name defined both
in the config file and in the database; when the database does not answer, it logs one warning
and the gateway serves anyway (the ledger spools, database keys answer 503 until it is back).
A spool that cannot be written, though, stops start-up (`require_writable_spool`): without it an
outage would lose records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection

from gateway.config import ConfigError
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.key_cache import FALLBACK_TTL, UNKNOWN_PER_SECOND, ChangeSource, KeyCache, NoChanges
from gateway.storage.key_channels import PgChangeListener, SqliteVersionWatch
from gateway.storage.keys import DatabaseKeyStore, active_names
from gateway.storage.ledger import DB_ERRORS, LedgerSink, describe
from gateway.storage.spool import Spool

log = logging.getLogger("sluice.storage")


def require_writable_spool(settings: Settings) -> None:
    """Raise ConfigError, one line, when the audit spool (SLUICE_AUDIT_SPOOL) cannot be written."""
    problem = Spool(settings.audit_spool).problem()
    if problem is not None:
        raise ConfigError(
            f"audit spool {settings.audit_spool}: {problem}; make its folder writable by uid {os.getuid()}"
            " or set SLUICE_AUDIT_SPOOL to a file in a writable folder (records wait there while the"
            " database is down)"
        )


def change_source(
    cache: KeyCache, db: Database, *, fallback_ttl: float = FALLBACK_TTL, connect_timeout: float = 5.0
) -> ChangeSource:
    """How `cache` learns of key changes on this database (gateway.storage.key_cache)."""
    if db.dialect == "postgresql":
        return PgChangeListener(cache, db.url, fallback_ttl=fallback_ttl, connect_timeout=connect_timeout)
    path = db.url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        return SqliteVersionWatch(cache, path)
    return NoChanges()  # an in-memory or URI database: no cache


class Storage:
    def __init__(
        self,
        db: Database,
        ledger: LedgerSink,
        *,
        reserved_names: Collection[str] = (),
        key_fallback_ttl: float = FALLBACK_TTL,
        unknown_keys_per_second: float = UNKNOWN_PER_SECOND,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.reserved_names = frozenset(reserved_names)
        self.keys = KeyCache(
            DatabaseKeyStore(db, reserved_names=self.reserved_names),
            unknown_per_second=unknown_keys_per_second,
        )
        self.keys.source = change_source(self.keys, db, fallback_ttl=key_fallback_ttl)

    @classmethod
    def from_settings(cls, settings: Settings, *, reserved_names: Collection[str] = ()) -> Storage:
        """Builds without connecting: a gateway whose database is down still starts."""
        db = Database(settings.database_url)
        return cls(
            db,
            LedgerSink(db, settings.audit_spool),
            reserved_names=reserved_names,
            key_fallback_ttl=settings.key_cache_fallback_ttl,
            unknown_keys_per_second=settings.unknown_key_lookups_per_second,
        )

    async def start(self) -> None:
        """Apply migrations and check key names; raises ConfigError on a name clash."""
        await self.keys.source.start()  # the listener connects (and reconnects) on its own
        try:
            await self.db.ensure_schema()
            names = await active_names(self.db)
        except DB_ERRORS as exc:
            log.warning(
                "database %s unreachable at start-up (%s): serving anyway; audit records are spooled to %s "
                "and database keys are refused until it answers",
                self.db.display_url,
                describe(exc),
                self.ledger.spool_path,
            )
            return
        clash = sorted(names & self.reserved_names)
        if clash:
            await self.keys.source.stop()
            await self.db.dispose()
            line = (
                f"keys: {', '.join(map(repr, clash))} defined both in the config file and in the database; "
                "rename the config key or revoke the database key (`sluice keys revoke NAME`)"
            )
            log.error("%s", line)
            raise ConfigError(line)
        self.ledger.answered()
        log.info("database %s ready (schema current, %d database keys)", self.db.display_url, len(names))

    async def stop(self) -> None:
        await self.keys.source.stop()
        await self.db.dispose()
