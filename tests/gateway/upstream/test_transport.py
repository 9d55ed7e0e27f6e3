"""FastTransport, the pass-through's HTTP/1.1 wire, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.upstream.transport import FastTransport

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}


@asynccontextmanager
async def client(**timeouts: float) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(timeouts.pop("read", 10.0), connect=timeouts.pop("connect", 5.0))
    async with httpx.AsyncClient(transport=FastTransport(), timeout=timeout, follow_redirects=False) as http:
        yield http


def chat(content: str = "Hello", **extra: object) -> dict[str, object]:
    return {**BODY, "messages": [{"role": "user", "content": content}], **extra}


async def test_keep_alive_reuses_one_connection(fake: FakeUpstream) -> None:
    async with client() as http:
        for _ in range(3):
            response = await http.post(f"{fake.url}/v1/chat/completions", json=chat())
            assert response.status_code == 200
            assert response.json()["object"] == "chat.completion"
    assert {r.connection for r in fake.requests} == {fake.requests[0].connection}
    assert json.loads(fake.requests[0].body) == chat()


async def test_concurrent_requests_each_get_an_answer(fake: FakeUpstream) -> None:
    async with client() as http:
        replies = await asyncio.gather(
            *(
                http.post(f"{fake.url}/v1/chat/completions", json=chat(f"n{i} [[fake:echo]]"))
                for i in range(20)
            )
        )
    contents = sorted(r.json()["choices"][0]["message"]["content"] for r in replies)
    assert contents == sorted(f"n{i} [[fake:echo]]" for i in range(20))


async def test_stream_arrives_in_order_and_ends_with_done(fake: FakeUpstream) -> None:
    async with (
        client() as http,
        http.stream(
            "POST", f"{fake.url}/v1/chat/completions", json=chat("[[fake:chunks=7]]", stream=True)
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    assert len(events) >= 8


async def test_large_body_is_read_whole(fake: FakeUpstream) -> None:
    async with client() as http:
        response = await http.post(f"{fake.url}/v1/chat/completions", json=chat("[[fake:huge_body=5000000]]"))
    assert len(response.content) >= 5_000_000
    assert response.json()["object"] == "chat.completion"


async def test_reset_before_answer_is_a_protocol_error(fake: FakeUpstream) -> None:
    async with client() as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await http.post(f"{fake.url}/v1/chat/completions", json=chat("[[fake:reset]]"))


async def test_reset_mid_stream_raises_while_reading(fake: FakeUpstream) -> None:
    async with (
        client() as http,
        http.stream(
            "POST", f"{fake.url}/v1/chat/completions", json=chat("[[fake:reset_after=2]]", stream=True)
        ) as response,
    ):
        assert response.status_code == 200
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            async for _ in response.aiter_bytes():
                pass


async def test_no_headers_in_time_is_a_read_timeout(fake: FakeUpstream) -> None:
    async with client(read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{fake.url}/v1/chat/completions", json=chat("[[fake:delay_ms=3000]]"))


async def test_closed_port_is_a_connect_error(fake: FakeUpstream) -> None:
    port = fake.port
    await fake.stop()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=chat())


async def test_redirects_are_returned_not_followed(fake: FakeUpstream) -> None:
    async with FakeUpstream() as elsewhere, client() as http:
        response = await http.post(
            f"{fake.url}/v1/chat/completions",
            json=chat(f"[[fake:redirect={elsewhere.url}/v1/chat/completions]]"),
        )
        assert response.status_code in (301, 302, 303, 307, 308)
        assert elsewhere.requests == []


async def test_a_closed_keep_alive_connection_is_replaced() -> None:
    """A server that closes each connection right after answering: the next request must still work."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        served.append(1)
        body = b'{"ok": true}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()  # keep-alive was promised (HTTP/1.1 default), then the server hangs up

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client() as http:
            first = await http.post(f"http://127.0.0.1:{port}/x", json={})
            second = await http.post(f"http://127.0.0.1:{port}/x", json={})
        assert first.json() == second.json() == {"ok": True}
        assert len(served) == 2
    finally:
        server.close()
        await server.wait_closed()
