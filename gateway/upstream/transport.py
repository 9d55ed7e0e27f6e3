"""A fast HTTP/1.1 transport for httpx: asyncio protocols, httptools parsing, keep-alive per origin.

What belongs here: `FastTransport`, an `httpx.AsyncBaseTransport` for the OpenAI-wire
pass-through. httpx's default pool (httpcore + h11, pure Python) cost more than half of the
gateway's CPU per request under load, most of it checking every pooled connection on every
request. This transport keeps httpx's client API (and so respx, with `using="httpx"`) and
replaces only the wire: a C parser, one idle list per origin, no per-request scans. The
pass-through skips even the `httpx.Response`: `open` answers with Sluice's own `Answer`
(`gateway/upstream/answer.py`), which `handle_async_request` wraps for every other caller.

It speaks HTTP/1.1 only, never follows redirects (the client above it decides), ignores proxy
variables, refuses a response head past `MAX_HEADER_BYTES` before buffering more of it (httptools
sets no limit), and raises httpx's own exception types so callers need not know it is there:
ConnectError / ConnectTimeout / PoolTimeout (nothing was sent), ReadTimeout, ReadError and
RemoteProtocolError. A request on a reused keep-alive connection that the server had already
closed is sent once more on a fresh connection, since the server cannot have read it.

At most `max_connections_per_host` connections are open to one origin (scheme, host, port), busy
and idle together (`SLUICE_UPSTREAM_MAX_CONNECTIONS_PER_HOST`); a request that finds them all
busy waits for one to come back, for the request's `pool` timeout, then fails with PoolTimeout.
https uses the `ssl_context` given, else httpx's default (certifi's roots, hostname checked).

Why it exists (bench/OTHER.md, "The pass-through's HTTP client"): on the same calls it costs
less than half the CPU of httpx's own pool with tuned limits at one request in flight (a
fraction of it at 64), and, under httpx's client API, about two thirds of an aiohttp-backed
transport; without httpx's client it costs what aiohttp does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import httpx

from gateway.upstream.answer import Answer, RawHeaders
from gateway.upstream.idle import LazyTimer
from gateway.upstream.limits import MAX_HEADER_BYTES, AnswerRefused

Origin = tuple[str, str, int]
MAX_IDLE_PER_ORIGIN = 256
# The default of SLUICE_UPSTREAM_MAX_CONNECTIONS_PER_HOST: SLUICE_MAX_CONCURRENCY's, so that by default
# every request in flight can have its connection (lower it to spare a small self-hosted server).
MAX_CONNECTIONS_PER_HOST = 1024
PAUSE_ABOVE = 1024 * 1024  # buffered body bytes before we stop reading from the socket


class _Origin:
    """The connections of one origin: the idle ones, how many are open, who waits for one."""

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def closed(self) -> None:
        self.open -= 1
        self.wake_one()


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; a response is parsed into status, headers and buffered body chunks."""

    def __init__(self, origin: _Origin) -> None:
        self.transport: asyncio.Transport | None = None
        self.origin = origin
        self.closed = False
        self.counted = True  # in `origin.open` until `_gone()`
        self.reused = False
        # The read deadline: one timer per connection, moved lazily (a stream waits once per read).
        self._timer = LazyTimer(self._expire)
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.got_bytes = False
        self.head_bytes = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.buffered = 0
        self.paused = False
        self.chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(httpx.RemoteProtocolError("malformed HTTP response from the upstream"))
            self.close()
            return
        if not self.headers_done:
            if self.head_bytes > MAX_HEADER_BYTES:
                self._fail(AnswerRefused(f"the upstream's response head passed {MAX_HEADER_BYTES} bytes"))
                self.close()
            return
        # One wake-up per network read, whatever it held (the head's end, HTTP chunks, the end):
        # a stream's events are HTTP chunks of their own, and the reader takes them all at once.
        if self.buffered > PAUSE_ABOVE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.headers_done and not self.complete and not self._framed():
            self.complete = True  # a body delimited by the end of the connection
            self.keep_alive = False
            self._wake()
        else:
            self._fail(httpx.RemoteProtocolError("the upstream closed the connection"))
        return False

    def _framed(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gone()
        self._fail(httpx.ReadError("the upstream connection was lost"))

    def _gone(self) -> None:
        """This connection no longer counts against its origin's cap (called once)."""
        if self.counted:
            self.counted = False
            self.origin.closed()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # helpers
    def _fail(self, error: Exception) -> None:
        if not self.complete and self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float | None) -> None:
        """Wait for the next parser event; TimeoutError after `deadline` seconds without one."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._timer.start(loop, deadline)
        try:
            await waiter
        finally:
            self._timer.stop()
            self._waiter = None

    def _expire(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def take(self) -> bytes:
        """Every body byte buffered so far, as one piece: what one network read brought (a stream's
        events are HTTP chunks of their own; relaying them one by one would cost one send each)."""
        chunks = self.chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.buffered < PAUSE_ABOVE // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        self._gone()
        self._timer.close()
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, transport: FastTransport, origin: Origin, conn: _Connection, read_timeout: float | None
    ):
        self._transport = transport
        self._origin = origin
        self._conn = conn
        self._timeout = read_timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            try:
                await conn.wait(self._timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("the upstream sent nothing in time") from None

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.complete and conn.keep_alive and conn.usable() and not conn.chunks:
            self._transport.release(self._origin, conn)
        else:
            conn.close()


class FastTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST,
    ) -> None:
        if max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be at least 1")
        self._origins: dict[Origin, _Origin] = {}
        self._ssl = ssl_context
        self.max_connections_per_host = max_connections_per_host

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def release(self, origin: Origin, conn: _Connection) -> None:
        pool = self._origins[origin]
        if len(pool.idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.reused = True
        pool.idle.append(conn)
        pool.wake_one()

    def open_connections(self, scheme: str, host: str, port: int) -> int:
        """How many connections to this origin are open now, busy and idle (for tests and probes)."""
        pool = self._origins.get((scheme, host, port))
        return 0 if pool is None else pool.open

    async def _connect(self, origin: Origin, pool: _Origin, deadline: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == "https" else None
        conn = _Connection(pool)
        pool.open += 1
        try:
            async with asyncio.timeout(deadline):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            conn.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:  # ssl.SSLError (a certificate refused) is an OSError too
            conn.close()
            raise httpx.ConnectError(f"cannot connect to {host}:{port} ({type(exc).__name__})") from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def _acquire(self, origin: Origin, timeouts: dict[str, Any]) -> _Connection:
        pool = self._origins.get(origin)
        if pool is None:
            pool = self._origins[origin] = _Origin()
        loop = asyncio.get_running_loop()
        waited_until: float | None = None
        while True:
            while pool.idle:
                conn = pool.idle.pop()
                if conn.usable():
                    conn.reset()
                    return conn
                conn.close()
            if pool.open < self.max_connections_per_host:
                return await self._connect(origin, pool, timeouts.get("connect"))
            # Every connection to this origin is busy: wait until one is released or closed.
            wait = timeouts.get("pool")
            if waited_until is None and wait is not None:
                waited_until = loop.time() + wait
            waiter: asyncio.Future[None] = loop.create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(waited_until):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    pool.wake_one()  # woken, but leaving: the turn goes to the next in line
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(
                        f"all {self.max_connections_per_host} connections to the upstream stayed busy"
                    ) from None
                raise

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.open(request)
        return httpx.Response(
            answer.status_code,
            headers=answer.headers.raw,
            stream=answer.stream,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def open(self, request: httpx.Request) -> Answer:
        """The answer's head, its body unread: what `handle_async_request` returns, as an `Answer`
        (the pass-through reads that directly, without building an `httpx.Response`)."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += [name, b": ", value, b"\r\n"]
        payload = b"".join((*head, b"\r\n", body))
        for attempt in (1, 2):
            conn = await self._acquire(origin, timeouts)
            try:
                return await self._exchange(origin, conn, payload, timeouts.get("read"))
            except (httpx.RemoteProtocolError, httpx.ReadError):
                # A reused connection the server had closed: it cannot have read the request.
                if attempt == 1 and conn.reused and not conn.got_bytes:
                    conn.close()
                    continue
                raise
        raise httpx.ConnectError("no usable connection")  # unreachable: the loop returns or raises

    async def _exchange(
        self, origin: Origin, conn: _Connection, payload: bytes, read: float | None
    ) -> Answer:
        assert conn.transport is not None
        try:
            conn.transport.write(payload)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read)
        except TimeoutError:
            conn.close()
            raise httpx.ReadTimeout("the upstream sent no response headers in time") from None
        except BaseException:
            conn.close()
            raise
        return Answer(conn.status, RawHeaders(conn.headers), _Body(self, origin, conn, read))

    async def aclose(self) -> None:
        for pool in self._origins.values():
            idle, pool.idle = pool.idle, []
            for conn in idle:
                conn.close()
