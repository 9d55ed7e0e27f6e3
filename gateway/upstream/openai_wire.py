"""The direct pass-through for OpenAI-wire upstreams (OpenAI, vLLM, Groq, ...) over one pooled httpx client.

What belongs here: sending an allowlisted body to `{api_base}/chat/completions`, `/embeddings` or
`/responses`, turning transport failures and odd answers into `UpstreamError`s, and relaying a
stream's bytes without re-encoding each chunk (only the first event is parsed, so the privacy
object can ride on it). The two stream shapes differ in three ways, held in a `StreamShape`: how
a finished stream ends (Chat Completions: `data: [DONE]`; Responses: a `response.completed`,
`response.incomplete` or `response.failed` event), what an in-band error event looks like, and
where the usage is. Redirects are never followed, reads are capped (`gateway/upstream/limits.py`, under the
transport, inflated size included), upstream headers are never passed on.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.upstream import sse
from gateway.upstream.answer import UpstreamAnswer
from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTarget,
    UpstreamTimeout,
    retry_after,
)
from gateway.upstream.causes import Cause, classify
from gateway.upstream.error_codes import OTHER, known_code
from gateway.upstream.idle import IdleDeadline
from gateway.upstream.limits import MAX_BODY_BYTES, MAX_LINE_BYTES, AnswerRefused, CappedTransport
from gateway.upstream.transport import MAX_CONNECTIONS_PER_HOST, FastTransport

MAX_ERROR_BYTES = 64 * 1024
DONE_MARK = b"data: " + sse.DONE_DATA
# An in-band error event: its message is the upstream's (it may echo the prompt or the key).
ERROR_EVENT = re.compile(rb'(?:^|\n)data: ?\{\s*"error"')
# The Responses API's: an `error` event (named, or typed in its data), or the chat shape.
RESPONSES_ERROR_EVENT = re.compile(
    rb'(?:^|\n)(?:event: ?error\r?\n|data: ?\{\s*"type"\s*:\s*"error"|data: ?\{\s*"error")'
)


@dataclass(frozen=True)
class StreamShape:
    """What differs between the stream shapes this adapter relays (see the module docstring)."""

    path: str
    error_event: re.Pattern[bytes]
    # Byte strings that occur only in the event that finishes a stream (a value followed by its
    # closing quote: inside a JSON string the quote would be escaped). Empty: `[DONE]` finishes it.
    final_marks: tuple[bytes, ...] = ()
    usage_in: str | None = None  # the object holding `usage` in an event, when not the event itself
    required: str = "choices"  # the list every non-stream answer holds

    def usage_of(self, event: Any) -> Any:
        holder = event.get(self.usage_in) if self.usage_in and isinstance(event, dict) else event
        return holder.get("usage") if isinstance(holder, dict) else None

    def first_is_error(self, first: dict[str, Any]) -> bool:
        return "error" in first or first.get("type") == "error"


CHAT_STREAM = StreamShape("/chat/completions", ERROR_EVENT)
RESPONSES_STREAM = StreamShape(
    "/responses",
    RESPONSES_ERROR_EVENT,
    final_marks=(b'response.completed"', b'response.incomplete"', b'response.failed"'),
    usage_in="response",
    required="output",
)


def _error_code(raw: bytes) -> str | None:
    """The upstream's error code, type or status (never its message, which may echo the prompt): the
    first one in the fixed vocabulary, else the first given. `UpstreamStatusError` reads its quota
    markers from it and keeps only the vocabulary's value, or `other` (`known_code`)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None
    fields = (error.get("code"), error.get("type"), error.get("status"))
    given = [str(value) for value in fields if value not in (None, "")]
    return next((value for value in given if known_code(value) != OTHER), given[0] if given else None)


async def _read_capped(response: UpstreamAnswer, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise UpstreamProtocolError(f"upstream answer is larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _transport_error(exc: httpx.HTTPError) -> UpstreamError:
    if isinstance(exc, AnswerRefused):
        return UpstreamProtocolError(str(exc))  # Sluice's own message
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        cause = classify(exc, Cause.CONNECT)
        return UpstreamConnectError(f"cannot connect to the upstream: {cause}", cause=cause)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("the upstream did not answer in time", cause=Cause.READ_TIMEOUT)
    cause = classify(exc, Cause.PROTOCOL)
    return UpstreamProtocolError(f"the upstream connection failed ({type(exc).__name__})", cause=cause)


def _parse_object(raw: bytes, required: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("the upstream answer is not JSON") from None
    # `"error": null` is part of every Responses object; an error answer sets it.
    if (
        not isinstance(parsed, dict)
        or parsed.get("error") is not None
        or not isinstance(parsed.get(required), list)
    ):
        raise UpstreamProtocolError("the upstream answer is not an OpenAI response object")
    return parsed


def _usage_from(chunk: bytes, shape: StreamShape = CHAT_STREAM) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for event in chunk.split(b"\n\n"):
        start = event.find(b"data: {")
        if start < 0 or b'"usage":{' not in event.replace(b" ", b""):
            continue
        try:
            usage = shape.usage_of(orjson.loads(event[start + 6 :]))
        except orjson.JSONDecodeError:
            continue
        if isinstance(usage, dict):
            found = usage
    return found


def _error_event_at(chunk: bytes, shape: StreamShape = CHAT_STREAM) -> int:
    """Where an in-band error event starts in `chunk` (-1: none). Its text is never relayed."""
    if b"error" not in chunk:
        return -1
    found = shape.error_event.search(chunk)
    if found is None:
        return -1
    return found.start() + 1 if chunk[found.start() : found.start() + 1] == b"\n" else found.start()


class RelayStream:
    """A stream whose first event was parsed; the rest is relayed as the upstream framed it."""

    def __init__(
        self,
        response: UpstreamAnswer,
        raw: AsyncIterator[bytes],
        first: dict[str, Any],
        rest: bytes,
        idle: float,
        shape: StreamShape = CHAT_STREAM,
    ) -> None:
        self.first = first
        self._raw = raw
        usage = shape.usage_of(first)
        self.usage: dict[str, Any] | None = usage if isinstance(usage, dict) else None
        self._response = response
        self._rest = rest
        self._idle = idle
        self._shape = shape
        self._finished = False

    def _see(self, tail: bytes, chunk: bytes) -> None:
        """Note the final event of a shape that has one (a mark may straddle `tail` and `chunk`)."""
        if not self._finished:
            self._finished = any(mark in tail[-32:] + chunk for mark in self._shape.final_marks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        shape = self._shape
        marked = bool(shape.final_marks)
        tail = self._rest[-64:]
        if marked:
            self._see(b"", self._rest)
        pending_line = 0
        raw = self._raw
        deadline = IdleDeadline().after(self._idle)
        try:
            if self._rest:
                cut = _error_event_at(self._rest, shape)
                if cut >= 0:
                    if cut:
                        yield self._rest[:cut]
                    raise UpstreamStreamError("the upstream sent an error event mid-stream")
                if b'"usage"' in self._rest:
                    self.usage = _usage_from(self._rest, shape) or self.usage
                yield self._rest
            while True:
                try:
                    with deadline:
                        chunk = await anext(raw)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise UpstreamStreamError("the upstream stream stalled") from None
                newline = chunk.rfind(b"\n")
                pending_line = pending_line + len(chunk) if newline < 0 else len(chunk) - newline - 1
                if pending_line > MAX_LINE_BYTES:
                    raise UpstreamStreamError("the upstream sent an over-long stream line")
                if b'"usage"' in chunk:
                    self.usage = _usage_from(chunk, shape) or self.usage
                cut = _error_event_at(chunk, shape)
                if cut >= 0:
                    if cut:
                        yield chunk[:cut]
                    raise UpstreamStreamError("the upstream sent an error event mid-stream")
                if marked:
                    self._see(tail, chunk)
                tail = (tail + chunk)[-64:]
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamStreamError(f"the upstream stream broke ({type(exc).__name__})") from None
        finally:
            deadline.close()
            await self._response.aclose()
        if not (self._finished if marked else DONE_MARK in tail):
            raise UpstreamStreamError("the upstream closed the stream before it finished")

    async def aclose(self) -> None:
        await self._response.aclose()


async def _first_event(
    raw: AsyncIterator[bytes], deadline: float, shape: StreamShape = CHAT_STREAM
) -> tuple[dict[str, Any], bytes]:
    buffer = b""
    async with asyncio.timeout(deadline):
        while True:
            sep = buffer.find(b"\n\n")
            if sep >= 0:
                event, rest = buffer[:sep], buffer[sep + 2 :]
                data = b"\n".join(
                    line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")
                )
                if not data:  # a comment or keep-alive event: skip it
                    buffer = rest
                    continue
                if data == sse.DONE_DATA:
                    raise UpstreamProtocolError("the upstream stream ended before its first chunk")
                try:
                    first = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamProtocolError("the upstream stream's first event is not JSON") from None
                if not isinstance(first, dict) or shape.first_is_error(first):
                    raise UpstreamProtocolError("the upstream stream began with an error")
                return first, rest
            if len(buffer) > MAX_LINE_BYTES:
                raise UpstreamProtocolError("the upstream's first stream event is too large")
            try:
                buffer += await anext(raw)
            except StopAsyncIteration:
                raise UpstreamProtocolError("the upstream stream ended before its first chunk") from None


class OpenAIWireAdapter:
    def __init__(self, *, max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST) -> None:
        self._client = new_client(max_connections_per_host=max_connections_per_host)

    def _request(self, target: UpstreamTarget, path: str, body: dict[str, Any], read: float) -> httpx.Request:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        base = (target.api_base or "").rstrip("/")
        payload = orjson.dumps({**body, "model": target.upstream_model})
        return post_request(self._client, base + path, headers, payload, target, read)

    async def _send(self, request: httpx.Request) -> UpstreamAnswer:
        return await send_checked(self._client, request)

    async def _call(
        self, target: UpstreamTarget, path: str, body: dict[str, Any], required: str
    ) -> dict[str, Any]:
        response = await self._send(self._request(target, path, body, target.timeout))
        return _parse_object(await read_answer(response), required)

    async def chat(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(target, "/chat/completions", body, "choices")

    async def embeddings(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(target, "/embeddings", body, "data")

    async def chat_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> RelayStream:
        return await self._stream(target, body, CHAT_STREAM)

    async def responses(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(target, "/responses", body, RESPONSES_STREAM.required)

    async def responses_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> RelayStream:
        return await self._stream(target, body, RESPONSES_STREAM)

    async def _stream(self, target: UpstreamTarget, body: dict[str, Any], shape: StreamShape) -> RelayStream:
        response = await self._send(self._request(target, shape.path, body, target.timeout))
        raw, first, rest = await open_events(response, target, shape)
        return RelayStream(response, raw, first, rest, target.idle_timeout, shape)

    async def aclose(self) -> None:
        await self._client.aclose()


# -- shared with the Anthropic wire's pass-through (`gateway/upstream/anthropic_wire.py`) ----------


def new_client(*, max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST) -> httpx.AsyncClient:
    """The pass-through's pooled client: Sluice's transport under the caps, no redirects, no proxies
    from the environment."""
    return httpx.AsyncClient(
        transport=CappedTransport(FastTransport(max_connections_per_host=max_connections_per_host)),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(120.0, connect=5.0),
    )


@functools.lru_cache(maxsize=256)
def _endpoint(url: str) -> tuple[httpx.URL, str]:
    """An upstream endpoint's parsed URL and its `Host` line: built from config, so few; parsed once."""
    parsed = httpx.URL(url)
    return parsed, parsed.netloc.decode("ascii")


@functools.lru_cache(maxsize=256)
def _timeouts(connect: float, read: float) -> tuple[tuple[str, float | None], ...]:
    return tuple(httpx.Timeout(connect=connect, read=read, write=read, pool=connect).as_dict().items())


@functools.lru_cache(maxsize=256)
def _head(
    host: str, defaults: tuple[tuple[bytes, bytes], ...], given: tuple[tuple[str, str], ...]
) -> httpx.Headers:
    """A request's header lines but Content-Length, normalised once per endpoint, client and header
    set (built from config, plus the Messages wire's validated version and beta names: few). Never
    handed out as is: `httpx.Request` copies it."""
    names = {name.lower() for name, _ in given}
    lines = [("Host", host)]
    for name, value in defaults:
        if name.lower().decode("latin-1") not in names:
            lines.append((name.decode("latin-1"), value.decode("latin-1")))
    lines += given
    return httpx.Headers(lines)


def post_request(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    payload: bytes,
    target: UpstreamTarget,
    read: float,
) -> httpx.Request:
    """The request `client.build_request("POST", url, content=payload, headers=headers, ...)` builds,
    header lines and their order included (Host, the client's defaults that `headers` does not
    override, `headers`, Content-Length), with the read and write deadline `read`, without that
    call's per-request merging of the client's URL, headers, cookies and parameters (it was a fifth
    of the pass-through's CPU per request: bench/PROFILE.md), and without normalising the same header
    lines again for every request."""
    parsed, host = _endpoint(url)
    head = _head(host, tuple(client.headers.raw), tuple(headers.items()))
    timeout = dict(_timeouts(target.connect_timeout, read))
    request = httpx.Request(
        "POST", parsed, headers=head, stream=httpx.ByteStream(payload), extensions={"timeout": timeout}
    )
    request.headers["Content-Length"] = str(len(payload))
    request.read()  # as `content=` would have: the body is there to see (respx, logging of tests)
    return request


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> UpstreamAnswer:
    """`client.send(request, stream=True)` without the layers the pass-through does not use
    (authentication flows, redirects, which it never follows, event hooks, the cookie jar, the
    per-request log line): the request goes to the transport the client would choose for it (the
    seam respx mocks, with `using="httpx"`). Sluice's own transport answers with its own `Answer`
    (`gateway/upstream/answer.py`); any other (a mock) with an `httpx.Response`."""
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    transport = client._transport_for_url(request.url)
    if isinstance(transport, CappedTransport) and transport.opens:
        return await transport.open(request)
    response = await transport.handle_async_request(request)
    response.request = request
    return response


async def send_checked(client: httpx.AsyncClient, request: httpx.Request) -> UpstreamAnswer:
    """Send `request`; a 200's response is returned unread, anything else raised as an UpstreamError."""
    try:
        response = await _send(client, request)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    if response.status_code != 200:
        try:
            raw = await _read_capped(response, MAX_ERROR_BYTES)
        except (UpstreamError, httpx.HTTPError):
            raw = b""
        finally:
            await response.aclose()
        if 300 <= response.status_code < 400:
            raise UpstreamProtocolError(
                f"the upstream redirected (HTTP {response.status_code}); not followed"
            )
        raise UpstreamStatusError(
            response.status_code, code=_error_code(raw), retry_after=retry_after(response.headers)
        )
    return response


async def read_answer(response: UpstreamAnswer) -> bytes:
    """A non-stream answer's body, within the cap."""
    try:
        return await _read_capped(response, MAX_BODY_BYTES)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    finally:
        await response.aclose()


async def open_events(
    response: UpstreamAnswer, target: UpstreamTarget, shape: StreamShape
) -> tuple[AsyncIterator[bytes], dict[str, Any], bytes]:
    """An event stream's raw chunks, its first event (parsed) and what followed it in the same read."""
    try:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            raise UpstreamProtocolError("the upstream did not answer with an event stream")
        raw = response.aiter_bytes()  # decoded; also works on a response already read (mocks)
        first, rest = await _first_event(raw, target.timeout, shape)
    except TimeoutError:
        await response.aclose()
        no_chunk = "the upstream sent no first chunk in time"
        raise UpstreamTimeout(no_chunk, cause=Cause.READ_TIMEOUT) from None
    except httpx.HTTPError as exc:
        await response.aclose()
        raise _transport_error(exc) from None
    except BaseException:  # an UpstreamError, or cancelled (the client left before the first chunk)
        await response.aclose()
        raise
    return raw, first, rest
