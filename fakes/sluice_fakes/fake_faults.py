"""Fault execution for the fake upstream: turns a `Faults` plan plus a happy-path reply into bytes.

What belongs here: the order in which faults apply (delay, reset, endless line, gzip bomb, then
redirect, HTML, status, broken 200s, an in-band stream error, huge body, and finally the reply
cut/stalled/slowed/split), the special bodies those faults send, and writing them with
backpressure and client-close detection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Final

import orjson

from sluice_fakes import fake_content as fc
from sluice_fakes.fake_directives import NO_FAULTS, Faults
from sluice_fakes.fake_http import Connection, chunk, last_chunk, reason, response_head
from sluice_fakes.fake_reply import (
    JSON_TYPE,
    SSE_TYPE,
    Call,
    Reply,
    error_reply,
    error_value,
    stream_error_frame,
)

Builder = Callable[[Call], Reply]

_PIECE: Final = 256 * 1024
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_ENDLESS_PREFIX: Final = b'data: {"choices":[{"index":0,"delta":{"content":"'
_LEAKY_HEADERS: Final = (
    ("set-cookie", "__cf_bm=fake-cookie; path=/; HttpOnly; Secure"),
    ("openai-organization", "org-fake-upstream"),
    ("anthropic-organization-id", "fake-org-id"),
    ("x-request-id", "req_fake_upstream"),
)
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_EMPTY_BLOCK: Final = b"\x03\x00"


async def respond(conn: Connection, call: Call, build: Builder, *, close: bool) -> bool:
    """Send the reply for ``call`` with its faults applied; True when it was sent completely."""
    faults = call.faults
    if faults is NO_FAULTS:
        return await write_reply(conn, build(call), faults, [], close=close)
    conn.start_watch()
    if faults.delay_ms and not await conn.sleep(faults.delay_ms / 1000):
        return False
    if faults.reset:
        conn.abort(rst=True)
        return False
    extra = _extra_headers(faults)
    if faults.endless_line is not None:
        return await _send_endless(conn, faults.endless_line, extra)
    if faults.gzip_bomb is not None:
        reply = build(dataclasses.replace(call, stream=False))
        body = await asyncio.to_thread(gzip_bomb, faults.gzip_bomb, reply.body)  # ~0.3 s per GiB, once
        extra.append(("content-encoding", "gzip"))
        return await write_reply(conn, dataclasses.replace(reply, body=body), faults, extra, close=close)
    reply = _fault_reply(call) or build(call)
    if faults.error_after is not None and reply.frames is not None:
        frames = (*reply.frames[: faults.error_after], stream_error_frame(call.wire, call.op))
        reply = dataclasses.replace(reply, frames=frames)
    if faults.status is not None and faults.status < 300:
        reply = dataclasses.replace(reply, status=faults.status)
    if faults.huge_body is not None:
        return await _send_padded(conn, reply, faults.huge_body, extra, close=close)
    return await write_reply(conn, reply, faults, extra, close=close)


def _extra_headers(faults: Faults) -> list[tuple[str, str]]:
    extra: list[tuple[str, str]] = []
    if faults.retry_after is not None:
        extra.append(("retry-after", faults.retry_after))
    if faults.retry_after_ms is not None:
        extra.append(("retry-after-ms", str(faults.retry_after_ms)))
    if faults.huge_header:
        extra.append(("x-fake-padding", "a" * faults.huge_header))
    if faults.leaky_headers:
        extra.extend(_LEAKY_HEADERS)
    return extra


def _fault_reply(call: Call) -> Reply | None:
    """The reply replacing the normal one for redirect/html/status/empty200/error200/bad_json."""
    faults = call.faults
    status = faults.status
    if faults.redirect is not None:
        code = status if status is not None and 300 <= status < 400 else 302
        return Reply(status=code, headers=(("location", faults.redirect),))
    if faults.html:
        return html_reply(status or 502)
    if status is not None and status >= 300:
        return error_reply(call.wire, status, _error_message(call, status))
    if faults.empty200:
        return Reply(status=200, content_type=JSON_TYPE, body=b"")
    if faults.error200:
        return Reply(body=orjson.dumps(error_value(call.wire, 500, _error_message(call, 500))))
    if faults.bad_json:
        return _bad_json_reply(call)
    return None


def html_reply(status: int) -> Reply:
    page = _HTML_PAGE.format(code=status, reason=reason(status))
    return Reply(status=status, content_type="text/html", body=page.encode())


def _bad_json_reply(call: Call) -> Reply:
    if not call.stream:
        return Reply(body=b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "trunc')
    frames: tuple[bytes, ...] = (b'data: {"choices": [{"delta": {"content": "broken\n\n',)
    if call.wire == "openai":
        frames += (b"data: [DONE]\n\n",)
    return Reply(content_type=SSE_TYPE, frames=frames)


def _error_message(call: Call, status: int) -> str:
    message = f"Simulated upstream error (HTTP {status})."
    if not call.faults.leak:
        return message
    headers = call.headers
    key = headers.get("x-api-key") or headers.get("x-goog-api-key") or headers.get("authorization", "")
    if call.wire == "gemini":
        prompt = fc.last_gemini_user_text(call.body.get("contents"))
    else:
        prompt = fc.last_user_text(call.body.get("messages"))
    return f"{message} Incorrect API key provided: {key.removeprefix('Bearer ')}. Prompt was: {prompt}"


# -- writing -------------------------------------------------------------------------------------
async def write_reply(
    conn: Connection, reply: Reply, faults: Faults, extra: list[tuple[str, str]], *, close: bool
) -> bool:
    headers = [("content-type", reply.content_type), *reply.headers, *extra]
    if reply.frames is None:
        head = response_head(reply.status, headers, length=len(reply.body), close=close)
        cut = faults.reset_after if faults.reset_after is not None else faults.stall_after
        if cut is None:
            return await conn.send(head + reply.body)
        await conn.send(head + reply.body[:cut])
        return await _end_early(conn, faults)
    headers.append(("cache-control", "no-cache"))
    head = response_head(reply.status, headers, length=None, close=close)
    if _is_fast_stream(faults):
        return await conn.send(head + reply.chunked_blob)
    return await _send_frames(conn, head, reply.frames, faults)


def _is_fast_stream(faults: Faults) -> bool:
    return (
        not faults.chunk_delay_ms
        and faults.reset_after is None
        and faults.stall_after is None
        and not faults.split_bytes
    )


async def _send_frames(conn: Connection, head: bytes, frames: tuple[bytes, ...], faults: Faults) -> bool:
    limit = faults.reset_after if faults.reset_after is not None else faults.stall_after
    selected = frames if limit is None else frames[:limit]
    if not await conn.send(head):
        return False
    delay = faults.chunk_delay_ms / 1000
    first = True
    for piece in _pieces(selected, faults.split_bytes):
        if not first and delay and not await conn.sleep(delay):
            return False
        first = False
        if not await conn.send(chunk(piece)):
            return False
    if limit is not None:
        return await _end_early(conn, faults)
    return await conn.send(last_chunk())


def _pieces(frames: tuple[bytes, ...], size: int | None) -> Iterator[bytes]:
    for frame in frames:
        if not frame:
            continue
        if not size:
            yield frame
            continue
        for start in range(0, len(frame), size):
            yield frame[start : start + size]


async def _end_early(conn: Connection, faults: Faults) -> bool:
    """After a cut: close (``reset_after``, FIN or RST with ``rst``) or hang (``stall_after``)."""
    if faults.reset_after is not None:
        await conn.close_abruptly(rst=faults.rst)
    else:
        await conn.wait_closed_by_client()
    return False


async def _send_endless(conn: Connection, limit: int, extra: list[tuple[str, str]]) -> bool:
    """An SSE line that never ends: ``limit`` bytes without a newline, then the connection closes."""
    head = response_head(200, [("content-type", SSE_TYPE), *extra], length=None, close=True)
    if not await conn.send(head + chunk(_ENDLESS_PREFIX)):
        return False
    filler = chunk(b"x" * _PIECE)
    sent = 0
    while sent < limit:
        if not await conn.send(filler):
            return False
        sent += _PIECE
    await conn.close_abruptly(rst=False)
    return False


async def _send_padded(
    conn: Connection, reply: Reply, size: int, extra: list[tuple[str, str]], *, close: bool
) -> bool:
    """``reply`` with its first JSON value preceded by whitespace so the body/line is ``size`` bytes."""
    headers = [("content-type", reply.content_type), *reply.headers, *extra]
    frames = reply.frames
    source = reply.body if frames is None else (frames[0] if frames else b"")
    split = max(0, source.find(b"{"))
    prefix, rest = source[:split], source[split:]
    padding = max(0, size - len(source))
    if frames is None:
        head = response_head(reply.status, headers, length=len(source) + padding, close=close)
        wrap: Callable[[bytes], bytes] = _identity
    else:
        head = response_head(reply.status, headers, length=None, close=close)
        wrap = chunk
    if not await conn.send(head + (wrap(prefix) if prefix else b"")):
        return False
    for piece_size in _padding_sizes(padding):
        if not await conn.send(wrap(b" " * piece_size)):
            return False
    tail = wrap(rest) if rest else b""
    if frames is not None:
        tail += b"".join(chunk(f) for f in frames[1:] if f) + last_chunk()
    return await conn.send(tail)


def _identity(data: bytes) -> bytes:
    return data


def _padding_sizes(total: int) -> Iterator[int]:
    while total > 0:
        step = min(total, _PIECE)
        yield step
        total -= step


# -- gzip bomb -----------------------------------------------------------------------------------
def gzip_bomb(size: int, body: bytes) -> bytes:
    """A valid gzip member that inflates to ``size`` spaces followed by ``body`` (still valid JSON)."""
    core, crc = _bomb_core(size)
    tail = _raw_deflate(body, zlib.Z_FINISH) if body else _FINAL_EMPTY_BLOCK
    crc = zlib.crc32(body, crc)
    total = (size + len(body)) & 0xFFFFFFFF
    return _GZIP_HEADER + core + tail + crc.to_bytes(4, "little") + total.to_bytes(4, "little")


@lru_cache(maxsize=4)
def _bomb_core(size: int) -> tuple[bytes, int]:
    """Raw deflate of ``size`` spaces ending on a full-flush boundary, plus their CRC-32."""
    block_size = 1 << 20
    count, rest = divmod(size, block_size)
    block = b" " * block_size
    segment = _raw_deflate(block, zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    parts = [segment * count]
    if rest:
        parts.append(_raw_deflate(b" " * rest, zlib.Z_FULL_FLUSH))
        crc = zlib.crc32(b" " * rest, crc)
    return b"".join(parts), crc


def _raw_deflate(data: bytes, mode: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(mode)
