"""The benchmark's scenarios and the request each target gets in each of them.

What belongs here: which scenarios exist (non-stream and stream on the OpenAI-wire pass-through,
the Anthropic-wire translation path, the Responses API passed through, the Messages API passed
through to an Anthropic-wire upstream; c=1 latency, c=64 throughput; 1,000-chunk streams at c=1
for the added cost per chunk, and paced streams, one event per network read), and, for each target
(the fake upstream itself, Sluice, LiteLLM Proxy), the URL, body, headers and the marker a
complete answer contains. Nothing here starts processes or sends traffic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

DIRECT, SLUICE, LITELLM = "direct", "sluice", "litellm"
TARGET_NAMES = {DIRECT: "direct", SLUICE: "Sluice", LITELLM: "LiteLLM Proxy"}
SLUICE_KEY = "sk-sluice-bench"  # its sha256 is in bench/sluice-bench.yaml
LITELLM_KEY = "sk-litellm-bench"  # general_settings.master_key in bench/litellm-bench.yaml
PROMPT = "Say hello in one short sentence."
MAX_TOKENS = 64

Wire = Literal["openai", "anthropic"]
Kind = Literal["latency", "throughput"]
# The endpoint clients call: /v1/chat/completions, /v1/responses, or Anthropic's /v1/messages.
Api = Literal["chat", "responses", "messages"]


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kind: Kind
    wire: Wire  # the upstream wire: openai = pass-through, anthropic = litellm translation
    stream: bool
    concurrency: int
    api: Api = "chat"
    chunks: int = 20  # stream content frames the fake upstream sends (its `chunks=` directive)
    chunk_delay_ms: int = 0  # the fake's pause between frames (`chunk_delay_ms=`): one event per read

    @property
    def metric(self) -> str:
        """For latency scenarios: `first` (time to first SSE data line) or `total` (a long stream's
        whole duration: its added cost per chunk)."""
        return "first" if self.stream and self.chunks == 20 else "total"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("ns_c1", "non-stream, c=1", "latency", "openai", False, 1),
    Scenario("ns_c64", "non-stream, c=64", "throughput", "openai", False, 64),
    Scenario("st_c1", "stream (20 chunks), c=1, time to first token", "latency", "openai", True, 1),
    Scenario("st_c64", "stream (20 chunks), c=64", "throughput", "openai", True, 64),
    Scenario("tr_c1", "translation (Anthropic wire), non-stream, c=1", "latency", "anthropic", False, 1),
    Scenario(
        "tr_c64", "translation (Anthropic wire), non-stream, c=64", "throughput", "anthropic", False, 64
    ),
    Scenario("trst_c64", "translation (Anthropic wire), stream, c=64", "throughput", "anthropic", True, 64),
    Scenario("rs_c1", "Responses API, non-stream, c=1", "latency", "openai", False, 1, "responses"),
    Scenario("rs_c64", "Responses API, non-stream, c=64", "throughput", "openai", False, 64, "responses"),
    Scenario(
        "rsst_c1",
        "Responses API, stream, c=1, time to first event",
        "latency",
        "openai",
        True,
        1,
        "responses",
    ),
    Scenario("rsst_c64", "Responses API, stream, c=64", "throughput", "openai", True, 64, "responses"),
    Scenario(
        "msg_c1", "Messages pass-through, non-stream, c=1", "latency", "anthropic", False, 1, "messages"
    ),
    Scenario(
        "msg_c64", "Messages pass-through, non-stream, c=64", "throughput", "anthropic", False, 64, "messages"
    ),
    Scenario(
        "msgst_c1",
        "Messages pass-through, stream, c=1, time to first token",
        "latency",
        "anthropic",
        True,
        1,
        "messages",
    ),
    Scenario(
        "msgst_c64", "Messages pass-through, stream, c=64", "throughput", "anthropic", True, 64, "messages"
    ),
    Scenario(
        "long_c1", "stream (1,000 chunks), c=1, whole stream", "latency", "openai", True, 1, chunks=1000
    ),
    Scenario(
        "trlong_c1",
        "translation (Anthropic wire), stream (1,000 chunks), c=1, whole stream",
        "latency",
        "anthropic",
        True,
        1,
        chunks=1000,
    ),
    Scenario(
        "paced_c1",
        "paced stream (200 chunks, 1 ms apart), c=1, whole stream",
        "latency",
        "openai",
        True,
        1,
        chunks=200,
        chunk_delay_ms=1,
    ),
    Scenario(
        "trpaced_c1",
        "translation (Anthropic wire), paced stream (200 chunks, 1 ms apart), c=1, whole stream",
        "latency",
        "anthropic",
        True,
        1,
        chunks=200,
        chunk_delay_ms=1,
    ),
)
LONG_CHUNKS = 1000
BY_ID = {s.id: s for s in SCENARIOS}


@dataclass(frozen=True)
class RequestSpec:
    url: str
    body: str
    headers: tuple[str, ...]
    marker: str  # a complete, successful answer contains it (checked by wrk's Lua script)
    stream: bool


def request_for(target: str, base_url: str, scenario: Scenario) -> RequestSpec:
    """What `target` (listening at `base_url`) is sent in `scenario`."""
    headers: tuple[str, ...]
    # A body marker reaches the fake upstream through every gateway (it is part of the prompt).
    directives = marker_of(scenario)
    prompt = f"{PROMPT} {directives}" if directives else PROMPT
    messages = [{"role": "user", "content": prompt}]
    if scenario.api == "responses":
        return _responses_request(target, base_url, scenario)
    if scenario.api == "messages":  # `POST /v1/messages` on every target, as the anthropic SDK sends it
        model = "claude-sonnet-4-5" if target == DIRECT else "bench-anthropic"
        key = {DIRECT: "sk-fake-upstream", SLUICE: SLUICE_KEY, LITELLM: LITELLM_KEY}[target]
        body = {"model": model, "max_tokens": MAX_TOKENS, "messages": messages}
        headers = (f"x-api-key: {key}", "anthropic-version: 2023-06-01")
        url = f"{base_url}/v1/messages"
        marker = "message_stop" if scenario.stream else '"content"'
    elif target == DIRECT and scenario.wire == "anthropic":
        body = {"model": "claude-sonnet-4-5", "max_tokens": MAX_TOKENS, "messages": messages}
        headers = ("x-api-key: sk-fake-upstream", "anthropic-version: 2023-06-01")
        url = f"{base_url}/v1/messages"
        marker = "message_stop" if scenario.stream else '"content"'
    else:
        if target == DIRECT:
            model, headers = "gpt-4o-mini", ("authorization: Bearer sk-fake-upstream",)
        else:
            model = "bench-openai" if scenario.wire == "openai" else "bench-anthropic"
            key = SLUICE_KEY if target == SLUICE else LITELLM_KEY
            headers = (f"authorization: Bearer {key}",)
        body = {"model": model, "max_tokens": MAX_TOKENS, "messages": messages}
        url = f"{base_url}/v1/chat/completions"
        marker = "[DONE]" if scenario.stream else '"choices"'
    if scenario.stream:
        body["stream"] = True
    return RequestSpec(url, json.dumps(body), headers, marker, scenario.stream)


def marker_of(scenario: Scenario) -> str:
    """The body marker with the fake's directives for `scenario` (none for the default stream)."""
    directives = [f"chunks={scenario.chunks}"] if scenario.chunks != 20 else []
    if scenario.chunk_delay_ms:
        directives.append(f"chunk_delay_ms={scenario.chunk_delay_ms}")
    return f"[[fake:{','.join(directives)}]]" if directives else ""


def _responses_request(target: str, base_url: str, scenario: Scenario) -> RequestSpec:
    """`POST /v1/responses` to an OpenAI-wire upstream: the fake's own, or a gateway's (pass-through)."""
    if target == DIRECT:
        model, headers = "gpt-4o-mini", ("authorization: Bearer sk-fake-upstream",)
    else:
        key = SLUICE_KEY if target == SLUICE else LITELLM_KEY
        model, headers = "bench-openai", (f"authorization: Bearer {key}",)
    body: dict[str, object] = {"model": model, "max_output_tokens": MAX_TOKENS, "input": PROMPT}
    if scenario.stream:
        body["stream"] = True
    marker = "response.completed" if scenario.stream else '"output"'
    return RequestSpec(f"{base_url}/v1/responses", json.dumps(body), headers, marker, scenario.stream)
