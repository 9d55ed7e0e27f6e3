"""Helpers every test tier shares: waiting for a condition, and an app on a real socket.

What belongs here: `until` (async) and `wait_until` (sync) poll a condition with a deadline, which
is a safety net for a loaded machine, never a measurement: no test synchronises on a fixed sleep;
`served` runs an app on a real uvicorn on 127.0.0.1 (client disconnects need a real socket; an
in-process client is `tests.gateway.support.serving`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

PATIENCE = 30.0  # seconds: the bound of every wait, never an expectation
INTERVAL = 0.02  # seconds between two looks


async def until(condition: Callable[[], Any], what: str, *, within: float = PATIENCE) -> Any:
    """Poll `condition` (a function, or a coroutine function) until it returns something truthy, and
    return that; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(INTERVAL)


def wait_until(condition: Callable[[], Any], what: str, *, timeout: float = PATIENCE) -> Any:
    """`until` for code without an event loop (a test driving another process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(INTERVAL)


@contextlib.asynccontextmanager
async def served(app: FastAPI, *, uvicorn_logging: bool = True) -> AsyncIterator[str]:
    """The app behind a real uvicorn on 127.0.0.1, with its lifespan; yields its base URL.
    `uvicorn_logging=False` leaves logging alone (`log_config=None`), so uvicorn's records reach
    whatever handler the test installed."""
    options: dict[str, Any] = {"log_level": "warning"} if uvicorn_logging else {"log_config": None}
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", ws="none", **options)
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), "uvicorn to start")
    assert not task.done(), "uvicorn stopped during start-up"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
