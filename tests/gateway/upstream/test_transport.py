"""FastTransport, the pass-through's HTTP/1.1 wire, against real servers on 127.0.0.1: keep-alive,
faults, the cap on connections per host, and TLS against a local TLS server (a certificate made
with the openssl command for the test)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.upstream.causes import Cause, classify
from gateway.upstream.transport import FastTransport
from tests.conftest import require_service

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


async def test_a_stream_body_comes_one_piece_per_read(fake: FakeUpstream) -> None:
    # The fake writes a fast stream in one write, each event an HTTP chunk of its own: the relay gets
    # what one read brought in one piece, not one piece (one send to the client) per HTTP chunk.
    async with (
        client() as http,
        http.stream(
            "POST", f"{fake.url}/v1/chat/completions", json=chat("[[fake:chunks=20]]", stream=True)
        ) as response,
    ):
        pieces = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(pieces).count(b"data: ") >= 21
    assert len(pieces) <= 3


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


async def test_the_read_deadline_counts_from_the_last_read_not_the_first(fake: FakeUpstream) -> None:
    # 12 pieces 60 ms apart outlast the 0.3 s read timeout in all, never between two reads.
    async with (
        client(read=0.3) as http,
        http.stream(
            "POST",
            f"{fake.url}/v1/chat/completions",
            json=chat("[[fake:chunks=12,chunk_delay_ms=60]]", stream=True),
        ) as response,
    ):
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert raw.rstrip().endswith(b"data: [DONE]")


async def test_a_stream_that_stalls_after_some_reads_is_a_read_timeout(fake: FakeUpstream) -> None:
    async with (
        client(read=0.2) as http,
        http.stream(
            "POST",
            f"{fake.url}/v1/chat/completions",
            json=chat("[[fake:chunks=5,chunk_delay_ms=20,stall_after=4]]", stream=True),
        ) as response,
    ):
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            async for _ in response.aiter_raw():
                pass
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_shorter_read_deadline_on_a_reused_connection_is_kept(fake: FakeUpstream) -> None:
    transport = FastTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        url = f"{fake.url}/v1/chat/completions"
        await http.post(url, json=chat(), timeout=httpx.Timeout(30.0))  # arms a 30 s timer
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(url, json=chat("[[fake:delay_ms=3000]]"), timeout=httpx.Timeout(0.2))
        assert asyncio.get_running_loop().time() - started < 2.0


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


# -- the cap on connections per host ---------------------------------------------------------------
async def test_connections_to_one_host_stay_within_the_cap(fake: FakeUpstream) -> None:
    """Six calls at once through a cap of two: every call is answered, over two connections."""
    transport = FastTransport(max_connections_per_host=2)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        replies = await asyncio.gather(
            *(
                http.post(f"{fake.url}/v1/chat/completions", json=chat("[[fake:delay_ms=100]]"))
                for _ in range(6)
            )
        )
        assert transport.open_connections("http", "127.0.0.1", fake.port) == 2
    assert [r.status_code for r in replies] == [200] * 6
    assert len(fake.requests) == 6
    assert len({r.connection for r in fake.requests}) == 2


async def test_a_call_that_finds_every_connection_busy_waits_for_the_pool_timeout(fake: FakeUpstream) -> None:
    transport = FastTransport(max_connections_per_host=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10, pool=0.2)) as http:
        url = f"{fake.url}/v1/chat/completions"
        async with http.stream(
            "POST", url, json=chat("[[fake:chunks=5,stall_after=1]]", stream=True)
        ) as held:
            assert held.status_code == 200  # the one connection is busy with a stalled stream
            with pytest.raises(httpx.PoolTimeout):
                await http.post(url, json=chat())
            assert len(fake.requests) == 1  # the waiting call never reached the upstream
        # The stream closed: its connection (closed, as it was not read to its end) frees the slot.
        assert (await http.post(url, json=chat())).status_code == 200


async def test_a_broken_connection_frees_its_slot(fake: FakeUpstream) -> None:
    transport = FastTransport(max_connections_per_host=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10, pool=1.0)) as http:
        url = f"{fake.url}/v1/chat/completions"
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await http.post(url, json=chat("[[fake:reset]]"))
        assert (await http.post(url, json=chat())).status_code == 200
        assert transport.open_connections("http", "127.0.0.1", fake.port) == 1


def test_the_cap_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        FastTransport(max_connections_per_host=0)


# -- TLS, against a local TLS server ------------------------------------------------------------
@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI), and its key."""
    if shutil.which("openssl") is None:
        require_service("the openssl command, to make a certificate for the TLS tests")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def tls_server(certificate: tuple[Path, Path], served: list[bytes]) -> AsyncIterator[str]:
    """An HTTP/1.1 server over TLS on 127.0.0.1 that answers every request with its own path, on
    keep-alive connections; `served` gets one entry per connection (its requests' paths)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        paths = b""
        served.append(paths)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                served[-1] += path + b" "
                body = json.dumps({"path": path.decode()}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_with_a_trusted_certificate_keeps_its_connection_alive(
    certificate: tuple[Path, Path],
) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    connections: list[bytes] = []
    async with (
        tls_server(certificate, connections) as url,
        httpx.AsyncClient(transport=FastTransport(ssl_context=trusted), timeout=10) as http,
    ):
        first = await http.post(f"{url}/one", json=chat())
        second = await http.post(f"{url}/two", json=chat())
    assert (first.json(), second.json()) == ({"path": "/one"}, {"path": "/two"})
    assert len(connections) == 1  # one TLS handshake, then keep-alive


async def test_tls_refuses_a_certificate_nobody_vouches_for(certificate: tuple[Path, Path]) -> None:
    """The default context (certifi's roots) does not know the self-signed certificate: a connect
    error whose cause is TLS, before any request byte reached the server."""
    connections: list[bytes] = []
    async with (
        tls_server(certificate, connections) as url,
        httpx.AsyncClient(transport=FastTransport(), timeout=10) as http,
    ):
        with pytest.raises(httpx.ConnectError) as refused:
            await http.post(f"{url}/secret", json=chat())
    assert classify(refused.value, Cause.CONNECT) is Cause.TLS
    assert all(paths == b"" for paths in connections)  # the server never read a request


async def test_tls_checks_the_host_name(certificate: tuple[Path, Path]) -> None:
    """Trusted, but issued for 127.0.0.1: reached as `localhost`, the name does not match."""
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    connections: list[bytes] = []
    async with (
        tls_server(certificate, connections) as url,
        httpx.AsyncClient(transport=FastTransport(ssl_context=trusted), timeout=10) as http,
    ):
        with pytest.raises(httpx.ConnectError):
            await http.post(url.replace("127.0.0.1", "localhost") + "/x", json=chat())
    assert all(paths == b"" for paths in connections)
