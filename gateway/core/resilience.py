"""Per-process protection against failing upstreams: a circuit breaker per deployment and a retry budget.

What belongs here: `CircuitBreaker` (closed -> open after N consecutive provider failures, a
cool-down that doubles per consecutive re-open up to a cap, then half-open with one trial call),
`Holds` (a deployment that answered 429/503/529 with `Retry-After` gets no request before then),
`RetryBudget` (failover attempts beyond the first only while retries stay within a share of recent
requests, Envoy's retry budget), `trips()` (which upstream errors count against a deployment) and
`Resilience`, the one object `create_app` builds and hands to `ChatService`. All three only remove
candidates from a routing plan; they never add one, so they cannot change which deployments are
compliant. State is per app; time comes from an injectable clock. Several replicas share it
through a `Listener` (`gateway.core.limits.SharedState`): each opening, closing and hold is told to
it, and what other replicas told is applied here with `apply_open`, `apply_close` and `apply`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)

Clock = Callable[[], float]


HOLD_STATUS = frozenset({429, 503, 529})


def trips(exc: UpstreamError) -> bool:
    """True when the provider itself failed (connect, timeout, garbage, 5xx/529); never for a request
    the client got wrong (`client_fault`: refused by the translation, or a provider 4xx), nor for 429."""
    if exc.client_fault:
        return False
    if isinstance(exc, UpstreamConnectError | UpstreamTimeout | UpstreamProtocolError):
        return True
    if isinstance(exc, UpstreamStatusError):
        return exc.status is not None and exc.status >= 500
    return False


class Listener(Protocol):
    """Told of every change other replicas must know (never of one applied from them)."""

    def opened(self, key: str, seconds: float, reopens: int) -> None: ...

    def closed(self, key: str) -> None: ...

    def held(self, key: str, seconds: float) -> None: ...


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Circuit:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive provider failures while closed
    reopens: int = 0  # consecutive openings without a success in between
    open_until: float = 0.0
    trial_in_flight: bool = False


class CircuitBreaker:
    """One circuit per deployment id. `available` peeks, `begin` claims, `success`/`failure` record."""

    def __init__(
        self,
        *,
        failures: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("breaker needs failures >= 1 and 0 < cooldown <= max_cooldown")
        self.threshold = failures
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.listener: Listener | None = None

    def _circuit(self, key: str) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
        return circuit

    def state(self, key: str) -> BreakerState:
        circuit = self._circuits.get(key)
        if circuit is None:
            return BreakerState.CLOSED
        if circuit.state is BreakerState.OPEN and self._clock() >= circuit.open_until:
            return BreakerState.HALF_OPEN
        return circuit.state

    def available(self, key: str) -> bool:
        """May a call go to `key` now? Does not claim the half-open trial (see `begin`)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state is BreakerState.CLOSED:
            return True
        if circuit.state is BreakerState.OPEN:
            return self._clock() >= circuit.open_until
        return not circuit.trial_in_flight

    def begin(self, key: str) -> None:
        """A call to `key` starts; past the cool-down it becomes the one half-open trial."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state is BreakerState.CLOSED:
            return
        circuit.state = BreakerState.HALF_OPEN
        circuit.trial_in_flight = True

    def remaining(self, key: str) -> float:
        """Seconds left in `key`'s cool-down (0 when closed or past it)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, circuit.open_until - self._clock())

    def success(self, key: str) -> None:
        """The provider answered (2xx, or a 4xx/429 that is the client's or a rate limit): close."""
        circuit = self._circuits.get(key)
        if circuit is not None:
            was = circuit.state
            circuit.state, circuit.failures, circuit.reopens = BreakerState.CLOSED, 0, 0
            circuit.trial_in_flight = False
            if was is not BreakerState.CLOSED and self.listener is not None:
                self.listener.closed(key)

    def failure(self, key: str) -> None:
        """The provider failed: count it; open at the threshold, re-open at once when half-open."""
        circuit = self._circuit(key)
        if circuit.state is BreakerState.CLOSED:
            circuit.failures += 1
            if circuit.failures < self.threshold:
                return
        cooldown = self._open(circuit)
        if self.listener is not None:
            self.listener.opened(key, cooldown, circuit.reopens)

    def abandon(self, key: str) -> None:
        """The call ended with no verdict (client gone, a bug): free the half-open trial slot."""
        circuit = self._circuits.get(key)
        if circuit is not None:
            circuit.trial_in_flight = False

    def _open(self, circuit: _Circuit) -> float:
        cooldown: float = min(self.cooldown * 2.0**circuit.reopens, self.max_cooldown)
        circuit.state = BreakerState.OPEN
        circuit.open_until = self._clock() + cooldown
        circuit.reopens += 1
        circuit.failures = 0
        circuit.trial_in_flight = False
        return cooldown

    def apply_open(self, key: str, seconds: float, reopens: int) -> None:
        """Another replica opened `key`'s circuit for `seconds` more: open it here too."""
        circuit = self._circuit(key)
        until = self._clock() + min(max(seconds, 0.0), self.max_cooldown)
        if circuit.state is BreakerState.OPEN and circuit.open_until >= until:
            return
        circuit.state, circuit.open_until = BreakerState.OPEN, until
        circuit.reopens, circuit.failures, circuit.trial_in_flight = max(circuit.reopens, reopens), 0, False

    def apply_close(self, key: str) -> None:
        """Another replica's trial call succeeded: close `key`'s circuit here too."""
        circuit = self._circuits.get(key)
        if circuit is not None:
            circuit.state, circuit.failures, circuit.reopens = BreakerState.CLOSED, 0, 0
            circuit.trial_in_flight = False


class Holds:
    """Deployments that asked for a pause (429, 503 or 529 with `Retry-After`): no request goes to
    one before its time. The wait is capped, so an upstream cannot switch a deployment off for good."""

    def __init__(self, *, max_hold: float = 300.0, clock: Clock = time.monotonic) -> None:
        if max_hold <= 0:
            raise ValueError("holds need max_hold > 0")
        self.max_hold = max_hold
        self._clock = clock
        self._until: dict[str, float] = {}
        self.listener: Listener | None = None

    def observe(self, key: str, exc: UpstreamError) -> None:
        """Hold `key` if `exc` is an answer that asked us to wait."""
        if isinstance(exc, UpstreamStatusError) and exc.status in HOLD_STATUS and exc.retry_after:
            seconds = min(exc.retry_after, self.max_hold)
            self.apply(key, seconds)
            if self.listener is not None:
                self.listener.held(key, seconds)

    def apply(self, key: str, seconds: float) -> None:
        """Hold `key` for `seconds` (capped), unless it is held longer already."""
        until = self._clock() + min(seconds, self.max_hold)
        self._until[key] = max(until, self._until.get(key, 0.0))

    def remaining(self, key: str) -> float:
        """Seconds before `key` may be called again (0: now)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left


class RetryBudget:
    """Retries (attempts beyond a request's first) allowed while retries <= ratio x requests in the
    sliding window, never fewer than `min_retries` per window."""

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        window: float = 10.0,
        min_retries: int = 10,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 <= ratio <= 1 or window <= 0 or min_retries < 0:
            raise ValueError("retry budget needs 0 <= ratio <= 1, window > 0, min_retries >= 0")
        self.ratio = ratio
        self.window = window
        self.min_retries = min_retries
        self._clock = clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        for stamps in (self._requests, self._retries):
            while stamps and stamps[0] <= horizon:
                stamps.popleft()

    def request(self) -> None:
        """A client request reached the upstream loop."""
        now = self._clock()
        self._prune(now)
        self._requests.append(now)

    def acquire(self) -> bool:
        """Spend one retry if the budget allows it."""
        now = self._clock()
        self._prune(now)
        allowed = max(self.min_retries, math.floor(self.ratio * len(self._requests)))
        if len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now)
        return True


class Resilience:
    """The breaker, the holds and the retry budget of one app (built in `create_app`, owned by
    `ChatService`)."""

    def __init__(
        self,
        *,
        breaker_failures: int = 5,
        breaker_cooldown: float = 30.0,
        breaker_max_cooldown: float = 300.0,
        retry_budget_ratio: float = 0.2,
        retry_window: float = 10.0,
        min_retries: int = 10,
        max_hold: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.holds = Holds(max_hold=max_hold, clock=clock)
        self.breaker = CircuitBreaker(
            failures=breaker_failures,
            cooldown=breaker_cooldown,
            max_cooldown=max(breaker_max_cooldown, breaker_cooldown),
            clock=clock,
        )
        self.budget = RetryBudget(
            ratio=retry_budget_ratio, window=retry_window, min_retries=min_retries, clock=clock
        )

    def listen(self, listener: Listener) -> None:
        """Tell `listener` of every opening, closing and hold (to share them with other replicas)."""
        self.breaker.listener = listener
        self.holds.listener = listener
