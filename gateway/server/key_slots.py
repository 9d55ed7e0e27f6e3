"""Requests in flight per key, per process: one key cannot take every slot of the in-flight cap.

What belongs here: `KeySlots`. The edge's in-flight cap (`SLUICE_MAX_CONCURRENCY`) bounds a process;
without a bound per key, one client (or one leaked key) holding that many slow requests, say bodies
trickling in and reopened after each 408, would leave nothing for anyone else. A request claims
its key's slot right after authentication, before its body is read, with `hold()`, a context manager
the request's claims (`gateway.server.edge.Inbound.claims`) keep open until the response has been
sent, whatever happened in between.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway.errors import RateLimited


class KeySlots:
    def __init__(self, limit: int) -> None:
        """`limit` requests in flight per key name; 0: no limit."""
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold a slot for `key` while the block runs; past the limit, a 429 and nothing held."""
        if not self.limit:
            yield
            return
        held = self._held.get(key, 0)
        if held >= self.limit:
            message = f"this key has {self.limit} requests in flight (SLUICE_MAX_CONCURRENCY_PER_KEY)"
            raise RateLimited(f"{message}; retry shortly", headers={"retry-after": "1"})
        self._held[key] = held + 1
        try:
            yield
        finally:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)
