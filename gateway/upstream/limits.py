"""Limits on upstream exchanges, enforced under every upstream HTTP client Sluice builds.

What belongs here: the read limits (a whole answer, one line of a stream, the response head) and
`CappedTransport`, an httpx transport wrapper that enforces them on the bytes as the caller will
read them. It inflates gzip and deflate itself, a bounded piece at a time, so a compressed answer
is capped by its inflated size (a gzip bomb stops at the cap instead of after 1 GiB) and never
inflates more than one piece ahead of the check. Past a cap it raises `AnswerRefused`, an httpx
transport error, so every caller's existing "the upstream answer broke" handling applies:
the OpenAI-wire pass-through, litellm's HTTP handler and the Azure SDK client all read through it.

A transport made with `stream=True` serves only stream calls and also checks the one thing a
transport can know about them: a 200 answer must be a stream, and an event stream must carry at
least one readable event. litellm turns an HTML page, an error object or broken JSON sent in place
of a stream into an empty, successful stream; this makes it an error before the first chunk.
A transport made with `timeout` holds every request to those deadlines (each phase: connect, read,
write, pool), whatever the client above it passed down.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson

from gateway.upstream import sse
from gateway.upstream.answer import Answer, Opener, RawHeaders

MAX_BODY_BYTES = 32 * 1024 * 1024  # a whole non-stream answer, inflated
MAX_LINE_BYTES = 4 * 1024 * 1024  # one line of an event stream, inflated
# The response head; FastTransport enforces it as the head arrives (h11 stops at 16 KiB, aiohttp at
# 8 KiB a line). Envoy's edge default is about 60 KiB.
MAX_HEADER_BYTES = 64 * 1024
INFLATE_PIECE = 64 * 1024  # the most one step of inflating may produce
# Line-delimited streams are capped per line (a long generation is legitimately large in total).
EVENT_STREAM = "text/event-stream"
LINE_STREAMS = (EVENT_STREAM, "application/x-ndjson")
STREAMS = (*LINE_STREAMS, "application/vnd.amazon.eventstream")
# Only what Sluice can inflate in bounded steps is asked for; anything else is refused.
ACCEPT_ENCODING = "gzip, deflate"
INFLATABLE = frozenset({"gzip", "x-gzip", "deflate"})
# Header lines that no longer describe an inflated body.
DROPPED = (b"content-encoding", b"content-length")


class AnswerRefused(httpx.RemoteProtocolError):
    """Sluice stopped reading the upstream's answer (past a cap, or not what was asked for).
    The message is Sluice's own, never the upstream's, so it may be shown to the client."""


def _readable_event(line: bytes) -> bool:
    if not line.startswith(b"data:"):
        return False
    payload = line[5:].strip()
    if not payload or payload == sse.DONE_DATA:
        return False
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return True


def _line_within_cap(size: int) -> None:
    if size > MAX_LINE_BYTES:
        raise AnswerRefused(f"an upstream stream line is longer than {MAX_LINE_BYTES} bytes")


class _CappedBody(httpx.AsyncByteStream):
    def __init__(
        self, inner: httpx.AsyncByteStream, *, inflate: bool, per_line: bool, need_event: bool
    ) -> None:
        self._inner = inner
        # 32 + MAX_WBITS: a gzip or a zlib header, whichever the upstream sent.
        self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS) if inflate else None
        self._per_line = per_line
        self._seen = 0  # bytes of the current line (per_line) or of the whole body
        # Until a readable event arrives: the unfinished line (bounded by the line cap).
        self._waiting: bytearray | None = bytearray() if need_event else None

    def _look_for_event(self, piece: bytes) -> None:
        assert self._waiting is not None
        self._waiting += piece
        if b"\n" not in piece:
            return
        *lines, rest = bytes(self._waiting).split(b"\n")
        if any(_readable_event(line.rstrip(b"\r")) for line in lines):
            self._waiting = None
        else:
            self._waiting = bytearray(rest)

    def _inflate(self, chunk: bytes) -> Iterator[bytes]:
        inflater = self._inflater
        if inflater is None:
            yield chunk
            return
        data = chunk
        while data:
            try:
                piece = inflater.decompress(data, INFLATE_PIECE)
            except zlib.error:
                raise AnswerRefused("the upstream's compressed answer is corrupt") from None
            yield piece
            data = inflater.unconsumed_tail

    def _count(self, piece: bytes) -> None:
        if not self._per_line:
            self._seen += len(piece)
            if self._seen > MAX_BODY_BYTES:
                raise AnswerRefused(f"the upstream answer is larger than {MAX_BODY_BYTES} bytes")
            return
        newline = piece.rfind(b"\n")
        if newline < 0:
            self._seen += len(piece)
        else:  # the line this piece ends (a whole line inside a piece is shorter than the piece)
            _line_within_cap(self._seen + piece.find(b"\n"))
            self._seen = len(piece) - newline - 1
        _line_within_cap(self._seen)

    def _check(self, piece: bytes) -> None:
        self._count(piece)
        if self._waiting is not None:
            self._look_for_event(piece)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            for piece in self._inflate(chunk):
                if piece:
                    self._check(piece)
                    yield piece
        if self._inflater is not None and (tail := self._inflater.flush()):
            self._check(tail)
            yield tail
        if self._waiting is not None:
            self._look_for_event(b"\n")  # the last line may lack its newline
            if self._waiting is not None:
                raise AnswerRefused("the upstream's event stream carried no readable event")

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps another transport; answers come back inflated and capped (see the module docstring).

    `close_inner=False` leaves closing the inner transport to its owner: for a transport shared by
    clients someone else builds and closes (litellm's handler closes the extra client it makes to
    retry a refused connection, which would cut every other request in flight on the transport).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
        close_inner: bool = True,
    ) -> None:
        self._inner = inner
        self._stream = stream
        self._deadlines = {} if timeout is None else timeout.as_dict()
        self._close_inner = close_inner
        # Looked up once: `open` is taken per request.
        self._opener = inner if isinstance(inner, Opener) else None

    def _hold_to_deadlines(self, request: httpx.Request) -> None:
        if not self._deadlines:
            return
        timeout = dict(request.extensions.get("timeout") or {})
        for phase, ours in self._deadlines.items():
            given = timeout.get(phase)
            if ours is not None:
                timeout[phase] = ours if given is None else min(given, ours)
        request.extensions["timeout"] = timeout

    def _prepare(self, request: httpx.Request) -> None:
        request.headers["accept-encoding"] = ACCEPT_ENCODING
        self._hold_to_deadlines(request)

    def _capped(
        self, status: int, encoding: str, content_type: str, inner: httpx.AsyncByteStream
    ) -> _CappedBody:
        """The body as the caller reads it (inflated, capped), or AnswerRefused for an answer Sluice
        does not read at all."""
        if encoding not in INFLATABLE and encoding != "identity":
            raise AnswerRefused("the upstream used a content-encoding Sluice did not ask for")
        if self._stream and status == 200 and not any(t in content_type for t in STREAMS):
            raise AnswerRefused("the upstream did not answer a stream call with a stream")
        return _CappedBody(
            inner,
            inflate=encoding in INFLATABLE,
            per_line=any(kind in content_type for kind in LINE_STREAMS),
            need_event=self._stream and status == 200 and EVENT_STREAM in content_type,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._prepare(request)
        response = await self._inner.handle_async_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        content_type = response.headers.get("content-type", "").lower()
        assert isinstance(response.stream, httpx.AsyncByteStream)
        try:
            body = self._capped(response.status_code, encoding, content_type, response.stream)
        except AnswerRefused:
            await response.aclose()
            raise
        headers: httpx.Headers | list[tuple[bytes, bytes]] = response.headers  # copied as they are
        if encoding in INFLATABLE:
            headers = [(name, value) for name, value in response.headers.raw if name.lower() not in DROPPED]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=body,
            extensions=response.extensions,
            request=request,
        )

    @property
    def opens(self) -> bool:
        """Whether `open` can be used: the inner transport answers with `Answer`s (FastTransport)."""
        return self._opener is not None

    async def open(self, request: httpx.Request) -> Answer:
        """`handle_async_request`'s answer as an `Answer` (see `gateway/upstream/answer.py`); only
        when `opens`."""
        assert self._opener is not None
        self._prepare(request)
        answer = await self._opener.open(request)
        headers = answer.headers
        encoding = (headers.get("content-encoding") or "identity").strip().lower()
        content_type = (headers.get("content-type") or "").lower()
        try:
            answer.stream = self._capped(answer.status_code, encoding, content_type, answer.stream)
        except AnswerRefused:
            await answer.aclose()
            raise
        if encoding in INFLATABLE:
            answer.headers = RawHeaders([line for line in headers.raw if line[0].lower() not in DROPPED])
        return answer

    async def aclose(self) -> None:
        if self._close_inner:
            await self._inner.aclose()
