"""The limit check's Redis connection (`gateway.storage.resp`) and its windows (`redis_state`'s
Lua): replies parsed whole or not at all, pipelined calls answered in order, a Redis that stops
answering or goes away fails the waiting calls (never leaves them hanging), and a window drops the
seconds that left it while keeping its running sum exact. Against the Redis on 127.0.0.1:6379
(each test's keys under a prefix of its own, deleted afterwards)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import uvloop

from gateway.core.limits import KeyLimits
from gateway.core.resilience import Resilience
from gateway.storage.redis_state import RedisState
from gateway.storage.resp import ReplyError, RespPipe, open_pipe, pack, parse, pipe_options
from tests.conftest import port_open, require_service

URL = "redis://127.0.0.1:6379/0"
ENCODED: list[tuple[bytes, object]] = [
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"+OK\r\n", b"OK"),
    (b"*3\r\n:1\r\n$2\r\nab\r\n*1\r\n:-1\r\n", [1, b"ab", [-1]]),
    (b"*0\r\n", []),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # a bulk string holding CRLF
]


@pytest.mark.parametrize(("raw", "value"), ENCODED)
def test_a_reply_is_parsed_whole_or_not_at_all(raw: bytes, value: object) -> None:
    assert parse(raw + b":9\r\n", 0) == (value, len(raw))
    for cut in range(len(raw)):
        assert parse(raw[:cut], 0) is None, raw[:cut]


def test_an_error_reply_is_a_value_and_a_command_is_packed_as_bulk_strings() -> None:
    found = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert found is not None and isinstance(found[0], ReplyError)
    assert str(found[0]) == "NOSCRIPT No matching script"
    assert pack(b"GET", b"a b") == b"*2\r\n$3\r\nGET\r\n$3\r\na b\r\n"


def test_pipe_options_take_plain_urls_and_leave_the_rest_to_redis_py() -> None:
    assert pipe_options("redis://:pw@127.0.0.1:6380/2") == {
        "host": "127.0.0.1",
        "port": 6380,
        "db": 2,
        "password": "pw",
    }
    assert pipe_options("rediss://h:6379/0?ssl_cert_reqs=none") is None


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    if not port_open("127.0.0.1", 6379):
        require_service("Redis is not reachable on 127.0.0.1:6379")
    name = f"sluice-test-{secrets.token_hex(6)}"
    yield name
    client = aioredis.Redis.from_url(URL)
    try:
        names = [n async for n in client.scan_iter(match=f"{name}:*")]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


async def open_default() -> RespPipe:
    options = pipe_options(URL)
    assert options is not None
    return await open_pipe(options, 2.0)


async def test_pipelined_calls_are_answered_in_order_and_an_error_fails_only_its_own(prefix: str) -> None:
    pipe = await open_default()
    try:
        key = f"{prefix}:n".encode()
        replies = await asyncio.gather(*(pipe.call(pack(b"INCR", key)) for _ in range(200)))
        assert replies == list(range(1, 201))
        with pytest.raises(ReplyError, match="ERR"):
            await pipe.call(pack(b"INCR", key, b"extra"))
        assert await pipe.call(pack(b"GET", key)) == b"200"
        assert not pipe.closed
    finally:
        pipe.close()


async def test_the_database_in_the_url_is_selected(prefix: str) -> None:
    options = pipe_options(f"{URL[:-1]}3")
    assert options is not None
    pipe = await open_pipe(options, 2.0)
    key = f"{prefix}:db".encode()
    try:
        assert await pipe.call(pack(b"SET", key, b"x")) == b"OK"
    finally:
        pipe.close()
    client = aioredis.Redis.from_url(f"{URL[:-1]}3")
    try:
        assert await client.get(key) == b"x"
        await client.delete(key)
    finally:
        await client.aclose()


def test_the_pipe_runs_on_uvloop_as_the_gateway_does(prefix: str) -> None:
    async def ping() -> object:
        pipe = await open_default()
        try:
            return await pipe.call(pack(b"PING"))
        finally:
            pipe.close()

    assert uvloop.run(ping()) == b"PONG"


class Silent:
    """A server that accepts connections, reads everything, answers nothing, or hangs up at once."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.hang_up:
            while await reader.read(65536):
                pass
        writer.close()


async def test_a_redis_that_stops_answering_fails_the_waiting_calls_after_the_timeout() -> None:
    async with Silent() as port:
        pipe = await open_pipe({"host": "127.0.0.1", "port": port}, 0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        calls = [pipe.call(pack(b"PING")) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert 0.15 <= loop.time() - started < 1.0
        assert pipe.closed
        with pytest.raises(ConnectionError):
            pipe.call(pack(b"PING"))


async def test_a_redis_that_hangs_up_fails_the_waiting_call() -> None:
    async with Silent(hang_up=True) as port:
        pipe = await open_pipe({"host": "127.0.0.1", "port": port}, 5.0)
        with pytest.raises(ConnectionError):
            await pipe.call(pack(b"PING"))
        assert pipe.closed


async def test_a_window_drops_the_seconds_that_left_it_and_keeps_its_sum(prefix: str) -> None:
    state = RedisState(URL, Resilience(), prefix=prefix, timeout=2.0)
    client = aioredis.Redis.from_url(URL)
    await state.start()
    try:
        assert state.up
        now = int((await client.time())[0])
        window = f"{prefix}:requests:k"
        # 5 requests 70 s ago (out of the window), 3 requests 30 s ago (in it).
        await client.hset(window, mapping={now - 70: 5, now - 30: 3, "s": 8, "o": now - 70})
        verdict = await state.admit("k", KeyLimits(rpm=4), "lease")
        assert verdict.allowed and verdict.requests == 3
        assert 28 <= verdict.requests_reset <= 31  # when the 3 requests of 30 s ago leave the window
        counts = {k.decode(): int(v) for k, v in (await client.hgetall(window)).items()}
        assert str(now - 70) not in counts and counts[str(now - 30)] == 3
        assert counts["o"] == now - 30
        assert counts["s"] == sum(v for k, v in counts.items() if k not in ("s", "o")) == 4
        refused = await state.admit("k", KeyLimits(rpm=4), "lease")
        assert not refused.allowed and refused.limited_by == "requests" and refused.requests == 4
    finally:
        await state.stop()
        await client.aclose()


async def test_a_script_redis_lost_is_sent_whole_again(prefix: str) -> None:
    state = RedisState(URL, Resilience(), prefix=prefix, timeout=2.0)
    await state.start()
    try:
        state._admit.sha = "0" * 40  # a script Redis does not have (as after SCRIPT FLUSH)
        first = await state.admit("k", KeyLimits(rpm=1), "a")
        second = await state.admit("k", KeyLimits(rpm=1), "b")
        assert (first.allowed, second.allowed, second.limited_by) == (True, False, "requests")
        assert state.up
    finally:
        await state.stop()
