"""What a maximum-size body costs Sluice: CPU to parse and check it, and memory while it is in flight.

    .venv/bin/python scripts/parse_cost.py cpu [--repeat 3] [--size 4194304]
    .venv/bin/python scripts/parse_cost.py memory [--shape content-parts] [--model gpt-4o-mini]
                                                 [--concurrent 4] [--hold-ms 6000] [--budget N]

cpu: in this process, for each shape of `tests/gateway/body_shapes.py`, the CPU time (the
process's, `time.process_time`) of what a chat request does with its body on the event loop:
`parse_body` and `parse_chat` (or the 400 they raise), the upstream call's JSON (`orjson.dumps`
of the fields passed on) and freeing it all; the median of `--repeat` runs. Also the memory the
parsed body holds (tracemalloc) beside Sluice's estimate of it (`JsonBody.memory_estimate`).

memory: a real `sluice demo` in front of the fake upstream (both their own processes, 127.0.0.1
only, scripts/demo_stack.py). `--concurrent` copies of one shape, each told to make the fake
upstream wait `--hold-ms` before answering, are sent at once; Sluice's RSS (/proc, its process
tree) is sampled every 20 ms from before the burst until every answer is in. Reports the idle RSS
(after one request of the same kind, so code loaded on first use is in), the peak, the growth per
admitted request, and how many were refused with 429 by `SLUICE_MAX_INFLIGHT_BODY_BYTES`.

Prints one JSON document. Bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import procs
from gateway.errors import SluiceError
from gateway.protocol import parse_body, parse_chat
from scripts.demo_stack import KEY, fake_upstream_process, sluice_demo
from scripts.load_host import machine
from scripts.load_wire import Connection
from tests.gateway.body_shapes import MAX_BODY, SHAPES, shape


# -- cpu --------------------------------------------------------------------------------------------
def handle(raw: bytes) -> tuple[int, int]:
    """What the chat route does with a body before its upstream call: (status, estimate)."""
    try:
        body = parse_body(raw)
        estimate = body.memory_estimate(len(raw))
        parsed = parse_chat(body, policy_header=None)
    except SluiceError as exc:
        return exc.status, 0
    del body
    payload = orjson.dumps({**parsed.fields, "model": "gpt-4o-mini"})
    del payload, parsed
    return 200, estimate


def cpu(repeat: int, size: int) -> list[dict[str, Any]]:
    rows = []
    for each in SHAPES:
        raw = each.build(size)
        times = []
        for _ in range(repeat):
            gc.collect()
            started = time.process_time()
            status, estimate = handle(raw)
            times.append(time.process_time() - started)
        held = None
        if status == 200:
            tracemalloc.start()
            value = orjson.loads(raw)
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            del value
        rows.append(
            {
                "shape": each.name,
                "bytes": len(raw),
                "status": status,
                "cpu_ms_median": round(statistics.median(times) * 1000, 1),
                "cpu_ms_max": round(max(times) * 1000, 1),
                "parsed_mb": None if held is None else round(held / 2**20, 1),
                "estimate_mb": round(estimate / 2**20, 1) if estimate else None,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


# -- memory ------------------------------------------------------------------------------------------
def held_body(name: str, model: str, hold_ms: int, size: int) -> bytes:
    """The shape, told to make the fake upstream wait (a marker in its first text), for `model`."""
    raw = shape(name).build(size - 40)
    marker = f"[[fake:delay_ms={hold_ms}]]".encode()
    if b'"text":"a"' in raw:
        raw = raw.replace(b'"text":"a"', b'"text":"' + marker + b'"', 1)
    else:
        raw = raw.replace(b'"content":"', b'"content":"' + marker, 1)
    return raw.replace(b'"gpt-4o-mini"', orjson.dumps(model), 1)


def request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def burst(port: int, raw: bytes, count: int) -> list[int]:
    connections = [await Connection.open(port) for _ in range(count)]
    try:
        sent = [c.send(raw) for c in connections]
        replies = await asyncio.gather(*(c.receive(t) for c, t in zip(connections, sent, strict=True)))
        return [r.status for r in replies]
    finally:
        for c in connections:
            await c.close()


def sample_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(procs.rss_mb(pid))
        time.sleep(0.02)


def memory(name: str, model: str, concurrent: int, hold_ms: int, budget: int | None) -> dict[str, Any]:
    env = {} if budget is None else {"SLUICE_MAX_INFLIGHT_BODY_BYTES": str(budget)}
    with tempfile.TemporaryDirectory() as tmp, fake_upstream_process(Path(tmp)) as upstream:  # noqa: SIM117
        with sluice_demo(upstream.url, workdir=Path(tmp), env=env) as sluice:
            port = int(sluice.url.rsplit(":", 1)[1])
            warm = request(port, held_body(name, model, 1, MAX_BODY))
            first = asyncio.run(burst(port, warm, 1))
            procs.wait_idle(sluice.proc.pid, longest=10)
            idle = procs.rss_mb(sluice.proc.pid)
            raw = request(port, held_body(name, model, hold_ms, MAX_BODY))
            samples: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(sluice.proc.pid, stop, samples))
            sampler.start()
            try:
                statuses = asyncio.run(burst(port, raw, concurrent))
            finally:
                stop.set()
                sampler.join()
            after = procs.rss_mb(sluice.proc.pid)
    admitted = statuses.count(200)
    peak = max(samples)
    return {
        "shape": name,
        "model": model,
        "body_bytes": len(raw),
        "concurrent": concurrent,
        "budget": budget,
        "warm_up_status": first,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
        "growth_per_admitted_mb": round((peak - idle) / admitted, 1) if admitted else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cpu")
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--size", type=int, default=MAX_BODY)
    m = sub.add_parser("memory")
    m.add_argument("--shape", default="content-parts")
    m.add_argument("--model", default="gpt-4o-mini")
    m.add_argument("--concurrent", type=int, default=4)
    m.add_argument("--hold-ms", type=int, default=6000)
    m.add_argument("--budget", type=int, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    if args.mode == "cpu":
        result["shapes"] = cpu(args.repeat, args.size)
    else:
        result["memory"] = memory(args.shape, args.model, args.concurrent, args.hold_ms, args.budget)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
