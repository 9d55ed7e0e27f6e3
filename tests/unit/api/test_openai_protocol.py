"""gateway/api/openai_protocol.py: a parsed body becomes a request, or a 400 naming its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.api.openai_protocol import CHAT_FIELDS, MAX_STOP, parse_chat, parse_embeddings
from gateway.core.request import ParsedRequest, PrivacyAsk
from gateway.errors import InvalidRequest
from gateway.names import ErrorCode
from gateway.server.jsonbody import parse_body

MESSAGES = [{"role": "user", "content": "Hello"}]


def chat(header: str | None = None, **body: Any) -> ParsedRequest:
    return parse_chat(parse_body(orjson.dumps(body)), policy_header=header)


def refused(code: ErrorCode, param: str | None, **body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        chat(**body)
    assert (raised.value.code, raised.value.param) == (code, param), raised.value.message
    return raised.value


def test_a_chat_request_keeps_only_openai_fields() -> None:
    request = chat(model="gpt-4o-mini", messages=MESSAGES, temperature=0.5, privacy={}, provider={})
    assert (request.model, request.stream) == ("gpt-4o-mini", False)
    assert request.fields == {"messages": MESSAGES, "temperature": 0.5}  # model and extensions apart
    assert set(request.fields) <= CHAT_FIELDS
    assert request.ask == PrivacyAsk()


def test_stream_options_go_only_with_a_stream() -> None:
    options = {"include_usage": True}
    assert "stream_options" not in chat(model="m", messages=MESSAGES, stream_options=options).fields
    streamed = chat(model="m", messages=MESSAGES, stream=True, stream_options=options)
    assert streamed.stream and streamed.fields["stream_options"] == options


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"messages": MESSAGES}, ErrorCode.MISSING_FIELD, "model"),
        ({"model": "m"}, ErrorCode.MISSING_FIELD, "messages"),
        ({"model": "", "messages": MESSAGES}, ErrorCode.INVALID_VALUE, "model"),
        ({"model": "m", "messages": MESSAGES, "frobnicate": 1}, ErrorCode.INVALID_VALUE, "frobnicate"),
        ({"model": "m", "messages": MESSAGES, "temperature": 3}, ErrorCode.INVALID_VALUE, "temperature"),
        ({"model": "m", "messages": MESSAGES, "n": 1.5}, ErrorCode.INVALID_VALUE, "n"),
        ({"model": "m", "messages": MESSAGES, "stream": "yes"}, ErrorCode.INVALID_VALUE, "stream"),
        ({"model": "m", "messages": MESSAGES, "user": 7}, ErrorCode.INVALID_VALUE, "user"),
        (
            {"model": "m", "messages": MESSAGES, "response_format": "json"},
            ErrorCode.INVALID_VALUE,
            "response_format",
        ),
        (  # an object field is checked before a string field, whatever the body's order
            {"model": "m", "messages": MESSAGES, "user": 7, "prompt_cache_options": []},
            ErrorCode.INVALID_VALUE,
            "prompt_cache_options",
        ),
        (
            {"model": "m", "messages": MESSAGES, "stop": ["x"] * (MAX_STOP + 1)},
            ErrorCode.INVALID_VALUE,
            "stop",
        ),
    ],
)
def test_bad_fields_are_named(body: dict[str, Any], code: ErrorCode, param: str) -> None:
    refused(code, param, **body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"api_base": "https://evil.example"}, "api_base"),
        (
            {"messages": [{"role": "user", "content": "hi", "litellm_logging_obj": 1}]},
            "messages[].litellm_logging_obj",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "success_callback": []}}]},
            "tools[].function.success_callback",
        ),
        ({"provider": {"order": ["openai"]}}, "provider.order"),
    ],
)
def test_steering_fields_are_refused_at_any_depth(body: dict[str, Any], param: str) -> None:
    refused(ErrorCode.FORBIDDEN_PARAMETER, param, **{"model": "m", "messages": MESSAGES, **body})


def test_a_schema_may_name_its_properties_anything() -> None:
    schema = {"type": "object", "properties": {"api_key": {"type": "string"}, "timeout": {"type": "number"}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    assert chat(model="m", messages=MESSAGES, tools=tools).fields["tools"] == tools


def test_the_privacy_ask_gathers_header_body_and_openrouter_fields() -> None:
    request = chat(
        "zero-retention, no-human-review",
        model="m",
        messages=MESSAGES,
        privacy={"policy": ["eu-residency"], "on_violation": "block"},
        provider={"data_collection": "deny", "zdr": True},
    )
    assert request.ask == PrivacyAsk(
        ("zero-retention", "no-human-review", "eu-residency", "no-training-only"), block=True
    )
    assert "privacy" not in request.fields and "provider" not in request.fields


@pytest.mark.parametrize(
    ("extension", "param"),
    [
        ({"privacy": {"policy": 3}}, "privacy.policy"),
        ({"privacy": {"on_violation": "shrug"}}, "privacy.on_violation"),
        ({"privacy": {"loosen": True}}, "privacy"),
        ({"provider": {"data_collection": "maybe"}}, "provider.data_collection"),
        ({"provider": {"zdr": "yes"}}, "provider.zdr"),
    ],
)
def test_a_malformed_privacy_ask_is_refused(extension: dict[str, Any], param: str) -> None:
    refused(ErrorCode.INVALID_VALUE, param, **{"model": "m", "messages": MESSAGES, **extension})


def embeddings(**body: Any) -> ParsedRequest:
    return parse_embeddings(parse_body(orjson.dumps(body)), policy_header=None)


def test_an_embeddings_request() -> None:
    request = embeddings(model="e", input=["a", "b"], dimensions=8, privacy={"policy": "zero-retention"})
    assert request.fields == {"input": ["a", "b"], "dimensions": 8}
    assert request.ask.policies == ("zero-retention",) and not request.stream


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e"}, "input"),
        ({"model": "e", "input": ["a", 1]}, "input"),
        ({"model": "e", "input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "e", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "e", "input": "a", "messages": MESSAGES}, "messages"),
    ],
)
def test_a_bad_embeddings_request_names_its_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        embeddings(**body)
    assert raised.value.param == param
