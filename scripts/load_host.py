"""The machine side of scripts/load.py: the machine, its load, and Sluice's process seen from outside.

What belongs here: `machine()` (CPUs, model, Python, date); `LoadAverage` (the 1-minute load
average sampled during a run: other work on the machine makes every figure an upper bound);
`HealthzProbe` (timing `GET /healthz` from a process of its own, so the load generator's event
loop and interpreter lock add nothing); `open_fds` (Sluice's descriptors by kind, from /proc);
`Scheduling` (how long Sluice's event-loop thread ran, and how long it was ready to run but
waited for a CPU: on a busy machine, that wait shows up as event-loop lag).
Standard library only, plus `bench.loadgen`'s blocking connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import platform
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from bench.loadgen import BlockingConnection, ResponseError, Target
from scripts.demo_stack import HOST


# -- GET /healthz from another process ------------------------------------------------------------
def _probe(port: int, interval: float, stop: EventType, out: Any) -> None:
    raw = f"GET /healthz HTTP/1.1\r\nhost: {HOST}:{port}\r\n\r\n".encode()
    target = Target(HOST, port, "/healthz", raw, False)
    latencies: list[float] = []
    errors = 0
    conn: BlockingConnection | None = None
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = conn or BlockingConnection(target, timeout=10)
            total, _, keep = conn.request()
            latencies.append(total * 1000)
            if not keep:
                conn.close()
                conn = None
        except (OSError, ResponseError, ValueError):
            errors += 1
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    if conn is not None:
        conn.close()
    out.send((latencies, errors))


class HealthzProbe:
    """`GET /healthz` every `interval` s on one keep-alive connection, from its own process (so the
    load generator's event loop and interpreter lock add nothing): the event loop plus HTTP."""

    def __init__(self, port: int, interval: float = 0.05) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._receive, send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_probe, args=(port, interval, self._stop, send), daemon=True)

    def __enter__(self) -> HealthzProbe:
        self._process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._process.join(30)

    def result(self) -> tuple[list[float], int]:
        """Latencies (ms) and failures; call after the `with` block."""
        if self._receive.poll(5):
            latencies, errors = self._receive.recv()
            return list(latencies), int(errors)
        return [], -1


# -- the machine ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115 -- read whole at once
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
    }


class LoadAverage:
    """The machine's 1-minute load average, sampled every `every` s while a run goes on."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        one, five, fifteen = os.getloadavg()
        values = self.samples or [one]
        return {
            "1min_min": round(min(values), 2),
            "1min_mean": round(sum(values) / len(values), 2),
            "1min_max": round(max(values), 2),
            "at_end_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)],
        }


# -- Sluice's process -----------------------------------------------------------------------------
def _tcp_ports(pid: int) -> dict[str, tuple[int, int]]:
    """Socket inode -> (local port, remote port), for IPv4 and IPv6 TCP sockets."""
    ports: dict[str, tuple[int, int]] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                ports[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return ports


def open_fds(pid: int, *, own_port: int, upstream_port: int) -> dict[str, int]:
    """Sluice's open descriptors by kind: client connections (and the listening socket), connections
    to the upstream (its keep-alive pools), other sockets, and everything else."""
    ports = _tcp_ports(pid)
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        if not link.startswith("socket:["):
            kinds["other"] += 1
            continue
        local, remote = ports.get(link[8:-1], (0, 0))
        if local == own_port:
            kinds["clients"] += 1
        elif remote == upstream_port:
            kinds["upstream"] += 1
        else:
            kinds["other_sockets"] += 1
    return {"total": sum(kinds.values()), **dict(sorted(kinds.items()))}


class Scheduling:
    """CPU time and run-queue wait of a process's main thread (Sluice's event loop), from
    /proc/<pid>/schedstat, between `start()` and `report()`."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/schedstat")
        self.started = self._read()

    def _read(self) -> tuple[float, float, float]:
        """(wall clock, seconds on a CPU, seconds waiting for one)."""
        try:
            on_cpu, waiting = self.path.read_text().split()[:2]
        except (OSError, ValueError):
            return time.monotonic(), 0.0, 0.0
        return time.monotonic(), int(on_cpu) / 1e9, int(waiting) / 1e9

    def start(self) -> None:
        self.started = self._read()

    def report(self) -> dict[str, float]:
        now = self._read()
        wall, on_cpu, waiting = (b - a for a, b in zip(self.started, now, strict=True))
        return {
            "seconds": round(wall, 1),
            "on_cpu_share": round(on_cpu / wall, 3) if wall else 0.0,
            "waiting_for_cpu_share": round(waiting / wall, 3) if wall else 0.0,
        }
