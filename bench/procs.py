"""Processes of the benchmark: the fake upstream, Sluice and LiteLLM Proxy, each in its own process.

What belongs here: starting a server in its own session (so it and its workers stop together),
pinning it to cores with ``taskset``, waiting for its health endpoint (the start-up time), reading
resident memory and CPU time of its whole process tree from /proc, and stopping it. Only
processes started here are ever signalled, by their own process-group id. Every server listens
on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class StartError(RuntimeError):
    """A server did not come up; the message names its log file."""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    started_at: float
    ready_after: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pinned(cpus: str | None, command: Sequence[str]) -> list[str]:
    """`command` under `taskset -c cpus` when pinning was asked for and taskset exists."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *command]
    return list(command)


def spawn(
    name: str,
    command: Sequence[str],
    *,
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path | None = None,
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err, open(stdout or log, "ab") as out:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of `GET path` on 127.0.0.1:port, or None when nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: {HOST}:{port}\r\nconnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def wait_ready(server: Server, path: str, timeout: float) -> float:
    """Poll `path` every 20 ms until it answers 200; return seconds since the process was started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise StartError(f"{server.name} exited with {server.proc.returncode}; see {server.log}")
        if http_status(server.port, path, timeout=0.5) == 200:
            server.ready_after = time.monotonic() - server.started_at
            return server.ready_after
        time.sleep(0.02)
    raise StartError(f"{server.name} was not ready after {timeout:.0f} s; see {server.log}")


def start_upstream(python: str, *, cpus: str | None, workdir: Path, env: Mapping[str, str]) -> Server:
    """The fake upstream (sluice_fakes.fake_upstream) on a free port, recording nothing."""
    out = workdir / "upstream.out"
    out.unlink(missing_ok=True)
    command = pinned(
        cpus,
        [
            python,
            "-m",
            "sluice_fakes.fake_upstream",
            "--host",
            HOST,
            "--port",
            "0",
            "--no-record",
            "--quiet",
        ],
    )
    started = time.monotonic()
    proc = spawn("upstream", command, log=workdir / "upstream.log", cwd=workdir, env=env, stdout=out)
    deadline = started + 30
    while time.monotonic() < deadline:
        text = out.read_text() if out.exists() else ""
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        if match:
            server = Server("upstream", proc, match.group(1), workdir / "upstream.log", started)
            server.ready_after = time.monotonic() - started
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop(Server("upstream", proc, "", workdir / "upstream.log", started))
    raise StartError(f"the fake upstream did not start; see {workdir / 'upstream.log'}")


def start_server(
    name: str, command: Sequence[str], *, port: int, workdir: Path, env: Mapping[str, str]
) -> Server:
    log = workdir / f"{name}.log"
    started = time.monotonic()
    proc = spawn(name, command, log=log, cwd=workdir, env=env)
    return Server(name, proc, f"http://{HOST}:{port}", log, started)


def stop(server: Server, grace: float = 20.0) -> None:
    """SIGTERM to the server's own process group, then SIGKILL after `grace` seconds."""
    proc = server.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree in MB (shared pages count once per process, like `ps`)."""
    total_kb = 0
    for member in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total_kb += int((Path("/proc") / str(member) / "statm").read_text().split()[1]) * PAGE_KB
    return round(total_kb / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree, in seconds."""
    ticks = 0
    for member in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (Path("/proc") / str(member) / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def wait_idle(pid: int, *, busy: float = 0.05, longest: float = 15.0) -> float:
    """Wait until the process tree uses under `busy` of a CPU over 0.5 s; return seconds waited.

    Load generators abandon requests in flight when a cell ends; a gateway may go on working on
    them for a while, and must not do so on the core the next cell measures.
    """
    started = time.monotonic()
    while time.monotonic() - started < longest:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < busy * 0.5:
            break
    return time.monotonic() - started


def core_busy_seconds(cpus: str | None) -> float | None:
    """Busy (non-idle) time of the given CPUs ("1" or "0,1"), all processes, from /proc/stat."""
    if not cpus:
        return None
    wanted = {f"cpu{c.strip()}" for c in cpus.split(",")}
    busy = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name in wanted:
                ticks = [int(f) for f in fields]
                busy += sum(ticks[:8]) - ticks[3] - ticks[4]  # minus idle and iowait
    return busy / CLK_TCK


def clean_env(drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """The current environment without virtualenv hints and without the given variable prefixes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DATABASE_URL")
        and not any(k.startswith(p) for p in drop_prefixes)
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env
