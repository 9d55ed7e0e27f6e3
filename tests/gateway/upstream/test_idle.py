"""IdleDeadline: asyncio.timeout's behaviour with one timer moved lazily across waits."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.idle import IdleDeadline


async def test_a_wait_longer_than_the_deadline_is_a_timeout() -> None:
    deadline = IdleDeadline().after(0.05)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError), deadline:
        await asyncio.sleep(5)
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_short_waits_that_outlast_the_deadline_together_never_expire() -> None:
    deadline = IdleDeadline().after(0.1)
    for _ in range(12):  # 0.36 s in all, 0.03 s each
        with deadline:
            await asyncio.sleep(0.03)
        await asyncio.sleep(0)
    deadline.close()


async def test_time_between_waits_does_not_count() -> None:
    deadline = IdleDeadline().after(0.05)
    with deadline:
        await asyncio.sleep(0)
    await asyncio.sleep(0.15)  # the timer fires here, with nobody waiting
    with deadline:
        await asyncio.sleep(0.01)
    deadline.close()


async def test_a_shorter_deadline_after_a_longer_one_is_kept() -> None:
    deadline = IdleDeadline()
    with deadline.after(30):
        await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError), deadline.after(0.05):
        await asyncio.sleep(5)
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadline = IdleDeadline().after(5)

    async def wait() -> None:
        with deadline:
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.close()
