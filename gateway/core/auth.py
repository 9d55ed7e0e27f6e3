"""Authentication: bearer keys, stored hashed, compared in constant time.

What belongs here: `KeyRecord` (who is calling, with which policy and models), the `KeyStore`
seam (config keys now; a database store plugs in beside it), hashing, and `Authenticator`,
which reads `Authorization: Bearer`, `api-key` or `x-api-key` and refuses ambiguous or unknown
keys with 401, and keeps the two kinds of key to their own routes (403): the master key only
administers (`/admin`, `/metrics`), a client key only makes model requests. A key's plaintext,
and its hash, are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from gateway.config import Config
from gateway.core.limits import NO_LIMITS, KeyLimits
from gateway.errors import ClientKeyRequired, MasterKeyRequired, Unauthenticated
from gateway.names import OnViolation
from gateway.settings import Settings

MASTER = "master"
MAX_KEY_LENGTH = 512


def hash_key(key: str) -> str:
    """The stored form of a key: `sha256:<hex>`. Keys are long random strings, so a fast hash is enough."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    name: str
    key_hash: str
    policy: tuple[str, ...] = ()
    models: frozenset[str] | None = None
    on_violation: OnViolation | None = None
    origin: str = "config"
    expires_at: datetime | None = None
    revoked: bool = False
    is_master: bool = False
    limits: KeyLimits = NO_LIMITS  # unset ones: the server's default (SLUICE_KEY_RPM, ...)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def valid_at(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class KeyStore(Protocol):
    async def find(self, key_hash: str) -> KeyRecord | None: ...


class StaticKeyStore:
    """Keys known at start-up: the config file's keys and the master key."""

    def __init__(self, records: Iterable[KeyRecord]) -> None:
        self._by_hash: dict[str, KeyRecord] = {r.key_hash: r for r in records}

    async def find(self, key_hash: str) -> KeyRecord | None:
        found = self._by_hash.get(key_hash)
        if found is not None and hmac.compare_digest(found.key_hash, key_hash):
            return found
        return None

    @property
    def names(self) -> set[str]:
        return {r.name for r in self._by_hash.values()}


def config_keys(config: Config, settings: Settings) -> tuple[list[KeyRecord], list[str]]:
    """Key records from config, and one warning line per key whose hash variable is unset."""
    records: list[KeyRecord] = []
    warnings: list[str] = []
    for key in config.keys:
        key_hash = key.key_hash or (settings.read_secret(key.key_hash_env) if key.key_hash_env else None)
        if key_hash is None:
            warnings.append(
                f"key {key.name}: environment variable {key.key_hash_env} is not set; key disabled"
            )
            continue
        if not key_hash.startswith("sha256:"):
            warnings.append(
                f"key {key.name}: {key.key_hash_env} must hold 'sha256:<hex>' (see `sluice keys hash`)"
            )
            continue
        models = frozenset(key.models) if key.models is not None else None
        limits = KeyLimits(key.rpm, key.tpm, key.max_concurrency)
        records.append(
            KeyRecord(key.name, key_hash.lower(), tuple(key.policy), models, key.on_violation, limits=limits)
        )
    master = settings.master_key
    if master is not None:
        records.append(
            KeyRecord(MASTER, hash_key(master.get_secret_value()), origin="environment", is_master=True)
        )
    return records, warnings


class HeaderLines(Protocol):
    """Request headers that keep repeated lines (Starlette's `Headers`)."""

    def getlist(self, key: str) -> list[str]: ...


def presented_key(headers: HeaderLines) -> str:
    """The key a request presents. Two different keys in one request (in two headers, or in two
    lines of the same header) are refused, never guessed between."""
    found: list[str] = []
    for auth in headers.getlist("authorization"):
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("use 'Authorization: Bearer <key>'")
        found.append(value.strip())
    for name in ("api-key", "x-api-key"):
        found.extend(value.strip() for value in headers.getlist(name))
    if not found or not found[0]:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    if any(not hmac.compare_digest(k.encode(), found[0].encode()) for k in found[1:]):
        raise Unauthenticated("the request carries two different API keys")
    key = found[0]
    if len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise Unauthenticated("invalid API key")
    return key


class Authenticator:
    def __init__(self, stores: Sequence[KeyStore]) -> None:
        self._stores = tuple(stores)

    async def authenticate(self, headers: HeaderLines) -> KeyRecord:
        key_hash = hash_key(presented_key(headers))
        now = datetime.now(UTC)
        for store in self._stores:
            record = await store.find(key_hash)
            if record is not None:
                if not record.valid_at(now):
                    break
                return record
        raise Unauthenticated("invalid API key")

    async def client(self, headers: HeaderLines) -> KeyRecord:
        """A key for model requests: any valid key but the master key (least privilege)."""
        record = await self.authenticate(headers)
        if record.is_master:
            raise ClientKeyRequired(
                "the master key (SLUICE_MASTER_KEY) only administers Sluice; send a client key "
                "(create one with `sluice keys create` or POST /admin/keys)"
            )
        return record

    async def master(self, headers: HeaderLines, *, refusal: str) -> KeyRecord:
        """The master key, or a 403 saying `refusal` for any other valid key."""
        record = await self.authenticate(headers)
        if not record.is_master:
            raise MasterKeyRequired(refusal)
        return record
