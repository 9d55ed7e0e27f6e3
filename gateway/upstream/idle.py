"""Read deadlines for loops that wait once per network read: one loop timer, moved lazily.

What belongs here: `LazyTimer`, the one mechanism, and `IdleDeadline`, the `asyncio.timeout`-like
context manager built on it for a relay's waits on the upstream's next piece. asyncio's `timeout`
makes and cancels a timer each time it is entered, once per read of a stream whose events arrive
one by one; a `LazyTimer` keeps a single timer: each wait only moves the deadline, and the timer,
when it fires before the deadline as it now stands, re-arms itself for it. FastTransport's
connections (`gateway/upstream/transport.py`) use it to fail their waiter; `IdleDeadline` uses it to
cancel the waiting task and turns that cancellation into `TimeoutError`, as asyncio's `timeout`
does (a cancellation from elsewhere stays a cancellation).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from types import TracebackType


class LazyTimer:
    """Calls `expire` once a wait outlasts its deadline: `start(loop, seconds)` as a wait begins,
    `stop()` as it ends (time between waits does not count), `close()` when no wait will follow."""

    __slots__ = ("_at", "_expire", "_handle", "_handle_at", "_loop")

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._loop: asyncio.AbstractEventLoop | None = None
        self._at = math.inf  # the deadline of the wait under way (inf: none, or no wait)
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = math.inf

    def start(self, loop: asyncio.AbstractEventLoop, seconds: float | None) -> None:
        """A wait begins; it may last `seconds` (None: no deadline)."""
        self._loop = loop
        if seconds is None:
            self._at = math.inf
            return
        self._at = loop.time() + seconds
        if self._at < self._handle_at:  # no timer, or one set for a later deadline
            self._arm(loop)

    def stop(self) -> None:
        """The wait ended: a timer still set finds nobody waiting and lapses."""
        self._at = math.inf

    def close(self) -> None:
        """Drop the timer (no more waits)."""
        self._at = math.inf
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._handle_at = None, math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_at = self._at
        self._handle = loop.call_at(self._at, self._fire)

    def _fire(self) -> None:
        self._handle, self._handle_at = None, math.inf
        loop = self._loop
        if self._at == math.inf or loop is None:
            return  # between waits, or a wait without a deadline: the next one arms a timer again
        if loop.time() < self._at:
            self._arm(loop)
        else:
            self._at = math.inf
            self._expire()


class IdleDeadline:
    """`with deadline.after(seconds): await ...` is `async with asyncio.timeout(seconds): await ...`
    (one task, one wait at a time)."""

    def __init__(self) -> None:
        self._timer = LazyTimer(self._fire)
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False
        self._delay = 0.0

    def after(self, seconds: float) -> IdleDeadline:
        self._delay = seconds
        return self

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("IdleDeadline is used outside a task")
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        self._timer.start(task.get_loop(), self._delay)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        self._timer.stop()
        if self._expired and task is not None:
            self._expired = False
            if task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from error

    def close(self) -> None:
        """Drop the timer (the stream is over)."""
        self._timer.close()

    def _fire(self) -> None:
        task = self._task
        if task is not None:
            self._expired = True
            task.cancel()
