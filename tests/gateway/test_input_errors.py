"""Bad input never reaches an upstream and always gets the OpenAI error envelope.

Every case asserts: the status and code, `{"error": {"message", "type", "param", "code"}}` (never
FastAPI's `detail`, never 422 or 500), and that the fake upstream received nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, chat_body
from tests.gateway.support import bearer, build_app, error_of, key_hash, serving

CHAT = "/v1/chat/completions"
LIMITED_KEY = "sk-client-limited-4Tz1"
JSON_HEADERS = {**AUTH, "content-type": "application/json"}


def _demo_with_limited_key() -> str:
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config["keys"].append({"name": "limited", "key_hash": key_hash(LIMITED_KEY), "models": ["llama-local"]})
    return yaml.safe_dump(config)


@pytest.fixture
async def http(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(_demo_with_limited_key(), settings=demo_settings)) as client:
        yield client


@pytest.fixture
async def small(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose request body limit is 1 KiB."""
    settings = demo_settings.model_copy(update={"max_body_bytes": 1024})
    async with serving(build_app(DEMO_CONFIG.read_text(encoding="utf-8"), settings=settings)) as client:
        yield client


def no_upstream(fake: FakeUpstream) -> None:
    assert fake.requests == [], [r.path for r in fake.requests]


# -- malformed bodies -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "gpt-4o-mini", "messages": [',
        b"",
        b"   \n ",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"42",
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    ],
    ids=[
        "truncated",
        "empty",
        "whitespace",
        "array",
        "string",
        "null",
        "number",
        "nan",
        "infinity",
        "overflow",
        "lone-surrogate",
        "invalid-utf8",
    ],
)
async def test_malformed_json(http: httpx.AsyncClient, fake: FakeUpstream, raw: bytes) -> None:
    response = await http.post(CHAT, content=raw, headers=JSON_HEADERS)
    error = error_of(response, 400, "invalid_json")
    assert error["type"] == "invalid_request_error"
    no_upstream(fake)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": ["gpt-4o-mini"], "messages": [{"role": "user", "content": "hi"}]}, "model"),
        (chat_body() | {"messages": "hi"}, "messages"),
        (chat_body() | {"messages": []}, "messages"),
        (chat_body() | {"messages": ["hi"]}, "messages[0]"),
        (chat_body() | {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        (chat_body() | {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            chat_body() | {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages[0].content",
        ),
        (chat_body() | {"messages": [{"role": "user", "content": "hi", "colour": 1}]}, "messages[0].colour"),
        (chat_body(stream="yes"), "stream"),
        (chat_body(tools={"type": "function"}), "tools"),
        (chat_body(response_format="json"), "response_format"),
        (chat_body(stream=True, stream_options=[1]), "stream_options"),
        (chat_body(privacy="zero-retention"), "privacy"),
        (chat_body(privacy={"on_violation": "ignore"}), "privacy.on_violation"),
        (chat_body(provider={"data_collection": "maybe"}), "provider.data_collection"),
        (chat_body(provider={"zdr": "yes"}), "provider.zdr"),
    ],
)
async def test_wrong_types(
    http: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    response = await http.post(CHAT, json=body, headers=AUTH)
    error = error_of(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    no_upstream(fake)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({}, "model"),
    ],
)
async def test_missing_fields(
    http: httpx.AsyncClient, fake: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    response = await http.post(CHAT, json=body, headers=AUTH)
    error = error_of(response, 400, "missing_field")
    assert error["param"] == param
    no_upstream(fake)


async def test_embeddings_missing_input(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await http.post("/v1/embeddings", json={"model": "text-embedding-3-small"}, headers=AUTH)
    error = error_of(response, 400, "missing_field")
    assert error["param"] == "input"
    no_upstream(fake)


async def test_unknown_top_level_field(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await http.post(CHAT, json=chat_body(frobnicate=True), headers=AUTH)
    error = error_of(response, 400)
    assert error["param"] == "frobnicate"
    no_upstream(fake)


# -- models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        "no-such-model",
        "../gpt-4o-mini",
        "openai/http://169.254.169.254",
        "gpt-4o-mini\r\nX-Injected: 1",
        "x" * 200,
    ],
)
async def test_unknown_model_is_404(http: httpx.AsyncClient, fake: FakeUpstream, model: str) -> None:
    response = await http.post(CHAT, json=chat_body(model), headers=AUTH)
    error = error_of(response, 404, "model_not_found")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "model"
    assert "X-Injected" not in response.headers
    assert "\r\n" not in error["message"]
    no_upstream(fake)


async def test_model_not_allowed_for_key(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    allowed = await http.post(CHAT, json=chat_body("llama-local"), headers=bearer(LIMITED_KEY))
    assert allowed.status_code == 200, allowed.text
    fake.reset()
    response = await http.post(CHAT, json=chat_body("gpt-4o-mini"), headers=bearer(LIMITED_KEY))
    error = error_of(response, 403, "model_not_allowed")
    assert error["type"] == "permission_error"
    no_upstream(fake)


async def test_duplicate_model_key_checks_the_model_it_would_send(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    raw = (
        b'{"model": "gpt-4o-mini", "model": "gemini-flash-free", '
        b'"messages": [{"role": "user", "content": "hi"}]}'
    )
    response = await http.post(CHAT, content=raw, headers=JSON_HEADERS)
    assert response.status_code in (400, 403), response.text
    error_of(response, response.status_code)
    no_upstream(fake)


# -- steering parameters ----------------------------------------------------------------------------
FORBIDDEN = (
    "api_base",
    "base_url",
    "api_key",
    "custom_llm_provider",
    "extra_headers",
    "litellm_foo",
    "success_callback",
)


@pytest.mark.parametrize("name", FORBIDDEN)
async def test_forbidden_parameter_top_level(http: httpx.AsyncClient, fake: FakeUpstream, name: str) -> None:
    value: Any = {"x-evil": "1"} if name == "extra_headers" else "http://169.254.169.254/"
    response = await http.post(CHAT, json=chat_body(**{name: value}), headers=AUTH)
    error = error_of(response, 400, "forbidden_parameter")
    assert error["param"] == name
    assert "169.254.169.254" not in response.text
    no_upstream(fake)


@pytest.mark.parametrize("name", FORBIDDEN)
@pytest.mark.parametrize(
    ("where", "param_prefix"),
    [("message", "messages[]."), ("metadata", "metadata."), ("stream_options", "stream_options.")],
)
async def test_forbidden_parameter_nested(
    http: httpx.AsyncClient, fake: FakeUpstream, name: str, where: str, param_prefix: str
) -> None:
    body = chat_body()
    if where == "message":
        body["messages"][0][name] = "http://attacker.example/"
    elif where == "metadata":
        body["metadata"] = {"note": "x", name: "http://attacker.example/"}
    else:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True, name: "http://attacker.example/"}
    response = await http.post(CHAT, json=body, headers=AUTH)
    error = error_of(response, 400, "forbidden_parameter")
    assert error["param"] == param_prefix + name
    no_upstream(fake)


async def test_forbidden_parameter_deeply_nested(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = chat_body(metadata={"a": [{"b": {"user_config": {"api_base": "http://attacker.example/"}}}]})
    response = await http.post(CHAT, json=body, headers=AUTH)
    error_of(response, 400, "forbidden_parameter")
    no_upstream(fake)


async def test_forbidden_parameter_in_embeddings(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "api_base": "http://attacker.example/"}
    response = await http.post("/v1/embeddings", json=body, headers=AUTH)
    error_of(response, 400, "forbidden_parameter")
    no_upstream(fake)


async def test_tool_schema_property_named_api_key_is_accepted(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "login",
            "description": "Log in to a service",
            "parameters": {
                "type": "object",
                "properties": {"api_key": {"type": "string"}, "base_url": {"type": "string"}},
                "required": ["api_key"],
            },
        },
    }
    response = await http.post(CHAT, json=chat_body(tools=[tool]), headers=AUTH)
    assert response.status_code == 200, response.text
    [record] = fake.requests
    assert record.json["tools"] == [tool]


# -- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 5),
        ("temperature", -0.1),
        ("temperature", True),
        ("temperature", "0.5"),
        ("top_p", 1.5),
        ("n", 0),
        ("n", 1_000_000_000),
        ("n", 1.5),
        ("n", True),
        ("max_tokens", -1),
        ("max_tokens", 0),
        ("max_tokens", 10**30),
        ("max_tokens", False),
        ("presence_penalty", 3),
        ("top_logprobs", 21),
        ("seed", 2**70),
    ],
)
async def test_numbers_out_of_range(
    http: httpx.AsyncClient, fake: FakeUpstream, field: str, value: Any
) -> None:
    response = await http.post(CHAT, json=chat_body(**{field: value}), headers=AUTH)
    error = error_of(response, 400)
    assert error["param"] == field
    no_upstream(fake)


async def test_embedding_dimensions_out_of_range(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "dimensions": 0}
    response = await http.post("/v1/embeddings", json=body, headers=AUTH)
    error = error_of(response, 400)
    assert error["param"] == "dimensions"
    no_upstream(fake)


# -- size and content type ------------------------------------------------------------------------
def _big_body() -> bytes:
    return httpx.Request("POST", "http://x", json=chat_body(content="x" * 4096)).content


async def test_body_over_limit_with_content_length(small: httpx.AsyncClient, fake: FakeUpstream) -> None:
    raw = _big_body()
    response = await small.post(CHAT, content=raw, headers=JSON_HEADERS)
    assert response.request.headers["content-length"] == str(len(raw))
    error = error_of(response, 413, "request_too_large")
    assert error["type"] == "invalid_request_error"
    no_upstream(fake)


async def test_body_over_limit_chunked(small: httpx.AsyncClient, fake: FakeUpstream) -> None:
    raw = _big_body()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 512):
            yield raw[start : start + 512]

    response = await small.post(CHAT, content=pieces(), headers=JSON_HEADERS)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    error_of(response, 413, "request_too_large")
    no_upstream(fake)


async def test_body_under_limit_passes(small: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await small.post(CHAT, json=chat_body(), headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded"]
)
async def test_unsupported_content_type(
    http: httpx.AsyncClient, fake: FakeUpstream, content_type: str
) -> None:
    raw = httpx.Request("POST", "http://x", json=chat_body()).content
    response = await http.post(CHAT, content=raw, headers={**AUTH, "content-type": content_type})
    error_of(response, 415)
    no_upstream(fake)


# -- authentication -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-wrong-key-000000"},
        {"authorization": "Bearer "},
        {"authorization": "Bearer"},
        {"authorization": f"Basic {DEMO_KEY}"},
        {"authorization": DEMO_KEY},
        {"api-key": ""},
        {"authorization": f"Bearer {DEMO_KEY}", "api-key": "sk-sluice-demo-legal"},
        {"authorization": f"Bearer {DEMO_KEY}", "x-api-key": "sk-other-key-111111"},
        {"authorization": "Bearer sk-other-key-111111", "api-key": DEMO_KEY},
        {"authorization": "Bearer x' OR '1'='1"},
        {"authorization": "Bearer " + "k" * 9000},
    ],
    ids=[
        "none",
        "wrong",
        "bearer-empty",
        "bearer-no-space",
        "basic-scheme",
        "no-scheme",
        "empty-api-key",
        "two-keys-api-key",
        "two-keys-x-api-key",
        "wrong-then-right",
        "sql",
        "huge",
    ],
)
async def test_bad_auth_is_401(http: httpx.AsyncClient, fake: FakeUpstream, headers: dict[str, str]) -> None:
    response = await http.post(CHAT, json=chat_body(), headers=headers)
    error = error_of(response, 401, "invalid_api_key")
    assert error["type"] == "authentication_error"
    assert DEMO_KEY not in response.text
    no_upstream(fake)


@pytest.mark.parametrize(
    "lines",
    [
        [("authorization", f"Bearer {DEMO_KEY}"), ("authorization", "Bearer sk-wrong")],
        [("authorization", "Bearer sk-wrong"), ("authorization", f"Bearer {DEMO_KEY}")],
        [("x-api-key", DEMO_KEY), ("x-api-key", "sk-wrong")],
        [("api-key", "sk-wrong"), ("api-key", DEMO_KEY)],
        [("authorization", f"Bearer {DEMO_KEY}"), ("authorization", "Basic abc")],
    ],
    ids=["bearer-then-wrong", "wrong-then-bearer", "x-api-key-twice", "api-key-twice", "bearer-then-basic"],
)
async def test_repeated_key_headers_that_differ_are_401_every_time(
    http: httpx.AsyncClient, fake: FakeUpstream, lines: list[tuple[str, str]]
) -> None:
    """Checklist A3: never authenticated as either line; the same answer on every try."""
    for _ in range(3):
        response = await http.post(CHAT, json=chat_body(), headers=lines)
        error_of(response, 401, "invalid_api_key")
    no_upstream(fake)


async def test_repeated_identical_key_lines_authenticate(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    lines = [("authorization", f"Bearer {DEMO_KEY}"), ("authorization", f"Bearer {DEMO_KEY}")]
    response = await http.post(CHAT, json=chat_body(), headers=lines)
    assert response.status_code == 200, response.text


async def test_api_key_header_alone_authenticates(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await http.post(CHAT, json=chat_body(), headers={"api-key": DEMO_KEY})
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/gpt-4o-mini", "/v1/embeddings"])
async def test_other_routes_need_a_key(http: httpx.AsyncClient, fake: FakeUpstream, path: str) -> None:
    if path == "/v1/embeddings":
        response = await http.post(path, json={"model": "text-embedding-3-small", "input": "hi"})
    else:
        response = await http.get(path)
    error_of(response, 401, "invalid_api_key")
    no_upstream(fake)


# -- routes and methods ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/v1/nothing-here", "/v2/chat/completions", "/v1/internal", "/v1/chat/completions/x"]
)
async def test_unknown_route_is_404_envelope(http: httpx.AsyncClient, fake: FakeUpstream, path: str) -> None:
    response = await http.post(path, json=chat_body(), headers=AUTH)
    error_of(response, 404)
    no_upstream(fake)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", CHAT),
        ("PUT", CHAT),
        ("DELETE", "/v1/embeddings"),
        ("POST", "/v1/models"),
        ("POST", "/healthz"),
    ],
)
async def test_wrong_method_is_405_envelope(
    http: httpx.AsyncClient, fake: FakeUpstream, method: str, path: str
) -> None:
    response = await http.request(method, path, headers=AUTH)
    error_of(response, 405)
    no_upstream(fake)
