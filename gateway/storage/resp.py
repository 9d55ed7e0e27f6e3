"""A minimal Redis client for the limit check's hot path: one connection, RESP2, pipelined.

What belongs here: `RespPipe` (send a command, get a future of its reply; replies come back in the
order the commands were sent, so any number of requests share the one connection without waiting
for each other), `open_pipe` (connect from a `redis://`, `rediss://` or `unix://` URL: AUTH, SELECT)
and `ReplyError` (Redis answered with an error).

Why not redis-py here: its asyncio client spends about 150 µs of CPU per call (the connection pool's
lock, command packing, its pure-Python reply parser; hiredis is not a dependency), more than Redis
takes to run the limit check's script. This costs about 30 µs. Everything else (pub/sub, the
heartbeat, the retry budget, breaker events) stays on redis-py.

Time-outs: a reply that has not come `timeout` seconds after its command was sent fails every
waiting call with `TimeoutError` and closes the connection (replies behind it would be late too).
A lost connection fails every waiting call with `ConnectionError`; a closed pipe refuses new calls
the same way. The owner (`gateway.storage.redis_state`) opens a new pipe when Redis is back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, Union, cast

from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import RedisError

Reply = Union[int, bytes, None, "ReplyError", list["Reply"]]
SUPPORTED = {"host", "port", "db", "username", "password", "path", "connection_class"}


class ReplyError(RedisError):
    """Redis answered a command with an error (`-ERR ...`, `-NOSCRIPT ...`)."""


def pack(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def parse(buf: bytes, pos: int) -> tuple[Reply, int] | None:
    """The reply starting at `pos` and where the next one starts; None: not all of it is here yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line, pos = buf[pos], buf[pos + 1 : end], end + 2
    if kind == 58:  # ':' integer
        return int(line), pos
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return buf[pos : pos + size], pos + size + 2
    if kind == 42:  # '*' array
        count = int(line)
        items: list[Reply] = []
        for _ in range(max(count, 0)):
            found = parse(buf, pos)
            if found is None:
                return None
            item, pos = found
            items.append(item)
        return (items if count >= 0 else None), pos
    if kind == 43:  # '+' simple string
        return bytes(line), pos
    if kind == 45:  # '-' error
        return ReplyError(line.decode("utf-8", "replace")), pos
    raise ReplyError(f"not a RESP reply (type byte {kind})")


class RespPipe(asyncio.Protocol):
    """One pipelined connection to Redis (built by `open_pipe`)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._waiting: deque[tuple[asyncio.Future[Reply], float]] = deque()  # oldest first
        self._watch: asyncio.TimerHandle | None = None
        self.closed = False

    def call(self, command: bytes) -> asyncio.Future[Reply]:
        """Send one packed command (`pack`); its reply (or `ReplyError`) comes in the future."""
        if self.closed or self._transport is None:
            raise ConnectionError("the connection to Redis is closed")
        future: asyncio.Future[Reply] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout
        self._transport.write(command)
        self._waiting.append((future, deadline))
        if self._watch is None:
            self._watch = self._loop.call_at(deadline, self._check)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._fail(ConnectionError("the connection to Redis was closed"))

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("the connection to Redis was lost"))

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos, size = 0, len(buf)
        while pos < size:
            try:
                found = parse(buf, pos)
            except (ValueError, IndexError, ReplyError) as exc:
                self._fail(ReplyError(f"unreadable reply from Redis ({type(exc).__name__})"))
                if self._transport is not None:
                    self._transport.abort()
                return
            if found is None:
                break
            reply, pos = found
            if not self._waiting:  # nothing asked for it: not a Redis we understand
                self.close()
                return
            future, _ = self._waiting.popleft()
            if not future.done():
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        self._buffer = buf[pos:] if pos < size else b""

    # -- internals ------------------------------------------------------------------------------

    def _check(self) -> None:
        """The oldest command's deadline came: past it unanswered, Redis is too slow for us."""
        self._watch = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self._fail(TimeoutError("Redis did not answer in time"))
            if self._transport is not None:
                self._transport.abort()
            return
        self._watch = self._loop.call_at(deadline, self._check)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a caller that gave up waiting logs nothing


def pipe_options(url: str) -> dict[str, Any] | None:
    """How `open_pipe` connects for `url`; None: options it does not handle (use redis-py)."""
    options: dict[str, Any] = dict(parse_url(url))
    if set(options) - SUPPORTED:
        return None
    return options


async def open_pipe(options: dict[str, Any], timeout: float) -> RespPipe:  # noqa: ASYNC109
    """Connect (within `timeout`, which bounds each later reply too), authenticate, select the db."""
    loop = asyncio.get_running_loop()
    connection_class = options.get("connection_class")
    async with asyncio.timeout(timeout):
        pipe: RespPipe
        if connection_class is UnixDomainSocketConnection:
            _, pipe = await loop.create_unix_connection(lambda: RespPipe(timeout), options["path"])
        else:
            host, port = options.get("host", "localhost"), int(options.get("port", 6379))
            context = ssl.create_default_context() if connection_class is SSLConnection else None
            _, pipe = await loop.create_connection(lambda: RespPipe(timeout), host, port, ssl=context)
        try:
            if options.get("password"):
                user = [str(options["username"]).encode()] if options.get("username") else []
                await pipe.call(pack(b"AUTH", *user, str(options["password"]).encode()))
            if options.get("db"):
                await pipe.call(pack(b"SELECT", str(int(options["db"])).encode()))
        except BaseException:
            pipe.close()
            raise
    return pipe


__all__ = ["ReplyError", "RespPipe", "open_pipe", "pack", "parse", "pipe_options"]
