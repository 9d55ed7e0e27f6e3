"""Minimal HTTP/1.1 plumbing for the fake upstream, on raw asyncio streams.

What belongs here: reading requests (head, Content-Length and chunked bodies, ``Expect:
100-continue``, keep-alive), building response heads and chunked framing, watching for the client
closing the connection while a response is in flight, and abortive closes (TCP RST).
Nothing here knows about LLM wire formats or fault directives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import time
from http import HTTPStatus
from typing import Final

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 256 * 1024 * 1024
_READ_SIZE: Final = 256 * 1024
_MAX_PIPELINED_BYTES: Final = 1024 * 1024
_REASONS: Final = {s.value: s.phrase for s in HTTPStatus} | {529: "Site Overloaded"}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_FLUSH_POLLS: Final = 2000
_CLOSE_TIMEOUT: Final = 1.0
_STALL_POLL_SECONDS: Final = 3600.0


class HttpError(Exception):
    """A request we refuse to parse; the server answers ``status`` and closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed request; ``headers`` are lowercased (repeated headers joined with ", ")."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def response_head(
    status: int,
    headers: list[tuple[str, str]],
    *,
    length: int | None,
    close: bool,
) -> bytes:
    """Status line plus headers; ``length=None`` means a chunked body."""
    lines = [f"HTTP/1.1 {status} {reason(status)}\r\nserver: sluice-fake-upstream\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    if length is None:
        lines.append("transfer-encoding: chunked\r\n")
    else:
        lines.append(f"content-length: {length}\r\n")
    if close:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk carrying ``data`` (must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk() -> bytes:
    return _LAST_CHUNK


class Connection:
    """A client connection with its own read buffer, so a watcher can read ahead safely."""

    __slots__ = ("_buf", "_eof", "_watcher", "closed_at", "number", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int = 0) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self._buf = bytearray()
        self._eof = False
        self._watcher: asyncio.Task[None] | None = None
        self.closed_at: float | None = None

    # -- reading ---------------------------------------------------------------------------
    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await self.reader.read(_READ_SIZE)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    async def read_request(self) -> Request | None:
        """The next request, or None when the client closed cleanly between requests."""
        head = await self._read_head()
        if head is None:
            return None
        received_at = time.time()
        method, target, version, headers = _parse_head(head)
        if headers.get("expect", "").lower() == "100-continue":
            self.writer.write(_CONTINUE)
        body = await self._read_body(headers)
        path, _, query = target.partition("?")
        return Request(method, path, query, version, headers, body, received_at)

    async def _read_head(self) -> bytes | None:
        start = 0
        while True:
            end = self._buf.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                return head
            if len(self._buf) > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
            start = max(0, len(self._buf) - 3)
            if not await self._fill():
                if self._buf.strip():
                    raise HttpError(400, "connection closed inside the request head")
                return None

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked()
        raw_length = headers.get("content-length")
        if raw_length is None:
            return b""
        if not raw_length.isdigit():
            raise HttpError(400, "bad content-length")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "request body too large")
        return await self._read_exact(length)

    async def _read_exact(self, length: int) -> bytes:
        while len(self._buf) < length:
            if not await self._fill():
                raise HttpError(400, "connection closed inside the request body")
        data = bytes(self._buf[:length])
        del self._buf[:length]
        return data

    async def _read_line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            if len(self._buf) > MAX_HEAD_BYTES:
                raise HttpError(400, "chunk header too long")
            if not await self._fill():
                raise HttpError(400, "connection closed inside a chunked body")

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = (await self._read_line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(400, "bad chunk size") from None
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError(413, "request body too large")
            parts.append(await self._read_exact(size))
            if await self._read_exact(2) != b"\r\n":
                raise HttpError(400, "chunk not terminated by CRLF")
        while await self._read_line():
            pass  # trailers are ignored
        return b"".join(parts)

    # -- watching for the client going away while a response is in flight --------------------
    def start_watch(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Read ahead (keeping pipelined bytes) until EOF, which means the client went away."""
        with contextlib.suppress(ConnectionError):
            while await self._fill():
                if len(self._buf) >= _MAX_PIPELINED_BYTES:
                    return  # stop reading ahead; this is not the client leaving
        self.mark_closed()

    def mark_closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.time()

    @property
    def client_gone(self) -> bool:
        return self.closed_at is not None or self.writer.transport.is_closing()

    async def stop_watch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.wait([watcher])

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the client closes first; False when it did."""
        watcher = self._watcher
        if self.client_gone:
            return False
        if watcher is None or watcher.done():
            await asyncio.sleep(seconds)
        else:
            await asyncio.wait([watcher], timeout=seconds)
        return not self.client_gone

    async def wait_closed_by_client(self) -> None:
        """Hang until the client closes the connection (used to simulate a stalled upstream)."""
        self.start_watch()
        while await self.sleep(_STALL_POLL_SECONDS):
            pass

    # -- writing -----------------------------------------------------------------------------
    async def send(self, data: bytes) -> bool:
        """Write and drain; False (and the close time recorded) when the client is gone."""
        if self.client_gone:
            self.mark_closed()
            return False
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            self.mark_closed()
            return False
        return True

    def abort(self, *, rst: bool) -> None:
        """Close now without flushing; with ``rst`` the kernel sends a TCP RST instead of FIN."""
        if self._watcher is not None:
            self._watcher.cancel()  # a server-side close is not the client going away
        sock = self.writer.get_extra_info("socket")
        if rst and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close_abruptly(self, *, rst: bool) -> None:
        """End the response early: flush what was written, then FIN (or RST with ``rst``)."""
        await self.stop_watch()
        if not rst:
            self.writer.close()
            return
        transport = self.writer.transport
        for _ in range(_FLUSH_POLLS):
            if transport.is_closing() or not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.001)
        self.abort(rst=True)

    async def close(self) -> None:
        """Close for good; a peer that stopped reading gets an abort instead of a flush."""
        self.writer.close()
        await self.stop_watch()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            self.writer.transport.abort()


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable head") from None
    request_line, *header_lines = text.lstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], parts[1], parts[2], headers
