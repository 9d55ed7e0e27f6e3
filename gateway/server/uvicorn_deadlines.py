"""The HTTP protocol `sluice serve` and `sluice demo` run: uvicorn's httptools protocol with deadlines.

What belongs here: the deadlines uvicorn lacks for receiving a request (slowloris, checklist item
18) and for sending a response to a client that does not read it (checklist T6), the request
heads Sluice refuses though the parser accepts them, how a connection closes while the client still
sends, and nothing else of the HTTP layer.

uvicorn waits forever for a fresh connection's first byte, for headers that trickle in, for the
rest of a body nobody reads any more, and for a client to read what it was sent; every such
connection costs a socket and memory, and a request still in progress holds a slot of the edge's
in-flight cap.

- Headers: from the connection being made (or from the first byte of a keep-alive connection's
  next request) until the headers are complete, at most `SLUICE_HEADER_TIMEOUT` in all. Bytes
  that keep trickling in do not extend it.
- Header bytes: uvicorn buffers a header block of any size before the app can count it (a 64 MiB
  header cost about 100 MB). Past `HEAD_CAP` bytes of a request head still incomplete, the answer
  is a 431 `headers_too_large` with `Connection: close` (the edge refuses complete heads over
  `MAX_HEADER_BYTES` itself; the cap here adds room for the request line).
- Body: the whole body must arrive within `SLUICE_BODY_TIMEOUT` of the headers' end. This is the
  one body deadline: its timer is here, and the request's `BodyDeadline` rides in the ASGI scope
  (`gateway.server.request_body`). When it passes with the body incomplete and no answer started:
  a route that claimed the deadline (the edge's pipeline routes, `gateway.server.edge`) is woken
  and answers the 408 itself (with the request id, counted in `/metrics`), and the connection
  closes after it; any other route still waiting for the body sees the client gone and the 408 is
  written here. The rest of a body nobody reads any more (after an early answer, such as a 401
  sent before the body is read) is cut off at the same deadline.

On expiry: if part of a request arrived and no response is being written on the connection, the
answer is a 408 `request_timeout` in the OpenAI envelope with `Connection: close`, then the
connection closes. If nothing of a request arrived, it just closes, as Apache's mod_reqtimeout
does (an idle pre-opened connection has nothing to answer). If an earlier response on the
connection is still being written (pipelining, where uvicorn itself stops reading), nothing is cut
and the deadline is looked at again one period later.

- Writing: uvicorn stops a response's writes while the connection's send buffer is full (the client
  is not reading) and waits for it to drain, for ever. A stream waiting so holds its upstream call
  (back-pressured: nothing more is read from it) and a slot of the in-flight cap. When the buffer
  has stayed full for `SLUICE_CLIENT_WRITE_TIMEOUT` the connection is reset (a TCP RST: a graceful
  close would wait for the same drain). The response then sees a disconnected client, so a stream
  stops and closes its upstream call, and its ledger record says `client_cancelled`. A client that
  reads, however slowly, keeps its connection as long as the buffer drains below uvicorn's low-water
  mark (16 KiB) within the deadline each time it fills.

Heads refused with a 400 `malformed_request` and `Connection: close`, as nginx refuses them, because
a proxy in front may frame the request differently (request smuggling): a `Transfer-Encoding` other
than exactly one `chunked` (`identity, chunked`, `chunked ` with trailing space, a tab before the
value, which llhttp skips as whitespace but nginx does not), a `Transfer-Encoding` on HTTP/1.0, and
any HTTP version but 1.0 and 1.1 (a request line with no version is HTTP/0.9 to llhttp).

Closing: a response that closes the connection (a 413, say) while the request's body is still
arriving does not close at once: a socket closed with unread data is reset, and the reset can
destroy the answer before the client reads it. The write side is shut (the client sees the answer,
then the end), what still arrives is dropped, and the connection closes `LINGER` seconds later, as
nginx's lingering close does. Sluice serves no WebSocket (`ws="none"`): an Upgrade header is
ignored, the request is answered as plain HTTP, and the connection closes after that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import struct
from typing import Any, Literal, cast

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.errors import HeadersTooLarge, InvalidRequest, RequestTimeout, SluiceError
from gateway.names import ErrorCode
from gateway.server.request_body import BODY_DEADLINE, MAX_HEADER_BYTES, BodyDeadline
from gateway.settings import Settings

Phase = Literal["headers", "body"]
# The most of a request head (request line and headers) held before it is complete.
HEAD_CAP = MAX_HEADER_BYTES + 16 * 1024
# How long a refused connection is still read (and dropped) so the client gets its answer.
LINGER = 2.0
HTTP_VERSIONS = ("1.0", "1.1")
# `Transfer-Encoding:` and the whitespace before its value, as the client sent them.
_TE_LINE = re.compile(rb"(?i)\ntransfer-encoding:([ \t]*)")

log = logging.getLogger("sluice.http")


class RefusedHead(Exception):
    """A request head the parser accepts and Sluice refuses (answered by `send_400_response`)."""


class _ClosingTransport:
    """The transport a request's response cycle writes to: the connection's, except that `close()`
    goes through the protocol, which lingers while the request's body is still arriving."""

    def __init__(self, protocol: DeadlineHttpProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_response()


def timeout_response(phase: Phase, seconds: float, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete 408 response in the OpenAI envelope, for a request no ASGI app is answering."""
    error = RequestTimeout(f"the request {phase} did not arrive within {seconds:g} s")
    return error_response(error, default_headers)


def error_response(error: SluiceError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete response in the OpenAI envelope, written straight to the transport."""
    body = orjson.dumps(error.body())
    head = [STATUS_LINE[error.status]]
    head += [b"%s: %s\r\n" % (name, value) for name, value in default_headers]
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
    head += [b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in error.headers.items()]
    return b"".join([*head, b"\r\n", body])


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the header, body and write deadlines described above."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
        body_timeout: float,
        write_timeout: float | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.write_timeout = write_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._request_begun = False  # some bytes of the current request have arrived
        self._head_bytes: int | None = None  # bytes of the current request head so far (None: complete)
        self._discarding = False  # refused: what arrives now is dropped until the connection closes
        self._chunk = b""  # the bytes the parser is reading now
        self._head_raw: list[bytes] = []  # the chunks the current request head arrived in
        self._body: BodyDeadline | None = None  # the current request's body deadline (in its scope)

    # -- the deadline --------------------------------------------------------------------------
    def _arm(self, phase: Phase) -> None:
        self._disarm()
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _answering(self, phase: Phase) -> bool:
        """Is a response still being written on this connection (so reading may be ours to resume)?"""
        if self.pipeline:
            return True
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False
        # While headers arrive, `cycle` is the previous request's; while a body arrives, this one's.
        return phase == "headers" or cycle.response_started

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._answering(phase):
            self._arm(phase)
            return
        headers = self.server_state.default_headers
        if phase == "body" and self.cycle is not None and not self.cycle.response_started:
            body = self._body
            if body is not None and body.claimed:
                # The route answers its own 408 (connection: close): wake its pending receive.
                body.expired = True
                self.cycle.message_event.set()
                return
            # A route is still waiting for this body: it sees a disconnect, its sends go nowhere.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self.transport.write(timeout_response(phase, self.body_timeout, headers))
        elif phase == "headers" and self._request_begun:
            self.transport.write(timeout_response(phase, self.header_timeout, headers))
        self.transport.close()

    # -- the write deadline --------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timeout is not None and self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write()

    def _disarm_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_expired(self) -> None:
        self._write_deadline = None
        # A reset, not a close: a closed socket would still hand its full send buffer (up to
        # megabytes) to the client that is not reading it. connection_lost follows: the response
        # sees the client gone.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- the head cap --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        # The parser runs the hooks below synchronously. A chunk in which a request begins may
        # also hold the end of the previous one, so counting starts with the next chunk: at most
        # one read (256 KiB) more than the cap is ever held.
        if self._discarding:
            return
        counting = self._head_bytes is not None
        self._chunk = data
        if counting:
            self._head_raw.append(data)
        super().data_received(data)
        if not counting or self._head_bytes is None or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > HEAD_CAP:
            self._refuse_head()

    def _refuse_head(self) -> None:
        """Answer 431, then read and drop what the client still sends for `LINGER` seconds before
        closing: closing with unread data would reset the connection and could lose the answer."""
        too_large = HeadersTooLarge(f"the request line and headers are over {HEAD_CAP} bytes")
        self.transport.write(error_response(too_large, self.server_state.default_headers))
        self._linger()

    def _linger(self) -> None:
        """Shut the write side, drop what still arrives, close `LINGER` seconds later."""
        self._disarm()
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)

    def close_after_response(self) -> None:
        """A response that ends the connection is written: linger if the request still arrives."""
        if self._request_begun and not self.transport.is_closing():
            self._linger()
        else:
            self.transport.close()

    # -- heads refused -------------------------------------------------------------------------
    def _check_head(self) -> None:
        version = self.parser.get_http_version()
        if version not in HTTP_VERSIONS:
            raise RefusedHead("unsupported HTTP version")
        codings = [value for name, value in self.headers if name == b"transfer-encoding"]
        if not codings:
            return
        if version == "1.0" or len(codings) > 1 or codings[0].lower() != b"chunked":
            raise RefusedHead("Transfer-Encoding other than chunked")
        # llhttp drops the whitespace before a value, so a tab there is only seen in the raw bytes.
        # (The chunks may also hold the end of an earlier pipelined body: never a valid JSON body.)
        if any(b"\t" in found.group(1) for found in _TE_LINE.finditer(b"".join(self._head_raw))):
            raise RefusedHead("whitespace other than spaces before Transfer-Encoding")

    # -- uvicorn's hooks -----------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses (NUL or a bare CR or LF in a header, a
        request line too long or malformed): the same 400 and close, in the OpenAI envelope."""
        malformed = InvalidRequest(
            "the HTTP request is malformed", code=ErrorCode.MALFORMED_REQUEST, headers={"connection": "close"}
        )
        self.transport.write(error_response(malformed, self.server_state.default_headers))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        self._head_bytes = 0
        self._head_raw = [self._chunk]
        if self._deadline is None:  # a keep-alive connection's next request (or a pipelined one)
            self._arm("headers")

    def on_headers_complete(self) -> None:
        self._check_head()  # raising here makes the parser refuse the request: a 400, then close
        self._head_bytes = None
        self._head_raw = []
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = cast("asyncio.Transport", _ClosingTransport(self))
        self._body = None
        if self.cycle is not None and self.cycle.scope is self.scope:  # this request's cycle
            self._body = BodyDeadline(self.body_timeout)
            extensions = cast("dict[str, Any]", self.scope.setdefault("extensions", {}))
            extensions[BODY_DEADLINE] = self._body
        self._arm("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._request_begun = False

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn warns (twice, suggesting to install a WebSocket library) for every request with an
        # Upgrade header: any client could fill the log. Sluice answers such a request as plain HTTP.
        # The parser reads nothing after it on this connection (no deadline would ever cover bytes
        # sent next), so the connection ends with that answer.
        log.debug("an Upgrade header was ignored: Sluice serves no WebSocket")
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False


def deadline_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """What `uvicorn.run(http=...)` gets: the protocol with the deadlines from `settings`.

    A partial rather than a class made here: uvicorn only calls it (once per connection), and with
    `--workers` above 1 it is pickled to each worker, which a class built at run time cannot be.
    """
    factory = functools.partial(
        DeadlineHttpProtocol,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        write_timeout=settings.client_write_timeout,
    )
    return cast("type[asyncio.Protocol]", factory)
