"""Per-key limits (`rpm`, `tpm`, `max_concurrency`) and the state that several replicas share.

What belongs here: `KeyLimits` (a key's limits, and the server-wide default), `Verdict` (one
check's answer: allowed or which limit, what remains, when it resets), the `SharedState` protocol
(the limit check, counting tokens and ending a request, the retry budget, the breaker and hold
events), `LocalState` (all of it in this process) and `Limiter`, the pipeline's step that checks a
request against its key's limits, answers 429 `rate_limited` with `Retry-After` and OpenAI's
`x-ratelimit-*` headers, and counts the tokens the upstream reported. `gateway.storage.redis_state`
holds the Redis implementation, with this module's `LocalState` as its fallback while Redis is away.

Windows: requests and tokens are counted in one-second buckets over the last 60 s (a sliding
window: at most `rpm` requests in any minute, to the second); a concurrency lease expires after
`lease_seconds` even if its process died before releasing it. Without Redis every process keeps
its own counts, so N processes together allow up to N times each limit.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.resilience import Resilience
from gateway.core.retry_after import rate_limited_headers
from gateway.errors import RateLimited
from gateway.names import Header

WINDOW = 60  # seconds: requests and tokens per minute
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class KeyLimits:
    """A key's limits; None: the server's default applies; 0: no limit."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None

    def over(self, default: KeyLimits) -> KeyLimits:
        """These limits, each unset one taken from `default`."""
        return KeyLimits(
            self.rpm if self.rpm is not None else default.rpm,
            self.tpm if self.tpm is not None else default.tpm,
            self.max_concurrency if self.max_concurrency is not None else default.max_concurrency,
        )

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_concurrency)

    def as_dict(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm, "max_concurrency": self.max_concurrency}


NO_LIMITS = KeyLimits()


@dataclass(frozen=True)
class Verdict:
    """One check's answer. Counts are what the window held before this request."""

    allowed: bool
    limited_by: str | None = None  # "requests", "tokens" or "concurrency"
    requests: int = 0
    requests_reset: float = 0.0  # seconds until the oldest counted request leaves the window
    tokens: int = 0
    tokens_reset: float = 0.0
    lease: str | None = None  # the concurrency lease this request holds (release it when done)
    shared: bool = False  # counted in the state every replica shares


@dataclass(frozen=True)
class ResilienceEvent:
    """A circuit opened or closed, or a hold, for one deployment, to apply on every replica."""

    kind: str  # "open", "close" or "hold"
    deployment: str
    seconds: float = 0.0  # how long from now (open, hold)
    reopens: int = 0


class SharedState(Protocol):
    """What replicas share (or, without Redis, one process keeps): limits, budget, breaker events."""

    async def admit(self, key: str, limits: KeyLimits, lease: str) -> Verdict:
        """Check `key` against `limits` and, if allowed, count the request (and hold `lease` when
        `limits.max_concurrency`); count it for the retry budget in any case. One atomic step."""

    async def finish(self, key: str, verdict: Verdict, tokens: int) -> None:
        """The request ended: count `tokens` for `key` and release the verdict's lease."""

    def finish_soon(self, key: str, verdict: Verdict, tokens: int) -> None:
        """`finish` without waiting for it (from the running loop); never raises."""

    async def acquire_retry(self) -> bool:
        """Spend one retry of the retry budget (an attempt beyond a request's first)."""

    def publish(self, event: ResilienceEvent) -> None:
        """Tell the other replicas (no-op for one process); never waits."""

    def status(self) -> tuple[str, str]:
        """(`ok`, `degraded` or `local`, a detail line) for `/readyz`."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Buckets:
    """Counts per second over the last `WINDOW` seconds (one key's requests, or its tokens)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: deque[list[int]] = deque()  # [second, count], oldest first

    def total(self, now: float) -> tuple[int, float]:
        """(the count in the window, seconds until the oldest bucket leaves it)."""
        horizon = math.floor(now) - WINDOW
        while self.counts and self.counts[0][0] <= horizon:
            self.counts.popleft()
        if not self.counts:
            return 0, 0.0
        return sum(c for _, c in self.counts), self.counts[0][0] + WINDOW - now

    def add(self, now: float, amount: int) -> None:
        second = math.floor(now)
        if self.counts and self.counts[-1][0] == second:
            self.counts[-1][1] += amount
        else:
            self.counts.append([second, amount])


@dataclass
class _KeyState:
    requests: _Buckets = field(default_factory=_Buckets)
    tokens: _Buckets = field(default_factory=_Buckets)
    leases: dict[str, float] = field(default_factory=dict)  # lease -> expiry


def decide(
    limits: KeyLimits, requests: tuple[int, float], tokens: tuple[int, float], in_flight: int
) -> str | None:
    """Which limit a request would pass (None: none), from the window's counts before it."""
    if limits.rpm and requests[0] >= limits.rpm:
        return "requests"
    if limits.tpm and tokens[0] >= limits.tpm:
        return "tokens"
    if limits.max_concurrency and in_flight >= limits.max_concurrency:
        return "concurrency"
    return None


class LocalState:
    """`SharedState` in one process: exact within it, nothing shared with other processes."""

    def __init__(
        self,
        resilience: Resilience,
        *,
        lease_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resilience = resilience
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

    async def admit(self, key: str, limits: KeyLimits, lease: str) -> Verdict:
        return self.admit_now(key, limits, lease)

    def admit_now(self, key: str, limits: KeyLimits, lease: str) -> Verdict:
        self._resilience.budget.request()
        if not limits.active:
            return Verdict(True)
        now = self._clock()
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        requests, tokens = state.requests.total(now), state.tokens.total(now)
        for held, expiry in list(state.leases.items()):
            if expiry <= now:
                del state.leases[held]
        limited = decide(limits, requests, tokens, len(state.leases))
        if limited is not None:
            return Verdict(False, limited, requests[0], requests[1], tokens[0], tokens[1])
        state.requests.add(now, 1)
        held_lease = None
        if limits.max_concurrency:
            state.leases[lease] = now + self._lease_seconds
            held_lease = lease
        reset = requests[1] if requests[0] else float(WINDOW)
        return Verdict(True, None, requests[0], reset, tokens[0], tokens[1], held_lease)

    async def finish(self, key: str, verdict: Verdict, tokens: int) -> None:
        self.finish_now(key, verdict, tokens)

    def finish_soon(self, key: str, verdict: Verdict, tokens: int) -> None:
        self.finish_now(key, verdict, tokens)

    def finish_now(self, key: str, verdict: Verdict, tokens: int) -> None:
        state = self._keys.get(key)
        if state is None:
            if tokens <= 0:
                return
            state = self._keys[key] = _KeyState()
        if tokens > 0:
            state.tokens.add(self._clock(), tokens)
        if verdict.lease is not None:
            state.leases.pop(verdict.lease, None)

    async def acquire_retry(self) -> bool:
        return self._resilience.budget.acquire()

    def publish(self, event: ResilienceEvent) -> None:
        return None

    def status(self) -> tuple[str, str]:
        return "local", "per process (SLUICE_REDIS_URL not set)"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `17ms`, `6s`, `1m0s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def rate_headers(limits: KeyLimits, verdict: Verdict) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the limits a key has (none for a limit it has not)."""
    headers: dict[str, str] = {}
    taken = 1 if verdict.allowed else 0
    if limits.rpm:
        headers[Header.RATELIMIT_LIMIT_REQUESTS] = str(limits.rpm)
        headers[Header.RATELIMIT_REMAINING_REQUESTS] = str(max(0, limits.rpm - verdict.requests - taken))
        headers[Header.RATELIMIT_RESET_REQUESTS] = _duration(verdict.requests_reset)
    if limits.tpm:
        headers[Header.RATELIMIT_LIMIT_TOKENS] = str(limits.tpm)
        headers[Header.RATELIMIT_REMAINING_TOKENS] = str(max(0, limits.tpm - verdict.tokens))
        headers[Header.RATELIMIT_RESET_TOKENS] = _duration(verdict.tokens_reset)
    return headers


def asked_tokens(fields: Mapping[str, Any]) -> int:
    """The most output tokens a request asks for (0: it does not say)."""
    values = [fields.get(name) for name in TOKEN_FIELDS]
    return max((v for v in values if isinstance(v, int) and not isinstance(v, bool)), default=0)


@dataclass(frozen=True)
class Admission:
    """A request let through: what to send with its answer and what to release when it ends."""

    key: str
    limits: KeyLimits
    verdict: Verdict
    headers: dict[str, str]

    @property
    def counts_tokens(self) -> bool:
        return bool(self.limits.tpm)


class Limiter:
    """The pipeline's limit step, over one `SharedState` (built in `gateway.app.build_services`)."""

    def __init__(self, state: SharedState, *, default: KeyLimits = NO_LIMITS) -> None:
        self.state = state
        self.default = default
        self.refused: dict[str, int] = {"requests": 0, "tokens": 0, "concurrency": 0}

    def limits_for(self, key_limits: KeyLimits) -> KeyLimits:
        return key_limits.over(self.default)

    async def admit(self, key: str, key_limits: KeyLimits, fields: Mapping[str, Any]) -> Admission:
        """Let the request through, or raise `RateLimited` (429) saying which limit and until when."""
        limits = self.limits_for(key_limits)
        if limits.tpm and asked_tokens(fields) > limits.tpm:
            self.refused["tokens"] += 1
            raise RateLimited(
                f"this request asks for up to {asked_tokens(fields)} output tokens, more than this key's "
                f"limit of {limits.tpm} tokens per minute; lower max_tokens",
                headers={**rate_headers(limits, Verdict(False)), "x-should-retry": "false"},
            )
        verdict = await self.state.admit(key, limits, secrets.token_hex(8))
        headers = rate_headers(limits, verdict)
        if not verdict.allowed:
            which = verdict.limited_by or "requests"
            self.refused[which] = self.refused.get(which, 0) + 1
            wait = {"requests": verdict.requests_reset, "tokens": verdict.tokens_reset}.get(which, 1.0)
            what = {
                "requests": f"{limits.rpm} requests per minute",
                "tokens": f"{limits.tpm} tokens per minute",
                "concurrency": f"{limits.max_concurrency} requests in flight",
            }[which]
            raise RateLimited(
                f"this key is over its limit of {what}; try again later",
                headers={**headers, **rate_limited_headers(wait)},
            )
        return Admission(key, limits, verdict, headers)

    async def finish(self, admission: Admission, tokens: int) -> None:
        """Count the tokens the upstream reported and release the lease."""
        tokens = tokens if admission.counts_tokens else 0
        if tokens or admission.verdict.lease is not None:
            await self.state.finish(admission.key, admission.verdict, tokens)

    def finish_soon(self, admission: Admission, tokens: int) -> None:
        """`finish` without waiting for it: from code that may not wait (or whose task is cancelled)."""
        tokens = tokens if admission.counts_tokens else 0
        if not tokens and admission.verdict.lease is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a stream closed outside the loop (at exit): its lease expires by itself
            return
        self.state.finish_soon(admission.key, admission.verdict, tokens)

    async def acquire_retry(self) -> bool:
        return await self.state.acquire_retry()


def local_limiter(resilience: Resilience, default: KeyLimits = NO_LIMITS) -> Limiter:
    return Limiter(LocalState(resilience), default=default)


__all__ = [
    "NO_LIMITS",
    "Admission",
    "KeyLimits",
    "Limiter",
    "LocalState",
    "ResilienceEvent",
    "SharedState",
    "Verdict",
    "local_limiter",
    "rate_headers",
]
