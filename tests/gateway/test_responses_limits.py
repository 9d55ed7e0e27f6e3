"""Input limits on `POST /v1/responses` (security checklist I4, I10): refused early, named, never sent on.

In process over ASGI, the demo config in front of a `FakeUpstream`: every refusal leaves the fake
untouched, and a request at each cap passes. The body-size and header limits are the edge's, the
same for every route (tests/gateway/test_input_limits.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import AUTH, DEMO_CONFIG
from tests.gateway.support import App, demo_app, error_of

RESPONSES = "/v1/responses"
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    async with demo_app(DEMO_CONFIG, tmp_path_factory.mktemp("responses-limits")) as app:
        yield app


@pytest.fixture
def app(shared_app: App) -> App:
    shared_app.fake.reset()
    shared_app.audit.events.clear()
    return shared_app


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input": "hi", **fields}


def tools(count: int) -> list[dict[str, Any]]:
    return [{"type": "function", "name": f"f{i}", "parameters": {"type": "object"}} for i in range(count)]


ITEM = {"role": "user", "content": "x"}


@in_module_loop
@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (body(input=[ITEM] * 10_001), "input"),
        (body(tools=tools(513)), "tools"),
        (body(include=["reasoning.encrypted_content"] * 33), "include"),
        (body(max_output_tokens=0), "max_output_tokens"),
        (body(top_logprobs=21), "top_logprobs"),
        (body(previous_response_id="r" * 257), "previous_response_id"),
        (body(input=[{"role": "user", "content": [{"text": "no type"}]}]), "input[0].content"),
    ],
    ids=["10001-items", "513-tools", "33-includes", "zero-tokens", "21-logprobs", "long-id", "untyped-part"],
)
async def test_i10_over_the_caps_is_a_400_before_any_upstream_call(
    app: App, payload: dict[str, Any], param: str
) -> None:
    response = await app.http.post(RESPONSES, json=payload, headers=AUTH)
    error = error_of(response, 400, "invalid_value")
    assert error["param"] == param
    assert app.fake.requests == []
    assert app.audit.events == []  # refused before any decision


@in_module_loop
@pytest.mark.parametrize(
    "payload",
    [body(input=[ITEM] * 10_000), body(tools=tools(512)), body(include=["x"] * 32)],
    ids=["10000-items", "512-tools", "32-includes"],
)
async def test_i10_at_the_caps_requests_pass(app: App, payload: dict[str, Any]) -> None:
    response = await app.http.post(RESPONSES, json=payload, headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(app.fake.requests) == 1


@in_module_loop
@pytest.mark.parametrize(
    ("field", "param"),
    [
        ('"input": [{"role": "user", "content": [{"type": "input_text", "text": "x", "p": DEEP}]}]', "input"),
        ('"tools": [{"type": "function", "name": "f", "parameters": DEEP}]', "tools[0].parameters"),
        ('"text": {"format": {"type": "json_schema", "name": "s", "schema": DEEP}}', "text.format.schema"),
    ],
    ids=["input", "tool-parameters", "text-format-schema"],
)
async def test_i4_deep_nesting_is_a_400_naming_the_field(app: App, field: str, param: str) -> None:
    deep = '{"p": ' * 100_000 + "1" + "}" * 100_000
    raw = '{"model": "gpt-4o-mini", ' + field.replace("DEEP", deep) + "}"
    response = await app.http.post(
        RESPONSES, content=raw.encode(), headers={**AUTH, "content-type": "application/json"}
    )
    error = error_of(response, 400, "invalid_json")
    assert error["param"] is not None and error["param"].startswith(param), error
    assert app.fake.requests == []
