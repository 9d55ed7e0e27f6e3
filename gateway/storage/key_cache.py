"""The in-process cache of database keys: what is cached, for how long, and what a miss costs.

What belongs here: `KeyCache` (a `KeyStore` in front of the database's), the negative cache and
the token bucket that keep a flood of unknown keys off the database, the `ChangeSource` seam
through which changes reach the cache (the sources themselves, PostgreSQL `LISTEN` and SQLite's
`PRAGMA data_version`, are in `gateway.storage.key_channels`), and the cache's `/metrics` families.

The rules, in one place:

- A found key's record is cached, revoked or not; whether it is valid (not revoked, not expired) is
  judged from the cached record on every request (`KeyRecord.valid_at`), so expiry needs no message.
- While the change source sees every change (`ttl` None) an entry is trusted until a change marks it
  stale; while it may miss changes (PostgreSQL's channel down) an entry is trusted `ttl` seconds.
- Invalidation marks entries stale rather than forgetting them: a stale entry is never served, but
  its key is looked up again without a token, so the keys in use never compete with a flood.
  `changed(op, name)` marks one name's entries; `flush()` all of them (changes may have been missed).
- Unknown keys: a miss is remembered in a bounded LRU (`NEGATIVE_SIZE`), and database lookups for
  keys in neither cache are capped by a token bucket (`unknown_per_second`); past the cap the
  request gets 503 with `Retry-After: 1` (the key could not be checked), never a query. A create
  makes the process fetch the new key by name, so a new key is known before its first use.
- Requests that miss together share one lookup, unless a change came since it started.
- A lookup that raced with a change (filled from a read older than an invalidation) is not stored:
  every invalidation moves a counter, and a fill stores only if the counter did not move.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.core.auth import KeyRecord, KeyStore
from gateway.errors import SluiceError, UnknownKeysThrottled

FALLBACK_TTL = 5.0  # seconds an entry lives while the notification channel is down
NEGATIVE_SIZE = 10_000  # unknown key hashes remembered (about 1 MB)
POSITIVE_SIZE = 100_000  # known keys remembered, revoked ones included
UNKNOWN_PER_SECOND = 20.0  # database lookups for keys in neither cache, per second and process


class TokenBucket:
    """`rate` tokens per second, at most `rate` (one second's worth) saved up."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


STALE = -1  # the epoch of an entry that must be looked up again


@dataclass(frozen=True)
class _Entry:
    record: KeyRecord | None  # None: no such key
    filled: float
    epoch: int  # valid only while it is the cache's epoch


@dataclass
class CacheStats:
    hits: int = 0
    negative_hits: int = 0
    lookups: int = 0  # database queries for a key, found or not
    unknown_lookups: int = 0  # of which for keys in neither cache
    throttled: int = 0
    shared: int = 0  # answered by a lookup another request had started
    flushes: int = 0


class NamedKeyStore(KeyStore, Protocol):
    async def find_active(self, name: str) -> KeyRecord | None: ...


class ChangeSource(Protocol):
    """How the cache learns of changes: `ttl` is None while every change is seen, else the seconds
    an entry may be trusted; `check` runs before each lookup (SQLite polls there)."""

    @property
    def ttl(self) -> float | None: ...

    def check(self) -> None: ...

    def status(self) -> tuple[str, str]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class KeyCache:
    """A `KeyStore` that answers from memory and asks `store` (the database) on a miss."""

    def __init__(
        self,
        store: NamedKeyStore,
        *,
        unknown_per_second: float = UNKNOWN_PER_SECOND,
        negative_size: int = NEGATIVE_SIZE,
        positive_size: int = POSITIVE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._positive: OrderedDict[str, _Entry] = OrderedDict()
        self._negative: OrderedDict[str, _Entry] = OrderedDict()
        self._positive_size = positive_size
        self._negative_size = negative_size
        self._bucket = TokenBucket(unknown_per_second, clock=clock)
        self._epoch = 0  # moves on every flush: entries of an older epoch are stale
        self._changes = 0  # moves on every invalidation: a lookup under way may have read an old row
        self.stats = CacheStats()
        self.source: ChangeSource = NoChanges()
        self._prefetches: set[asyncio.Task[None]] = set()
        self._inflight: dict[str, tuple[int, asyncio.Task[KeyRecord | None]]] = {}

    def _fresh(self, entry: _Entry | None, ttl: float | None, now: float) -> bool:
        return entry is not None and entry.epoch == self._epoch and (ttl is None or now - entry.filled < ttl)

    async def find(self, key_hash: str) -> KeyRecord | None:
        self.source.check()
        ttl, now = self.source.ttl, self._clock()
        entry = self._positive.get(key_hash)
        if self._fresh(entry, ttl, now):
            assert entry is not None
            self.stats.hits += 1
            return entry.record
        if entry is None:
            missing = self._negative.get(key_hash)
            if self._fresh(missing, ttl, now):
                self._negative.move_to_end(key_hash)
                self.stats.negative_hits += 1
                return None
        # Requests that miss together share one lookup (after a flush, 64 requests in flight with
        # one key cost one query, not 64), unless a change came since it started.
        pending = self._inflight.get(key_hash)
        if pending is not None and pending[0] == self._changes:
            self.stats.shared += 1
            return await asyncio.shield(pending[1])
        # A stale entry of a known key is looked up again without a token: after a flush, the keys
        # in use must not compete with a flood of unknown ones.
        if entry is None:
            if not self._bucket.take():
                self.stats.throttled += 1
                raise UnknownKeysThrottled(
                    "too many unknown API keys; try again shortly", headers={"retry-after": "1"}
                )
            self.stats.unknown_lookups += 1
        task = asyncio.get_running_loop().create_task(self._lookup(key_hash, ttl, self._changes))
        self._inflight[key_hash] = (self._changes, task)
        task.add_done_callback(lambda done: self._settled(key_hash, done))
        return await asyncio.shield(task)  # a caller that goes away leaves the lookup to the others

    async def _lookup(self, key_hash: str, ttl: float | None, changes: int) -> KeyRecord | None:
        self.stats.lookups += 1
        record = await self._store.find(key_hash)  # KeyStoreUnavailable (503) passes through
        if changes == self._changes and ttl != 0:
            self._remember(key_hash, _Entry(record, self._clock(), self._epoch))
        return record

    def _settled(self, key_hash: str, done: asyncio.Task[KeyRecord | None]) -> None:
        pending = self._inflight.get(key_hash)
        if pending is not None and pending[1] is done:
            del self._inflight[key_hash]
        if not done.cancelled():
            done.exception()  # retrieved: every caller that waited has seen it already

    def _remember(self, key_hash: str, entry: _Entry) -> None:
        table, size = (self._positive, self._positive_size)
        if entry.record is None:
            table, size = (self._negative, self._negative_size)
            self._positive.pop(key_hash, None)
        else:
            self._negative.pop(key_hash, None)
        table[key_hash] = entry
        table.move_to_end(key_hash)
        while len(table) > size:
            table.popitem(last=False)

    def changed(self, op: str, name: str | None) -> None:
        """A key was created, revoked or updated (name None: unknown which)."""
        if name is None:
            self.flush()
            return
        self._changes += 1
        if op != "revoke":
            self._negative.clear()  # a new (or changed) key may be one remembered as unknown
        named = [h for h, e in self._positive.items() if e.record is not None and e.record.name == name]
        for key_hash in named:
            entry = self._positive[key_hash]
            self._positive[key_hash] = _Entry(entry.record, entry.filled, STALE)
        if op == "create" and self.source.ttl != 0:
            # Learn the new key now, so that its first request is no unknown-key lookup (which a
            # flood may have used up).
            task = asyncio.get_running_loop().create_task(self._prefetch(name))
            self._prefetches.add(task)
            task.add_done_callback(self._prefetches.discard)

    async def _prefetch(self, name: str) -> None:
        changes = self._changes
        try:
            record = await self._store.find_active(name)
        except SluiceError:
            return  # logged by the store; the key's first request looks it up as usual
        if record is not None and changes == self._changes:
            self._remember(record.key_hash, _Entry(record, self._clock(), self._epoch))

    def flush(self) -> None:
        """Trust nothing cached any more (changes may have been missed); known keys stay known."""
        self._epoch += 1
        self._changes += 1
        self._negative.clear()
        self.stats.flushes += 1

    def families(self) -> list[Metric]:
        """`/metrics`: the channel's state and the cache's counters (no key names, no hashes)."""
        state, _ = self.source.status()
        channel = GaugeMetricFamily(
            "sluice_key_cache_channel_up",
            "1 while every key change reaches this process's cache (LISTEN or data_version), "
            "0 while it falls back to a time-to-live.",
            value=1 if state == "ok" else 0,
        )
        ttl = GaugeMetricFamily(
            "sluice_key_cache_ttl_seconds",
            "How long a cached key is trusted now: 0 while the channel is up (until a change), "
            "the fallback time-to-live while it is down.",
            value=self.source.ttl or 0,
        )
        entries = GaugeMetricFamily(
            "sluice_key_cache_entries", "Cached key records, by kind.", labels=("kind",)
        )
        entries.add_metric(("known",), len(self._positive))
        entries.add_metric(("unknown",), len(self._negative))
        events = CounterMetricFamily(
            "sluice_key_cache_events_total",
            "Key lookups by outcome: hit, unknown_hit (negative cache), database (a query), "
            "unknown_database (a query for a key in neither cache), shared (answered by a query under "
            "way), throttled (refused, no query), flush (the whole cache made stale).",
            labels=("event",),
        )
        for name, count in (
            ("hit", self.stats.hits),
            ("unknown_hit", self.stats.negative_hits),
            ("database", self.stats.lookups),
            ("unknown_database", self.stats.unknown_lookups),
            ("shared", self.stats.shared),
            ("throttled", self.stats.throttled),
            ("flush", self.stats.flushes),
        ):
            events.add_metric((name,), count)
        return [channel, ttl, entries, events]


class NoChanges:
    """No change source (yet): trust nothing (`ttl` 0), so every lookup asks the database."""

    ttl: float | None = 0.0

    def check(self) -> None:
        return None

    def status(self) -> tuple[str, str]:
        return "degraded", "no key change channel: every lookup asks the database"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
