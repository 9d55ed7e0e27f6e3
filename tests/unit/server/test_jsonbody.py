"""gateway/server/jsonbody.py: a body parsed and surveyed in one pass, and the field each refusal names."""

from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidRequest
from gateway.names import ErrorCode
from gateway.server.jsonbody import (
    CONTAINER_BYTES,
    MAX_CONTAINERS,
    MAX_DEPTH,
    VALUE_BYTES,
    parse_body,
    path_at,
    render_path,
)


def refusal(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        parse_body(raw)
    assert raised.value.code is ErrorCode.INVALID_JSON
    return raised.value


def test_an_object_is_surveyed() -> None:
    body = parse_body(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1}')
    assert body.value["messages"][0]["content"] == "hi"
    assert body.keys == {"model", "messages", "role", "content", "n"}
    assert body.containers == 3  # the object, the list, the message
    assert body.values == 1 + 3 + 1 + 2  # itself, its three values, the list's one, the message's two
    parsed = VALUE_BYTES * (body.values + len(body.keys)) + CONTAINER_BYTES * body.containers
    assert body.memory_estimate(100) == 200 + parsed


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"a": ', "not valid JSON"),
    ],
)
def test_what_is_not_an_object_is_refused(raw: bytes, words: str) -> None:
    error = refusal(raw)
    assert words in error.message and error.param is None


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"temperature": NaN}', "temperature"),
        (b'{"messages": [{"x": 1}, {"score": -Infinity}]}', "messages[1].score"),
        (b'{"a": {"b": [1, 1e400]}}', "a.b[1]"),
    ],
)
def test_numbers_json_cannot_carry_name_their_field(raw: bytes, param: str) -> None:
    assert refusal(raw).param == param


def test_nesting_past_the_cap_names_the_start_of_its_path() -> None:
    deep = {"tools": [{"function": {"parameters": {}}}]}
    inner: dict[str, object] = deep["tools"][0]["function"]["parameters"]  # type: ignore[index]
    for _ in range(MAX_DEPTH):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    error = refusal(json.dumps(deep).encode())
    assert error.param == "tools[0].function.parameters"
    assert f"deeper than {MAX_DEPTH} levels" in error.message


def test_nesting_orjson_itself_refuses_is_named_too() -> None:
    raw = b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert refusal(raw).param == "a[0][0][0]"


def test_too_many_containers_is_refused() -> None:
    raw = b'{"a": [' + b",".join([b"[]"] * (MAX_CONTAINERS + 1)) + b"]}"
    assert "arrays and objects" in refusal(raw).message


def test_at_the_cap_is_accepted() -> None:
    raw = b'{"a": [' + b",".join([b"[]"] * (MAX_CONTAINERS - 2)) + b"]}"
    assert parse_body(raw).containers == MAX_CONTAINERS


def test_paths_render_as_clients_write_them() -> None:
    assert render_path(["messages", 0, "content", 2, "text"]) == "messages[0].content[2].text"
    assert render_path([]) is None
    text = '{"messages": [{"role": "user"}, {"content": '
    assert path_at(text, len(text)) == ["messages", 1, "content"]


def test_a_key_named_in_an_error_is_cut_and_made_printable() -> None:
    raw = b'{"bad\\nkey' + b"k" * 100 + b'": NaN}'
    param = refusal(raw).param
    assert param is not None and "\n" not in param and len(param) == 64
