"""CPU per call and per stream chunk of the litellm adapter alone, on either translation path.

What belongs here: a small measurement of `LiteLLMAdapter` without the HTTP edge, the pipeline or
the load generator: the fake upstream in its own process, then, in this process, sequential streams
of 20 and 1,000 chunks through `chat_stream`, timed by this process's CPU time (a shared machine
moves wall time far more than CPU time). Prints the median CPU per stream and the CPU per extra
chunk. A measurement, not a test.

    .venv/bin/python bench/adapter_cost.py --model anthropic/claude-sonnet-4-5 --path transform
    .venv/bin/python bench/adapter_cost.py --model gemini/gemini-2.5-flash --path acompletion
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.upstream.base import UpstreamTarget
from gateway.upstream.litellm_adapter import LiteLLMAdapter

SHORT, LONG = 20, 1000


async def measure(url: str, model: str, transform: bool, rounds: int) -> dict[int, float]:
    adapter = LiteLLMAdapter(transform=transform)
    base = f"{url}/v1" if model.startswith("mistral/") else url
    name = model.partition("/")[2]
    target = UpstreamTarget(model=model, upstream_model=name, api_base=base, api_key="sk-x")
    await adapter.chat(target, {"messages": [{"role": "user", "content": "warm up"}]})  # loads litellm
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    medians: dict[int, float] = {}
    async with httpx.AsyncClient() as control:
        for chunks in (SHORT, LONG):
            spent: list[float] = []
            for _ in range(rounds):
                await control.post(f"{url}/_fake/script", json={"directives": f"chunks={chunks}", "times": 1})
                start = time.process_time()
                stream = await adapter.chat_stream(target, body)
                async for _ in stream:
                    pass
                spent.append(time.process_time() - start)
            medians[chunks] = statistics.median(spent)
    await adapter.aclose()
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="anthropic/claude-sonnet-4-5")
    parser.add_argument("--path", choices=("transform", "acompletion"), default="transform")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-m", "sluice_fakes.fake_upstream", "--port", "0", "--no-record", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip().rpartition(" ")[2]
        got = asyncio.run(measure(url, args.model, args.path == "transform", args.rounds))
    finally:
        fake.terminate()
        fake.wait(10)
    per_chunk = (got[LONG] - got[SHORT]) / (LONG - SHORT) * 1e6
    print(
        f"{args.model} via {args.path}: CPU per stream {got[SHORT] * 1e3:.2f} ms ({SHORT} chunks), "
        f"{got[LONG] * 1e3:.2f} ms ({LONG} chunks); per extra chunk {per_chunk:.1f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
