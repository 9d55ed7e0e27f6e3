"""Run an asyncio service (something with ``async start()`` / ``async stop()``) in a daemon thread.

What belongs here: the thread-and-event-loop runner behind `FakeUpstream.in_thread()`, so sync
tests (and the demo CLI) can use the fake without an event loop of their own.  Start and stop are
synchronous and clean: the loop is created and closed by ``asyncio.run`` inside the thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Final, Generic, Protocol, TypeVar

_TIMEOUT: Final = 30.0


class AsyncService(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=AsyncService)


class ThreadRunner(Generic[ServiceT]):
    """Owns one daemon thread whose event loop runs ``service`` between `start` and `stop`."""

    def __init__(self, service: ServiceT, *, name: str = "fake-upstream") -> None:
        self.service = service
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(_TIMEOUT):
            raise TimeoutError(f"{self._thread.name} thread did not start")
        self._raise_error()

    def stop(self) -> None:
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and self._thread.is_alive() and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)
        self._thread.join(_TIMEOUT)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"{self._thread.name} thread failed") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # handed to the calling thread by start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        await self.service.start()
        try:
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await self.service.stop()
