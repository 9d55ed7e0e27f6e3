"""`POST /v1/responses`: OpenAI's Responses API, streamed or not, through the same pipeline as chat.

What belongs here: the route's handler (admit the request with `gateway.api.intake`, parse it,
run it through `gateway.core.pipeline`) and the Responses wire model: the fields passed upstream
(an allowlist, like chat's), the steering fields refused at any depth (`refuse_forbidden`, with
this wire's JSON-schema payloads: function tools' `parameters`, `text.format.schema`), the bounds
on what a request makes the upstream do (items, tools, `include`), `previous_response_id` (the
pipeline pins the request to the deployment that produced it), and the data paths the request
uses (`gateway.core.data_paths.detect_responses`; storing is this API's default). The route is
declared in `gateway.api.routes`.

Not accepted (refused in the field table, with these reasons): `conversation` (a conversation object
kept at the provider, which Sluice cannot route) and `background: true` (its answer is fetched later
with `GET /v1/responses/{id}`, which Sluice does not serve). `metadata` is passed with `store`, as on
chat: it is kept with a stored response, which the policy judges (`stored_response`).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.api.fields import Api, accepted, accepted_paths
from gateway.api.intake import admit, policy_header
from gateway.api.openai_protocol import (
    EXTENSIONS,
    MAX_MESSAGES,
    MAX_TOOLS,
    SchemaPaths,
    _check_data_fields,
    _model,
    _privacy_ask,
    _refuse_top_level,
    _typed_parts,
    bad,
    check_number,
    refuse_forbidden,
    suspects_in,
)
from gateway.core.data_paths import detect_responses
from gateway.core.request import ParsedRequest
from gateway.names import Endpoint, ErrorCode
from gateway.server.edge import Inbound
from gateway.server.jsonbody import JsonBody

# OpenAI Responses request fields passed upstream (after validation): the specification's table
# (`gateway.api.fields`, docs/fields.md), where `conversation` and `background` are refused with their
# reasons. `store` is passed as the client sent it (on this API the provider's default is to store),
# `metadata` with it; the data-path rules decide both.
RESPONSES_FIELDS = accepted(Api.RESPONSES)
RESPONSES_PATHS = accepted_paths(Api.RESPONSES)
NOT_ROUTABLE = {
    "conversation": "conversation objects are kept at one provider; send previous_response_id or the input",
}
# The client's own JSON schemas (a key named like a litellm keyword, `tags`, is a schema's there):
# function tools' `parameters` and `output_schema`, also inside namespace tools and in the tool lists
# an input item carries (`tool_search_output`), where a tool may also have an `input_schema`.
SCHEMA_PATHS: SchemaPaths = (
    ("text", "format", "schema"),
    *(
        (*where, "*", leaf)
        for where in (
            ("tools",),
            ("tools", "*", "tools"),
            ("input", "*", "tools"),
            ("input", "*", "tools", "*", "tools"),
        )
        for leaf in ("parameters", "output_schema", "input_schema")
    ),
)
BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "max_output_tokens": (1, 10_000_000),
    "max_tool_calls": (1, 10_000),
    "top_logprobs": (0, 20),
}
INTEGERS = frozenset({"max_output_tokens", "max_tool_calls", "top_logprobs"})
MAX_INCLUDE = 32
MAX_ID = 256


def _check_input(value: Any) -> None:
    """A string, or an array of input items (messages, function calls and their outputs,
    reasoning items, ...), each an object; a message's content a string or typed parts."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise bad("input must be a string or an array of input items", param="input")
    if len(value) > MAX_MESSAGES:
        raise bad(f"input takes at most {MAX_MESSAGES} items", param="input")
    for i, item in enumerate(value):
        where = f"input[{i}]"
        # an item reference (`{"id": ...}`) may leave out its type (`item_reference`)
        if not isinstance(item, dict) or not ("type" in item or "role" in item or "id" in item):
            raise bad(f"{where} must be an object with a type (or a role, or an item id)", param=where)
        content = item.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad(f"{where}.content must be a string or an array of parts", param=f"{where}.content")
        if isinstance(content, list) and not _typed_parts(content):
            raise bad(f"{where}.content parts must be objects with a type", param=f"{where}.content")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise bad(f"tools must be an array of at most {MAX_TOOLS} entries", param="tools")
    if not _typed_parts(tools):
        raise bad("every tool must be an object with a type", param="tools")


def _check_fields(fields: dict[str, Any]) -> None:
    for name in BOUNDS.keys() & fields.keys():
        check_number(name, fields[name], BOUNDS, INTEGERS)
    for name in ("instructions", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise bad(f"{name} must be a string", param=name)
    for name in ("stream", "store", "parallel_tool_calls"):
        if fields.get(name) is not None and not isinstance(fields[name], bool):
            raise bad(f"{name} must be a boolean", param=name)
    _check_data_fields(fields)
    for name in ("reasoning", "text", "stream_options", "prompt", "moderation"):
        if fields.get(name) is not None and not isinstance(fields[name], dict):
            raise bad(f"{name} must be an object", param=name)
    include = fields.get("include")
    if include is not None and (
        not isinstance(include, list)
        or len(include) > MAX_INCLUDE
        or not all(isinstance(v, str) for v in include)
    ):
        raise bad(f"include must be an array of at most {MAX_INCLUDE} strings", param="include")
    management = fields.get("context_management")
    if management is not None and (
        not isinstance(management, list) or len(management) > MAX_TOOLS or not _typed_parts(management)
    ):
        raise bad(
            f"context_management must be an array of at most {MAX_TOOLS} objects with a type",
            param="context_management",
        )


def _continues(fields: dict[str, Any]) -> str | None:
    previous = fields.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous or len(previous) > MAX_ID:
        raise bad("previous_response_id must be a response id", param="previous_response_id")
    return previous


def _split(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in RESPONSES_FIELDS:
            fields[key] = value
        elif key == "model" or key in EXTENSIONS:
            continue
        elif key in NOT_ROUTABLE:
            if value is not None:  # `null` is the specification's "none"
                raise bad(f"{key} is not supported: {NOT_ROUTABLE[key]}", param=key)
        elif key == "background":
            if value not in (None, False):
                raise bad(
                    "background responses are not supported: Sluice does not serve GET /v1/responses/{id}",
                    param="background",
                )
        else:
            raise bad(f"unrecognized request argument: {key[:64]!r}", param=key[:64])
    return fields


def parse_responses(parsed: JsonBody, *, policy_header: str | None) -> ParsedRequest:
    body = parsed.value
    suspects = suspects_in(parsed)
    # The top level first: a body with an unknown field is refused before anything walks it.
    _refuse_top_level(body, suspects)
    model = _model(body)
    if "input" not in body and "previous_response_id" not in body and "prompt" not in body:
        raise bad("missing required field: input", param="input", code=ErrorCode.MISSING_FIELD)
    fields = _split(body)
    _check_tools(fields.get("tools"))
    refuse_forbidden(parsed, RESPONSES_PATHS, SCHEMA_PATHS, suspects)
    if "input" in fields:
        _check_input(fields["input"])
    _check_fields(fields)
    stream = fields.get("stream") is True
    if not stream:
        fields.pop("stream_options", None)
    return ParsedRequest(
        model,
        stream,
        fields,
        _privacy_ask(body, policy_header),
        continues=_continues(fields),
        paths=detect_responses(body, parsed.keys),
    )


async def create(inbound: Inbound) -> Response:
    key, body = await admit(inbound)
    parsed = parse_responses(body, policy_header=policy_header(inbound.request))
    del body  # its key set, and the fields that are not passed on
    return await inbound.services.chat.run(
        Endpoint.RESPONSES, key, parsed, request_id=inbound.request_id, started=inbound.started
    )
