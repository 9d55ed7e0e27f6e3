"""Property-based conformance with the published specifications: spec-valid requests, checked answers.

What belongs here: the targets (an API's request schema, its path, the demo models to use, the
response schemas its answers must satisfy), the documented refusals (spec-valid requests Sluice
answers with a 4xx on purpose, each with its reason), and `check`, which sends one request and names
what is wrong with the answer: a 5xx; a 4xx that is not a documented refusal; a 200 whose body (or
stream chunk) the specification's response schema rejects. Used by `tests/spec/test_spec_properties.py`
(a small seeded slice) and `scripts/spec_conformance.py` (the full run, docs/reliability.md).

To add `/v1/responses` or `/v1/messages`: a `Target` with its request schema (`tests/spec/specs.py`
`APIS`), path, models and response schema names.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tests.conftest import AUTH, DEMO_KEY
from tests.spec.specs import request_schema, response_schema
from tests.spec.strategies import Strategy, valid, validator

# An answer's check: the problems found in one body or stream event (none: valid).
Validate = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Target:
    api: str  # a key of tests.spec.specs.APIS
    path: str
    models: tuple[str, ...]
    # a key of openai.json's `responses`, or a check (`sdk_model` for Anthropic's answers)
    response: str | Validate | None = None
    stream_response: str | Validate | None = None
    headers: tuple[tuple[str, str], ...] = tuple(AUTH.items())
    name: str | None = None  # when one API has several targets

    @property
    def key(self) -> str:
        return self.name or self.api

    def requests(self) -> Strategy:
        return valid(request_schema(self.api), overrides={"model": st.sampled_from(self.models)})


CHAT = Target("chat", "/v1/chat/completions", ("gpt-4o-mini",), "chat", "chat_stream")
EMBEDDINGS = Target("embeddings", "/v1/embeddings", ("text-embedding-3-small",), "embeddings")
# The same Chat Completions requests to deployments reached through translation (litellm).
CHAT_TRANSLATED = Target(
    "chat",
    "/v1/chat/completions",
    ("claude-sonnet", "gemini-flash"),
    "chat",
    "chat_stream",
    name="chat_translated",
)
TARGETS = {target.key: target for target in (CHAT, EMBEDDINGS, CHAT_TRANSLATED)}


def sdk_model(kind: Any) -> Validate:
    """A check by the anthropic SDK's own response types (`anthropic.types.Message`,
    `RawMessageStreamEvent`): the Messages API publishes no schema file, its SDK is the spec."""
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def validate(value: Any) -> list[str]:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            return [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:3]]
        return []

    return validate


def anthropic_targets() -> dict[str, Target]:
    """The Messages and Responses targets, for when those endpoints are on the branch: add them to
    `TARGETS` (and a test in tests/spec/test_spec_properties.py) then."""
    from anthropic.types import Message, RawMessageStreamEvent

    anthropic_auth = (("x-api-key", DEMO_KEY), ("anthropic-version", "2023-06-01"))
    return {
        "messages": Target(
            "messages",
            "/v1/messages",
            ("claude-sonnet",),
            sdk_model(Message),
            sdk_model(RawMessageStreamEvent),
            headers=anthropic_auth,
        ),
        "responses": Target("responses", "/v1/responses", ("gpt-4o-mini",), "responses"),
    }


def _check_of(spec: str | Validate) -> Validate:
    if isinstance(spec, str):
        return lambda value: response_errors(spec, value)
    return spec


# Spec-valid requests Sluice refuses on purpose: (api, error code, the start of the message) -> why.
# Each is in docs/reliability.md ("Conformance with the specifications").
DOCUMENTED_REFUSALS: dict[tuple[str, str, str], str] = {
    ("chat", "invalid_value", "seed must be"): (
        "`seed` beyond 64 bits: the specification writes the int64 bounds as +-9223372036854776000 "
        "(rounded by a float encoding), which admits integers OpenAI's own API refuses"
    ),
    ("chat", "invalid_value", "max_tokens must be between"): (
        "`max_tokens` below 1 or above 10,000,000: the specification sets no bounds; OpenAI refuses 0 "
        "and negative counts too, and Sluice bounds the work a request asks for"
    ),
    ("chat", "invalid_value", "max_completion_tokens must be between"): (
        "`max_completion_tokens` below 1 or above 10,000,000: as `max_tokens`"
    ),
    ("chat", "invalid_value", "the request cannot be translated"): (
        "translated deployments only (litellm: Anthropic, Gemini): a shape the provider cannot carry, "
        "which litellm or the provider refuses (no user turn, an empty text or image part, an order of "
        "messages the provider forbids); the same request to an OpenAI-wire deployment is answered"
    ),
    **{
        (api, "feature_not_allowed", "the request uses"): (
            "a data path (DESIGN.md \"Data paths\": `store`, `web_search_options`, prompt-cache retention, "
            "hosted or MCP tools) whose facts no deployment of the model satisfies under the effective "
            "policy: the refusal Sluice exists to make"
        )
        for api in ("chat", "responses", "messages")
    },
    ("embeddings", "invalid_value", "dimensions must be between"): (
        "`dimensions` above 65,536: the specification sets no maximum; Sluice bounds the work a "
        "request asks for (OpenAI's largest embedding model has 3,072 dimensions)"
    ),
}


@dataclass
class Outcome:
    status: int
    problems: list[str] = field(default_factory=list)
    refusal: str | None = None  # the documented refusal that applied
    error_code: str | None = None


def _documented(api: str, error: dict[str, Any]) -> str | None:
    for (target_api, code, start), reason in DOCUMENTED_REFUSALS.items():
        if (
            target_api == api
            and error.get("code") == code
            and str(error.get("message", "")).startswith(start)
        ):
            return reason
    return None


def response_errors(schema_name: str, value: Any) -> list[str]:
    found = sorted(validator(response_schema(schema_name)).iter_errors(value), key=lambda e: list(e.path))
    return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message[:160]}" for e in found[:3]]


def known_quirks(body: dict[str, Any], answer: Any) -> Any:
    """Where the specification's response schema is wrong, the answer as the schema would have it.
    Embeddings with `encoding_format: base64` are a base64 string of little-endian float32s, which
    the schema (an array of numbers only) does not allow: decoded, they must be that array."""
    if body.get("encoding_format") == "base64" and isinstance(answer, dict):
        data = answer.get("data")
        for item in data if isinstance(data, list) else ():
            if isinstance(item, dict) and isinstance(item.get("embedding"), str):
                raw = base64.b64decode(item["embedding"], validate=True)
                item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return answer


def _without_privacy(value: Any) -> Any:
    """Sluice's `privacy` extension is not in OpenAI's schema; everything else must be."""
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if key != "privacy"}
    return value


async def check(http: httpx.AsyncClient, target: Target, body: dict[str, Any]) -> Outcome:
    response = await http.post(target.path, json=body, headers=list(target.headers))
    outcome = Outcome(response.status_code)
    if response.status_code >= 500:
        outcome.problems.append(f"{response.status_code}: {response.text[:200]}")
        return outcome
    if response.status_code >= 400:
        error = response.json().get("error", {})
        outcome.error_code = error.get("code")
        outcome.refusal = _documented(target.api, error)
        if outcome.refusal is None:
            outcome.problems.append(
                f"refused {response.status_code} {error.get('code')}: {error.get('message')}"
            )
        return outcome
    if body.get("stream") is True and target.stream_response is not None:
        check_event = _check_of(target.stream_response)
        # SSE lines end at \n (or \r\n) only: `splitlines` would also split at U+2028 inside a string
        for line in response.text.replace("\r\n", "\n").split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:
                    outcome.problems.append(f"stream error: {chunk['error']}")
                else:
                    outcome.problems += check_event(_without_privacy(chunk))
    elif target.response is not None:
        answer = known_quirks(body, _without_privacy(response.json()))
        outcome.problems += _check_of(target.response)(answer)
    return outcome
