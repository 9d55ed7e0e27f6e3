"""gateway/server/gone.py: a pipeline handler (or a relayed stream) runs in the request's own task,
cancelled when the client leaves first (`unless_gone`), and an outside cancellation still reaches
the request."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from starlette.responses import Response

from gateway.server.gone import unless_gone


async def never() -> None:
    await asyncio.Event().wait()


async def left_once(started: asyncio.Event) -> None:
    """A client that leaves as soon as the work is under way."""
    await started.wait()


async def late_answer() -> Response:
    """An answer that would come only after any test has ended (a bound, not a timing assumption:
    if the cancellation under test did not happen, the test fails instead of hanging)."""
    await asyncio.sleep(10)
    return Response(b"late")


async def test_the_answer_comes_from_the_request_own_task() -> None:
    outer = asyncio.current_task()

    async def work() -> Response:
        assert asyncio.current_task() is outer  # no task of its own per request
        return Response(b"ok")

    response = await unless_gone(work(), never())
    assert response is not None and response.body == b"ok"
    assert outer is not None and outer.cancelling() == 0


async def test_a_client_that_leaves_first_cancels_the_work_and_gets_nothing() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> Response:
        started.set()
        try:
            return await late_answer()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert await unless_gone(work(), left_once(started)) is None
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the request's task goes on, uncancelled
    await asyncio.sleep(0)  # and can still await


async def test_work_that_ignores_the_cancellation_answers_nobody() -> None:
    started = asyncio.Event()

    async def stubborn() -> Response:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            return await late_answer()
        return Response(b"late")

    assert await unless_gone(stubborn(), left_once(started)) is None
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_outside_cancellation_reaches_the_request() -> None:
    started = asyncio.Event()

    async def work() -> Response:
        started.set()
        return await late_answer()

    task = asyncio.ensure_future(unless_gone(work(), never()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
