"""Client keys in the database: the `DatabaseKeyStore` the authenticator asks, and the key lifecycle.

What belongs here: creating a key (the plaintext is returned once and never stored: only its
`sha256:<hex>` hash, from `gateway.core.auth.hash_key`), listing and revoking keys, changing a key's
limits (`update_limits`), checking a new key's
fields, and looking a presented key's hash up (`gateway.storage.key_cache` caches the answers). Every change
to `api_keys` calls `notify_change` inside its transaction, so that a revoked key is refused on the
next request on every replica sharing the database.
A database that does not answer fails closed with 503 (never a silent 401 or a stale answer).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.core.auth import MASTER, KeyRecord, hash_key
from gateway.core.limits import NO_LIMITS, KeyLimits
from gateway.errors import KeyStoreUnavailable
from gateway.names import OnViolation
from gateway.storage.chain import utc
from gateway.storage.db import Database, api_keys
from gateway.storage.key_channels import notify_change
from gateway.storage.ledger import DB_ERRORS, describe

log = logging.getLogger("sluice.keys")
KEY_PREFIX = "sk-sluice-"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class KeyNameTaken(ValueError):
    pass


class KeyNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StoredKey:
    """A database key as listed: never its plaintext, never its hash."""

    name: str
    policy: tuple[str, ...]
    models: tuple[str, ...] | None
    on_violation: OnViolation | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    limits: KeyLimits = NO_LIMITS

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def as_dict(self, now: datetime) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat(timespec="seconds") if moment else None

        return {
            "name": self.name,
            "status": self.state(now),
            "policy": list(self.policy),
            "models": list(self.models) if self.models is not None else None,
            "on_violation": self.on_violation.value if self.on_violation else None,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            **self.limits.as_dict(),
        }


def _stored(row: Any) -> StoredKey:
    return StoredKey(
        name=row.name,
        policy=tuple(row.policy or ()),
        models=tuple(row.models) if row.models is not None else None,
        on_violation=OnViolation(row.on_violation) if row.on_violation else None,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at) if row.expires_at else None,
        revoked_at=utc(row.revoked_at) if row.revoked_at else None,
        limits=KeyLimits(row.rpm, row.tpm, row.max_concurrency),
    )


def key_problems(
    name: str,
    policy: Sequence[str],
    models: Sequence[str] | None,
    *,
    known_policies: Collection[str],
    known_models: Collection[str] | None,
    reserved_names: Collection[str],
) -> list[str]:
    """Why a new key may not be created as asked (empty when it may), one line each."""
    problems: list[str] = []
    if not NAME_PATTERN.match(name):
        problems.append(f"name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-'")
    elif name == MASTER or name in reserved_names:
        problems.append(f"name {name!r} is taken by a key in the config file (or the master key)")
    problems += [f"unknown policy {p[:64]!r}" for p in policy if p not in known_policies]
    if models is not None and known_models is not None:
        problems += [f"no model named {m[:64]!r}" for m in models if m not in known_models]
    return problems


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    db: Database,
    *,
    name: str,
    policy: Sequence[str] = (),
    models: Sequence[str] | None = None,
    on_violation: OnViolation | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    limits: KeyLimits = NO_LIMITS,
) -> tuple[str, StoredKey]:
    """Store a new key's hash; returns the plaintext (shown once) and the stored key."""
    await db.ensure_schema()
    now = now or datetime.now(UTC)
    key = new_key()
    values = {
        "name": name,
        "key_hash": hash_key(key),
        "policy": list(policy),
        "models": list(models) if models is not None else None,
        "on_violation": on_violation.value if on_violation else None,
        "created_at": now,
        "expires_at": expires_at,
        "revoked_at": None,
        **limits.as_dict(),
    }
    async with db.engine.begin() as conn:
        taken = await conn.execute(
            select(api_keys.c.expires_at).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        )
        existing = taken.first()
        if existing is not None:
            hint = " (expired)" if existing.expires_at and utc(existing.expires_at) <= now else ""
            raise KeyNameTaken(
                f"a key named {name!r} exists{hint}; revoke it first (`sluice keys revoke {name}`)"
            )
        try:
            await conn.execute(api_keys.insert().values(values))
        except IntegrityError:
            raise KeyNameTaken(f"a key named {name!r} was created meanwhile") from None
        await notify_change(conn, "create", name)
    stored = StoredKey(
        name=name,
        policy=tuple(policy),
        models=tuple(models) if models is not None else None,
        on_violation=on_violation,
        created_at=utc(now),
        expires_at=utc(expires_at) if expires_at else None,
        revoked_at=None,
        limits=limits,
    )
    return key, stored


async def list_keys(db: Database) -> list[StoredKey]:
    await db.ensure_schema()
    async with db.engine.connect() as conn:
        result = await conn.execute(select(api_keys).order_by(api_keys.c.name, api_keys.c.created_at))
        return [_stored(row) for row in result]


async def active_names(db: Database) -> set[str]:
    """Names of keys not revoked (expired ones included: they still hold their name)."""
    await db.ensure_schema()
    async with db.engine.connect() as conn:
        result = await conn.execute(select(api_keys.c.name).where(api_keys.c.revoked_at.is_(None)))
        return {row.name for row in result}


async def revoke_key(db: Database, name: str, *, now: datetime | None = None) -> StoredKey:
    """Revoke the key named `name`; raises KeyNotFound when no unrevoked key has that name."""
    await db.ensure_schema()
    now = now or datetime.now(UTC)
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(*api_keys.c)
        )
        row = result.first()
        if row is not None:
            await notify_change(conn, "revoke", name)
    if row is None:
        raise KeyNotFound(f"no active key named {name!r}")
    return _stored(row)


async def update_limits(db: Database, name: str, **changes: int | None) -> StoredKey:
    """Set the limits named in `changes` (`rpm`, `tpm`, `max_concurrency`; None: the server's default)
    on the active key `name`; every replica sees them on the key's next request."""
    unknown = changes.keys() - {"rpm", "tpm", "max_concurrency"}
    if unknown:
        raise ValueError(f"not a limit: {', '.join(sorted(unknown))}")
    await db.ensure_schema()
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(**changes)
            .returning(*api_keys.c)
        )
        row = result.first()
        if row is not None:
            await notify_change(conn, "update", name)
    if row is None:
        raise KeyNotFound(f"no active key named {name!r}")
    return _stored(row)


class DatabaseKeyStore:
    """`KeyStore` over `api_keys`: one indexed lookup (`KeyCache` stands in front of it)."""

    def __init__(self, db: Database, *, reserved_names: Collection[str] = ()) -> None:
        self._db = db
        self._reserved = frozenset(reserved_names) | {MASTER}

    async def find(self, key_hash: str) -> KeyRecord | None:
        row = await self._row(api_keys.c.key_hash == key_hash)
        if row is None or not hmac.compare_digest(row.key_hash.encode(), key_hash.encode()):
            return None
        return self._record(row)

    async def find_active(self, name: str) -> KeyRecord | None:
        """The unrevoked key named `name` (the key cache learns a new key's hash this way)."""
        row = await self._row((api_keys.c.name == name) & api_keys.c.revoked_at.is_(None))
        return self._record(row) if row is not None else None

    async def _row(self, where: Any) -> Any:
        try:
            await self._db.ensure_schema()
            async with self._db.engine.connect() as conn:
                result = await conn.execute(select(api_keys).where(where))
                return result.first()
        except DB_ERRORS as exc:
            log.error("key store %s unavailable: %s", self._db.display_url, describe(exc))
            raise KeyStoreUnavailable("the key store is unavailable; try again shortly") from None

    def _record(self, row: Any) -> KeyRecord | None:
        if row.name in self._reserved:
            log.error("database key %r has the name of a config key; refused", row.name)
            return None
        stored = _stored(row)
        return KeyRecord(
            name=stored.name,
            key_hash=row.key_hash,
            policy=stored.policy,
            models=frozenset(stored.models) if stored.models is not None else None,
            on_violation=stored.on_violation,
            origin="database",
            expires_at=stored.expires_at,
            revoked=stored.revoked_at is not None,
            limits=stored.limits,
        )
