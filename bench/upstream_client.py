"""The pass-through's upstream client alone: `OpenAIWireAdapter` calls against the fake upstream, in
one process, without the gateway around them (bench/PROFILE.md, "The upstream client's read side").

    .venv/bin/python -m bench.upstream_client ns 3000            # CPU per call (thread time)
    .venv/bin/python -m bench.upstream_client st 2000 --profile  # and cProfile's table

`ns` is a non-stream chat call read whole, `st` a 20-chunk stream relayed to its end. CPU per call
moves with the machine's load; cProfile's count of function calls does not.
(Run as a module: as a script, `bench/profile.py` would shadow the standard library's `profile`.)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import subprocess
import sys
import time

import uvloop

from gateway.upstream.base import UpstreamTarget
from gateway.upstream.openai_wire import OpenAIWireAdapter

WARM_UP = 200
BODY = {"messages": [{"role": "user", "content": "hello there"}]}


async def measure(url: str, mode: str, calls: int, profile: bool) -> None:
    adapter = OpenAIWireAdapter()
    target = UpstreamTarget("openai/gpt-4o-mini", "gpt-4o-mini", url + "/v1", api_key="sk-bench")

    async def one() -> None:
        if mode == "ns":
            await adapter.chat(target, BODY)
            return
        stream = await adapter.chat_stream(target, {**BODY, "stream": True})
        async for _ in stream:
            pass

    for _ in range(WARM_UP):
        await one()
    profiler = cProfile.Profile(time.thread_time) if profile else None
    if profiler is not None:
        profiler.enable()
    started = time.thread_time()
    for _ in range(calls):
        await one()
    spent = time.thread_time() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(f"{mode}: {spent / calls * 1e6:.1f} µs CPU per call{' (under cProfile)' if profile else ''}")
    await adapter.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("ns", "st"))
    parser.add_argument("calls", type=int)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    command = [sys.executable, "-m", "sluice_fakes.fake_upstream", "--port", "0", "--no-record", "--quiet"]
    upstream = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None
        found = re.search(r"(http://\S+)", upstream.stdout.readline())
        if found is None:
            raise SystemExit("the fake upstream did not say where it listens")
        uvloop.run(measure(found.group(1), options.mode, options.calls, options.profile))
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
