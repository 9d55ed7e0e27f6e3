"""A fake LLM upstream server (OpenAI, Anthropic Messages, Gemini wires) with fault injection.

What belongs here: the `FakeUpstream` server object (start/stop, ``async with``, a thread runner),
request recording, per-request fault selection (control-API script < model name < body marker),
the ``/_fake/*`` control API and the command-line entry point::

    python -m gateway.testing.fake_upstream --host 127.0.0.1 --port 0 [--quiet] [--no-record]

Wire formats live in `fake_wires`, fault execution in `fake_faults`, directive parsing in
`fake_directives` and the HTTP/1.1 plumbing in `fake_http`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from gateway.testing import fake_wires
from gateway.testing.fake_directives import (
    NO_FAULTS,
    DirectiveError,
    build_faults,
    directives_in_body,
    directives_in_model,
    parse_directives,
)
from gateway.testing.fake_faults import Builder, respond
from gateway.testing.fake_http import Connection, HttpError, Request, response_head
from gateway.testing.fake_reply import Call, Reply, error_reply, json_reply

DEFAULT_MODELS: Final = (
    "gpt-4o-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "gemini-2.5-flash",
    "meta-llama/Llama-3.1-8B-Instruct",
)
_THREAD_TIMEOUT: Final = 30.0
_log = logging.getLogger(__name__)

_BUILDERS: Final[dict[tuple[str, str], Builder]] = {
    ("openai", "chat"): fake_wires.openai_chat,
    ("openai", "embed"): fake_wires.openai_embeddings,
    ("anthropic", "chat"): fake_wires.anthropic_messages,
    ("anthropic", "count_tokens"): fake_wires.anthropic_count_tokens,
    ("gemini", "chat"): fake_wires.gemini_generate,
    ("gemini", "embed"): fake_wires.gemini_embed,
    ("gemini", "batch_embed"): fake_wires.gemini_embed,
    ("gemini", "count_tokens"): fake_wires.gemini_embed,
}


@dataclasses.dataclass(slots=True)
class RecordedRequest:
    """What the fake received; ``client_closed_at`` is set when the client left mid-response.

    ``connection`` numbers the TCP connection (1, 2, ...) so tests can see keep-alive reuse.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float
    wire: str | None
    directives: str
    connection: int
    client_closed_at: float | None = None
    completed: bool = False

    @property
    def client_closed_early(self) -> bool:
        return self.client_closed_at is not None and not self.completed

    def to_json(self) -> dict[str, Any]:
        value = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        value["body"] = self.body.decode("utf-8", "replace")
        value["client_closed_early"] = self.client_closed_early
        return value


class FakeUpstream:
    """The fake server.  Use ``async with FakeUpstream() as fake`` or ``FakeUpstream.in_thread()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        models: Sequence[str] = DEFAULT_MODELS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._record_enabled = record
        self.models = tuple(models)
        self._log = log
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: collections.deque[list[Any]] = collections.deque()
        self._connection_numbers = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FakeUpstream already started")
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await server.wait_closed()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> Iterator[FakeUpstream]:
        """Run a fake on its own event loop in a daemon thread, for sync tests."""
        runner = _ThreadRunner(cls(host=host, port=port, record=record, models=models))
        runner.start()
        try:
            yield runner.fake
        finally:
            runner.stop()

    # -- test-facing state ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None and not self._port:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded wire requests (control-API calls are not recorded)."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and queued scripts."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()

    def script(self, directives: str, times: int = 1) -> None:
        """Apply ``directives`` to the next ``times`` wire requests (queued after earlier scripts)."""
        parse_directives(directives)  # raise DirectiveError now, not on the victim request
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._scripts.append([directives, times])

    def _next_script(self) -> str:
        with self._lock:
            if not self._scripts:
                return ""
            entry = self._scripts[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self._scripts.popleft()
            return str(entry[0])

    # -- connection handling -------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = Connection(reader, writer, next(self._connection_numbers))
        try:
            await self._serve(conn)
        except HttpError as exc:
            body = orjson.dumps({"error": {"message": str(exc), "type": "invalid_request_error"}})
            await conn.send(
                response_head(
                    exc.status, [("content-type", "application/json")], length=len(body), close=True
                )
                + body
            )
        except OSError:
            _log.debug("fake upstream: client connection lost")
        except asyncio.CancelledError:
            # Only stop() cancels connection tasks.  Finishing normally matters: Python 3.11's
            # start_server callback calls task.exception(), which raises for a cancelled task.
            _log.debug("fake upstream: connection cancelled by stop()")
        except Exception:
            _log.exception("fake upstream: unexpected error while serving a connection")
        finally:
            await conn.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, conn: Connection) -> None:
        while True:
            request = await conn.read_request()
            if request is None:
                return
            close = not request.keep_alive
            if not await self._dispatch(conn, request, close=close) or close:
                return

    async def _dispatch(self, conn: Connection, request: Request, *, close: bool) -> bool:
        if request.path.startswith("/_fake/"):
            return await conn.send(self._control(request, close=close))
        if self._log is not None:
            self._log(f"{request.method} {request.path}")
        found = fake_wires.route(request.method, request.path)
        body = _parse_json(request.body)
        model = found.model if found is not None and found.model is not None else _model_of(body)
        sources = (self._next_script(), directives_in_model(model), directives_in_body(request.body))
        record = self._record(request, conn.number, body, found, ",".join(s for s in sources if s))
        try:
            faults = build_faults(*sources)
        except DirectiveError as exc:
            return await self._send_error(conn, found, 400, str(exc), close=close)
        if found is None:
            return await self._send_error(conn, None, 404, f"no fake route for {request.path}", close=close)
        if body is None and faults is NO_FAULTS and request.method == "POST":
            return await self._send_error(conn, found, 400, "request body is not a JSON object", close=close)
        call = Call(
            wire=found.wire,
            op=found.op,
            model=model,
            body=body or {},
            raw=request.body,
            headers=request.headers,
            query=request.query,
            stream=found.stream if found.stream is not None else bool((body or {}).get("stream")),
            faults=faults,
        )
        completed = await respond(conn, call, self._builder(found, request), close=close)
        await conn.stop_watch()
        if record is not None:
            record.completed = completed
            record.client_closed_at = conn.closed_at
        return completed

    def _builder(self, found: fake_wires.Route, request: Request) -> Builder:
        if found.op == "models":
            reply = fake_wires.models_list(found.wire, self.models, request.headers)
            return lambda _call: reply
        return _BUILDERS[(found.wire, found.op)]

    async def _send_error(
        self, conn: Connection, found: fake_wires.Route | None, status: int, message: str, *, close: bool
    ) -> bool:
        reply = error_reply(found.wire if found is not None else "openai", status, message)
        return await conn.send(_encode(reply, close=close))

    def _record(
        self,
        request: Request,
        connection: int,
        body: dict[str, Any] | None,
        found: fake_wires.Route | None,
        directives: str,
    ) -> RecordedRequest | None:
        if not self._record_enabled:
            return None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            json=body,
            received_at=request.received_at,
            wire=found.wire if found is not None else None,
            directives=directives,
            connection=connection,
        )
        with self._lock:
            self._requests.append(record)
        return record

    # -- control API ---------------------------------------------------------------------------
    def _control(self, request: Request, *, close: bool) -> bytes:
        action = (request.method, request.path.rstrip("/"))
        if action == ("GET", "/_fake/health"):
            reply = json_reply({"status": "ok", "requests": len(self._requests)})
        elif action == ("GET", "/_fake/requests"):
            reply = json_reply([r.to_json() for r in self._recorded_since(request.query)])
        elif action == ("POST", "/_fake/reset"):
            self.reset()
            reply = json_reply({"status": "ok"})
        elif action == ("POST", "/_fake/script"):
            reply = self._control_script(request.body)
        else:
            reply = error_reply("openai", 404, f"unknown control endpoint {request.method} {request.path}")
        return _encode(reply, close=close)

    def _recorded_since(self, query: str) -> list[RecordedRequest]:
        since = parse_qs(query).get("since", ["0"])[0]
        return self.requests[int(since) if since.isdigit() else 0 :]

    def _control_script(self, raw: bytes) -> Reply:
        body = _parse_json(raw) or {}
        directives, times = body.get("directives"), body.get("times", 1)
        if not isinstance(directives, str) or not isinstance(times, int) or isinstance(times, bool):
            return error_reply("openai", 400, 'expected {"directives": str, "times": int}')
        try:
            self.script(directives, times)
        except ValueError as exc:  # DirectiveError is a ValueError
            return error_reply("openai", 400, str(exc))
        return json_reply({"status": "ok", "directives": directives, "times": times})


def _parse_json(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _model_of(body: dict[str, Any] | None) -> str:
    model = body.get("model") if body is not None else None
    return model if isinstance(model, str) else "unknown"


def _encode(reply: Reply, *, close: bool) -> bytes:
    headers = [("content-type", reply.content_type), *reply.headers]
    return response_head(reply.status, headers, length=len(reply.body), close=close) + reply.body


class _ThreadRunner:
    """Owns the daemon thread and event loop behind `FakeUpstream.in_thread`."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(_THREAD_TIMEOUT):
            raise TimeoutError("fake upstream thread did not start")
        self._raise_error()

    def stop(self) -> None:
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(event.set)
        self._thread.join(_THREAD_TIMEOUT)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError("fake upstream thread failed") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # handed to the test thread by start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        await self.fake.start()
        try:
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await self.fake.stop()


# -- command line ---------------------------------------------------------------------------------
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.testing.fake_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="print only the listening line")
    parser.add_argument("--no-record", action="store_true", help="do not record requests (benchmarks)")
    return parser.parse_args(argv)


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    log = None if args.quiet else _log_to_stderr
    fake = FakeUpstream(host=args.host, port=args.port, record=not args.no_record, log=log)
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream listening on {fake.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_serve_until_signalled(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
