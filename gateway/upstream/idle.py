"""`IdleDeadline`: `asyncio.timeout` for a stream loop that waits once per network read.

What belongs here: the deadline a relay keeps on each wait for the upstream's next piece. asyncio's
`timeout` makes and cancels a timer each time it is entered, once per read of a stream whose events
arrive one by one; this one keeps a single timer, moved lazily: each `after()` only moves the
deadline, and the timer, when it fires before the deadline as it now stands, re-arms itself for it.
On expiry it cancels the waiting task and turns that cancellation into `TimeoutError`, as asyncio's
`timeout` does; a cancellation from elsewhere stays a cancellation.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType


class IdleDeadline:
    """`with deadline.after(seconds): await ...` is `async with asyncio.timeout(seconds): await ...`
    (one task, one wait at a time)."""

    def __init__(self) -> None:
        self._at = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
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
        loop = task.get_loop()
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        self._at = loop.time() + self._delay
        if self._at < self._timer_at:  # no timer, or one set for a later deadline
            self._arm(loop)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task, self._at = self._task, None, math.inf
        if self._expired and task is not None:
            self._expired = False
            if task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from error

    def close(self) -> None:
        """Drop the timer (the stream is over)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.close()
        self._timer_at = self._at
        self._timer = loop.call_at(self._at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        task = self._task
        if task is None:
            return  # between waits: the next wait arms a timer again
        loop = task.get_loop()
        if loop.time() < self._at:
            self._arm(loop)
        else:
            self._expired = True
            task.cancel()
