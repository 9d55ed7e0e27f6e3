"""Work that stops when the client leaves: the one mechanism the edge and the stream relay share.

What belongs here: `unless_gone`, which runs a piece of work in the request's own task and cancels it
when the client disconnects first, and `disconnected`, the watch on `receive` that says so. The edge
uses them until the response starts (`gateway.server.edge.Guarded`), a streamed response while it
relays (`gateway.server.responses.RelayResponse`).

Why not Starlette's own watch for streams (an anyio task group running the stream in a second task,
cancelled through a cancel scope): it cost about 70 µs of CPU per stream against 4 without it
(bench/PROFILE.md), on the way to the first token; here the stream runs in the request's task and
the watch is one plain task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


async def disconnected(receive: Receive) -> None:
    """Return when the client disconnects (every other message is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        continue


async def unless_gone(work: Awaitable[T], gone: Awaitable[None]) -> T | None:
    """`work`'s result, run in the request's own task; None when `gone` returns first (the client
    left): `work` is cancelled then, abandoning its upstream call (the pipeline records it)."""
    task = asyncio.current_task()
    assert task is not None
    running, left = True, False

    def leave(watcher: asyncio.Future[None]) -> None:
        nonlocal left
        if running and not watcher.cancelled():
            left = True
            task.cancel()

    watcher = asyncio.ensure_future(gone)
    watcher.add_done_callback(leave)
    try:
        result = await work
    except asyncio.CancelledError:
        if not left or task.uncancel() > 0:  # cancelled from outside too: that one goes on
            raise
        return None
    finally:
        running = False
        watcher.cancel()
    if left:  # the work ignored the cancellation and finished: nobody is there to take it
        task.uncancel()
        return None
    return result
