"""The pass-through reads FastTransport's own `Answer` (no `httpx.Response` built), and a mock at the
HTTP seam (respx) still answers with an `httpx.Response` read the same way: both inflate, cap and
refuse as CappedTransport's `httpx.Response` path does; `RawHeaders` looks up as `httpx.Headers`."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
import respx
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.upstream.answer import Answer, RawHeaders
from gateway.upstream.base import UpstreamProtocolError, UpstreamTarget
from gateway.upstream.limits import CappedTransport
from gateway.upstream.openai_wire import post_request, read_answer, send_checked
from gateway.upstream.transport import FastTransport

REPLY = orjson.dumps({"object": "chat.completion", "choices": [{"index": 0}]})


def target(base: str) -> UpstreamTarget:
    return UpstreamTarget("openai/m", "m", base, api_key="sk-up", timeout=5.0)


@asynccontextmanager
async def fast_client() -> AsyncIterator[tuple[httpx.AsyncClient, FastTransport]]:
    fast = FastTransport()
    async with httpx.AsyncClient(transport=CappedTransport(fast)) as client:
        yield client, fast


@asynccontextmanager
async def answering(headers: list[tuple[str, str]], body: bytes) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers every request with this 200 (kept alive)."""
    lines = [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(lines) + f"Content-Length: {len(body)}\r\n\r\n".encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in request_head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(head + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


async def ask(client: httpx.AsyncClient, base: str, content: str = "hi") -> tuple[object, bytes]:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}]})
    request = post_request(client, base + "/chat/completions", {}, body, target(base), 5.0)
    answer = await send_checked(client, request)
    return answer, await read_answer(answer)


async def test_the_pass_through_reads_fast_transports_own_answer(fake: FakeUpstream) -> None:
    async with fast_client() as (client, fast):
        for _ in range(2):
            answer, raw = await ask(client, f"{fake.url}/v1")
            assert isinstance(answer, Answer)
            assert orjson.loads(raw)["object"] == "chat.completion"
        # Read whole and closed: the connection went back to the pool and was used again.
        assert fast.open_connections("http", "127.0.0.1", fake.port) == 1
    assert len({request.connection for request in fake.requests}) == 1


async def test_a_mock_at_the_seam_answers_with_an_httpx_response_read_the_same_way() -> None:
    async with fast_client() as (client, _), respx.mock(using="httpx") as mock:
        mock.post("http://upstream.test/v1/chat/completions").respond(200, content=REPLY)
        answer, raw = await ask(client, "http://upstream.test/v1")
    assert isinstance(answer, httpx.Response)
    assert raw == REPLY


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_inflated_as_the_httpx_path_inflates_it(encoding: str) -> None:
    packed = gzip.compress(REPLY) if encoding == "gzip" else zlib.compress(REPLY)
    given = [("Content-Type", "application/json"), ("Content-Encoding", encoding), ("X-Other", "1")]
    async with answering(given, packed) as base, fast_client() as (client, _):
        answer, raw = await ask(client, base)
        assert isinstance(answer, Answer)
        assert raw == REPLY
        # The httpx path (litellm's, the SDKs') through the same transports: the same header lines.
        response = await client.post(base + "/chat/completions", content=b"{}")
        assert response.content == REPLY
    assert answer.headers.raw == response.headers.raw
    assert answer.headers.get("content-encoding") is None
    assert answer.headers.get("content-length") is None
    assert answer.headers.get("x-other") == "1"


async def test_an_encoding_not_asked_for_is_refused_and_the_connection_closed() -> None:
    given = [("Content-Type", "application/json"), ("Content-Encoding", "br")]
    async with answering(given, b"\x0b\x02\x80{}\x03") as base, fast_client() as (client, fast):
        with pytest.raises(UpstreamProtocolError, match="content-encoding"):
            await ask(client, base)
        port = int(base.rsplit(":", 1)[1].split("/")[0])
        assert fast.open_connections("http", "127.0.0.1", port) == 0


async def test_an_answer_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.upstream.limits.MAX_BODY_BYTES", 1000)
    async with (
        answering([("Content-Type", "application/json")], b" " * 5000) as base,
        fast_client() as (client, _),
    ):
        with pytest.raises(UpstreamProtocolError, match="larger than 1000 bytes"):
            await ask(client, base)


LINES = [
    (b"Content-Type", b"text/event-stream"),
    (b"retry-after", b"3"),
    (b"X-Twice", b"a"),
    (b"x-twice", b"b"),
    (b"X-Utf8", "é".encode()),
]


@pytest.mark.parametrize("name", ["content-type", "Retry-After", "x-twice", "X-UTF8", "absent"])
def test_raw_headers_look_up_as_httpx_headers_do(name: str) -> None:
    ours, theirs = RawHeaders(LINES), httpx.Headers(LINES)
    assert ours.get(name) == theirs.get(name)
    assert ours.get(name, "default") == theirs.get(name, "default")
    assert (name in ours) == (name in theirs)
    assert sorted(ours) == sorted(theirs)
    assert len(ours) == len(theirs)
