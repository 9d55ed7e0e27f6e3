"""gateway/server/gone.py: a pipeline handler (or a relayed stream) runs in the request's own task,
cancelled when the client leaves first (`unless_gone`), and an outside cancellation still reaches
the request."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from starlette.responses import Response

from gateway.server.gone import unless_gone


async def answer(after: float) -> Response:
    await asyncio.sleep(after)
    return Response(b"ok")


async def never() -> None:
    await asyncio.Event().wait()


async def test_the_answer_comes_from_the_request_own_task() -> None:
    outer = asyncio.current_task()

    async def work() -> Response:
        assert asyncio.current_task() is outer  # no task of its own per request
        return Response(b"ok")

    response = await unless_gone(work(), never())
    assert response is not None and response.body == b"ok"
    assert outer is not None and outer.cancelling() == 0


async def test_a_client_that_leaves_first_cancels_the_work_and_gets_nothing() -> None:
    cancelled = asyncio.Event()

    async def work() -> Response:
        try:
            return await answer(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert await unless_gone(work(), asyncio.sleep(0.01)) is None
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the request's task goes on, uncancelled
    await asyncio.sleep(0)  # and can still await


async def test_work_that_ignores_the_cancellation_answers_nobody() -> None:
    async def stubborn() -> Response:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        return Response(b"late")

    assert await unless_gone(stubborn(), asyncio.sleep(0.01)) is None
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_outside_cancellation_reaches_the_request() -> None:
    task = asyncio.ensure_future(unless_gone(answer(10), never()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
