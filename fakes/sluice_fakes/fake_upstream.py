"""A fake LLM upstream server (OpenAI Chat and Responses, Anthropic, Gemini) with fault injection.

What belongs here: the `FakeUpstream` server object (start/stop, ``async with``, a thread runner),
request recording, per-request fault selection (control-API script < model name < body marker),
the ``/_fake/*`` control API and the command-line entry point::

    python -m sluice_fakes.fake_upstream --host 127.0.0.1 --port 0 [--quiet] [--no-record]

Wire formats live in `fake_wires` (OpenAI's Responses API in `fake_responses`), fault execution
in `fake_faults`, directive parsing in `fake_directives` and the HTTP/1.1 plumbing in `fake_http`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from sluice_fakes import fake_responses, fake_wires
from sluice_fakes.fake_directives import (
    NO_FAULTS,
    DirectiveError,
    build_faults,
    directives_in_body,
    directives_in_model,
)
from sluice_fakes.fake_faults import Builder, respond
from sluice_fakes.fake_http import Connection, HttpError, Request, response_head
from sluice_fakes.fake_reply import Call, Reply, error_reply, json_reply
from sluice_fakes.fake_state import Journal, RecordedRequest
from sluice_fakes.fake_thread import ThreadRunner

__all__ = ["DEFAULT_MODELS", "FakeUpstream", "RecordedRequest", "main"]

DEFAULT_MODELS: Final = (
    "gpt-4o-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "gemini-2.5-flash",
    "meta-llama/Llama-3.1-8B-Instruct",
)
_log = logging.getLogger(__name__)

_BUILDERS: Final[dict[tuple[str, str], Builder]] = {
    ("openai", "chat"): fake_wires.openai_chat,
    ("openai", "responses"): fake_responses.responses,
    ("openai", "embed"): fake_wires.openai_embeddings,
    ("anthropic", "chat"): fake_wires.anthropic_messages,
    ("anthropic", "count_tokens"): fake_wires.anthropic_count_tokens,
    ("gemini", "chat"): fake_wires.gemini_generate,
    ("gemini", "embed"): fake_wires.gemini_embed,
    ("gemini", "batch_embed"): fake_wires.gemini_embed,
    ("gemini", "count_tokens"): fake_wires.gemini_embed,
}


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
        self.models = tuple(models)
        self._log = log
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._journal = Journal(record=record)
        self._connection_numbers = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FakeUpstream already started")
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection (streams in flight included)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await asyncio.sleep(0)  # let connections accepted just before close() register
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
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
        runner = ThreadRunner(cls(host=host, port=port, record=record, models=models))
        runner.start()
        try:
            yield runner.service
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
        return self._journal.snapshot()

    def reset(self) -> None:
        """Forget recorded requests and queued scripts."""
        self._journal.reset()

    def script(self, directives: str, times: int = 1) -> None:
        """Apply ``directives`` to the next ``times`` wire requests (queued after earlier scripts)."""
        self._journal.script(directives, times)

    # -- connection handling -------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Own the connection task (rather than letting start_server make it) so stop() sees it."""
        conn = Connection(reader, writer, next(self._connection_numbers))
        task = asyncio.get_running_loop().create_task(self._handle(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: Connection) -> None:
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
        except Exception:
            _log.exception("fake upstream: unexpected error while serving a connection")
        finally:
            await conn.close()

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
        sources = (self._journal.next_script(), directives_in_model(model), directives_in_body(request.body))
        record = self._record(request, conn.number, body, found, ",".join(s for s in sources if s))
        completed = await self._answer(conn, request, found, body, model, sources, close=close)
        await conn.stop_watch()
        if record is not None:
            record.completed = completed
            record.client_closed_at = conn.closed_at
        return completed

    async def _answer(
        self,
        conn: Connection,
        request: Request,
        found: fake_wires.Route | None,
        body: dict[str, Any] | None,
        model: str,
        sources: tuple[str, ...],
        *,
        close: bool,
    ) -> bool:
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
        return await respond(conn, call, self._builder(found, request), close=close)

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
        if not self._journal.record_enabled:
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
        self._journal.add(record)
        return record

    # -- control API ---------------------------------------------------------------------------
    def _control(self, request: Request, *, close: bool) -> bytes:
        action = (request.method, request.path.rstrip("/"))
        if action == ("GET", "/_fake/health"):
            reply = json_reply({"status": "ok", "requests": self._journal.count()})
        elif action == ("GET", "/_fake/requests"):
            reply = Reply(body=_dumps([r.to_json() for r in self._recorded_since(request.query)]))
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
        return self._journal.snapshot(int(since) if since.isdigit() else 0)

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
    """The body as a JSON object, else None; stdlib json is the fallback for NaN/Infinity bodies.

    orjson turns integers beyond 64 bits into floats: assert on ``RecordedRequest.body`` for exact bytes.
    """
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits, from the stdlib-json fallback
        return json.dumps(value, default=str).encode()


def _model_of(body: dict[str, Any] | None) -> str:
    model = body.get("model") if body is not None else None
    return model if isinstance(model, str) else "unknown"


def _encode(reply: Reply, *, close: bool) -> bytes:
    headers = [("content-type", reply.content_type), *reply.headers]
    return response_head(reply.status, headers, length=len(reply.body), close=close) + reply.body


# -- command line ---------------------------------------------------------------------------------
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sluice_fakes.fake_upstream", description=__doc__)
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
