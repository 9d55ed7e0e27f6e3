"""Property-based conformance with the published specifications: spec-valid requests, checked answers.

What belongs here: the targets (an API's request schema, its path, the demo models to use, the
response schemas its answers must satisfy), the documented refusals (spec-valid requests Sluice
answers with a 4xx on purpose, each with its reason), and `check`, which sends one request and names
what is wrong with the answer: a 5xx; a 4xx that is not a documented refusal; a 200 whose body (or
stream chunk) the specification's response schema rejects. Used by `tests/spec/test_spec_properties.py`
(a small seeded slice) and `scripts/spec_conformance.py` (the full run, docs/reliability.md).

A new API is a `Target`: its request schema (`tests/spec/specs.py` `APIS`), path, models and the
checks of its answers (response schema names in openai.json, or `sdk_model` of the anthropic SDK's
types for the Messages API, which publishes no schema file).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import strategies as st
from jsonschema.exceptions import best_match
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
    # Drawing: top-level fields always drawn (Sluice needs them), never drawn (not body fields), and
    # narrower spec-valid ranges (the provider's documented ones, where the schema has none)
    required: tuple[str, ...] = ()
    omit: tuple[str, ...] = ()
    ranges: tuple[tuple[str, Strategy], ...] = ()
    extras: tuple[tuple[str, Strategy], ...] = ()  # optional fields beside the schema's (`stream`)

    @property
    def key(self) -> str:
        return self.name or self.api

    def requests(self) -> Strategy:
        overrides = {"model": st.sampled_from(self.models), **dict(self.ranges)}
        drawn = valid(request_schema(self.api), overrides=overrides, required=self.required, omit=self.omit)
        if not self.extras:
            return drawn
        extra = st.fixed_dictionaries({}, optional=dict(self.extras))
        return st.tuples(drawn, extra).map(lambda pair: {**pair[0], **pair[1]})


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


# `model` is optional in the specification (a stored `prompt` may name one); Sluice routes by it, so
# it is always drawn. `input` is optional too (a `prompt` or `previous_response_id` may stand in),
# but a request without any is refused: drawn always, or most draws test that refusal only.
RESPONSES = Target(
    "responses",
    "/v1/responses",
    ("gpt-4o-mini",),
    "responses",
    "responses_stream",
    required=("model", "input"),
)
# The same Responses requests to deployments reached through litellm's Responses bridge.
RESPONSES_TRANSLATED = Target(
    "responses",
    "/v1/responses",
    ("claude-sonnet", "gemini-flash"),
    "responses",
    "responses_stream",
    name="responses_translated",
    required=("model", "input"),
)
# The anthropic SDK's types are bare `float`/`int` where Anthropic's API reference states ranges
# (`temperature` and `top_p` in [0, 1], `top_k` and `max_tokens` at least 1): drawn within them, and
# the refusals outside them documented. `anthropic-user-profile-id` is a header the SDK declares
# among the body's parameters (a quirk of the SDK-derived schema): not drawn as a body field;
# `inference_geo` is refused (the field table, a documented refusal): not drawn either, or half the
# draws test that refusal only. `stream` is in the SDK's streaming variant of the parameters (the
# vendored schema is the base both share): drawn beside it.
MESSAGES = Target(
    "messages",
    "/v1/messages",
    ("claude-sonnet",),
    sdk_model(Message),
    sdk_model(RawMessageStreamEvent),
    headers=(("x-api-key", DEMO_KEY), ("anthropic-version", "2023-06-01")),
    omit=("anthropic-user-profile-id", "inference_geo"),
    extras=(("stream", st.booleans()),),
    ranges=(
        ("temperature", st.floats(0, 1)),
        ("top_p", st.floats(0, 1)),
        ("top_k", st.integers(1, 500)),
        ("max_tokens", st.integers(1, 8192)),
    ),
)
TARGETS = {
    target.key: target
    for target in (CHAT, EMBEDDINGS, CHAT_TRANSLATED, RESPONSES, RESPONSES_TRANSLATED, MESSAGES)
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
            'a data path (DESIGN.md "Data paths": `store`, `web_search_options`, prompt-cache retention, '
            "hosted or MCP tools) whose facts no deployment of the model satisfies under the effective "
            "policy: the refusal Sluice exists to make"
        )
        for api in ("chat", "responses", "messages")
    },
    ("responses", "missing_field", "missing required field: model"): (
        "no `model`: the specification makes it optional (a stored `prompt` may name one); Sluice "
        "chooses a deployment by it"
    ),
    ("responses", "missing_field", "missing required field: input"): (
        "none of `input`, `prompt` and `previous_response_id`: the specification makes each optional, "
        "but a response needs something to answer (OpenAI refuses such a request too)"
    ),
    ("responses", "invalid_value", "background responses are not supported"): (
        "`background: true` (refused in the field table): the answer is fetched later with "
        "`GET /v1/responses/{id}`, which Sluice does not serve"
    ),
    ("responses", "invalid_value", "conversation is not supported"): (
        "`conversation` (refused in the field table): a conversation object kept at one provider, "
        "which Sluice cannot route"
    ),
    ("responses", "invalid_value", "max_tool_calls must be between"): (
        "`max_tool_calls` below 1 or above 10,000: the specification sets no bounds; Sluice bounds the "
        "work a request asks for"
    ),
    ("responses", "invalid_value", "max_output_tokens must be between"): (
        "`max_output_tokens` above 10,000,000: as chat's `max_tokens`"
    ),
    ("responses", "invalid_value", "previous_response_id is not a response"): (
        "a `previous_response_id` Sluice did not see this key receive (from a deployment that keeps "
        "responses): Sluice sends a continuation only to the deployment that holds the response"
    ),
    ("responses", "invalid_value", "previous_response_id must be a response id"): (
        "an empty `previous_response_id`, or one past 256 characters: no response Sluice knows"
    ),
    ("messages", "invalid_value", "unrecognized request argument: 'inference_geo'"): (
        "`inference_geo` (refused in the field table): it chooses where the provider processes the "
        "data; Sluice judges residency by the deployment's facts"
    ),
    ("messages", "invalid_value", "messages must be a non-empty array"): (
        "an empty `messages`: the SDK's type allows it, Anthropic's API refuses it (at least one message)"
    ),
    **{
        (api, "invalid_value", "the request cannot be translated"): "translated deployments only: as on chat"
        for api in ("responses", "messages")
    },
    **{
        (api, "feature_not_allowed", "remote_mcp: the MCP server host"): (
            "an MCP tool whose server host is not one of the config's `tool_hosts` (DESIGN.md \"Data "
            'paths", `remote_mcp`): the provider would send request data to a host nobody vetted'
        )
        for api in ("responses", "messages")
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
    # in an `anyOf` (an output item, a stream event), the branch of the value's `type` says what is
    # wrong (else the one that matched best)
    found = [_branch_error(e) for e in found]
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:160]}" for e in found[:3]]


def _branch_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    if not error.context:
        return error
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    typed = [subs for subs in branches.values() if not any(list(s.relative_path) == ["type"] for s in subs)]
    return (best_match(typed[0]) if len(typed) == 1 else best_match(error.context)) or error


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


def stream_quirks(event: Any) -> Any:
    """Where the specification's stream event schema is wrong, the event as the schema would have it.
    `response.created`, `response.in_progress` and `response.queued` carry the response so far with
    `usage: null` (as OpenAI's API reference shows them), which `Response.usage` does not allow.
    Anthropic's `ping` event (in its streaming documentation) is not in the SDK's
    `RawMessageStreamEvent` union (the SDK skips it): None, not checked."""
    if event == {"type": "ping"}:
        return None
    if isinstance(event, dict) and event.get("type") in _UNFINISHED:
        response = event.get("response")
        if isinstance(response, dict) and "usage" in response and response["usage"] is None:
            event = {**event, "response": {k: v for k, v in response.items() if k != "usage"}}
    return event


_UNFINISHED = frozenset({"response.created", "response.in_progress", "response.queued"})


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
                if "error" in chunk or chunk.get("type") in ("error", "response.failed"):
                    # an error event is valid in every stream schema, and still a failed request
                    outcome.problems.append(f"stream error: {str(chunk)[:200]}")
                else:
                    event = stream_quirks(_without_privacy(chunk))
                    outcome.problems += [] if event is None else check_event(event)
    elif target.response is not None:
        answer = known_quirks(body, _without_privacy(response.json()))
        outcome.problems += _check_of(target.response)(answer)
    return outcome
