"""Parsing a request body as JSON, and saying which field a parse error sits in.

What belongs here: `parse_json()` (orjson; an object at the top; at most `MAX_DEPTH` levels) and,
on the error path only, finding the key path of the value the parser stopped at, so that the 400
names its `param`: `NaN`/`Infinity` (not JSON), numbers no double can hold (`1e400`, a 5,000-digit
integer), and nesting past the cap. A valid body pays for none of the locating.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.names import ErrorCode

# orjson parses 1024 levels but serialises only ~254 (for the upstream call): cap well below both.
MAX_DEPTH = 64
# A too-deep value is named by the start of its path (`tools[0].function.parameters`), not all of it.
DEPTH_PARAM_SEGMENTS = 4
MAX_KEY_CHARS = 64
MAX_PARAM_CHARS = 256
# Structural tokens of JSON text: whole strings (escapes included), brackets, commas, colons.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
# Where orjson stops at `-Infinity` differs from `Infinity` (after the sign): both are covered.
_NON_FINITE = ("NaN", "Infinity", "-NaN", "-Infinity")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9.eE+-])")

Segment = str | int


def invalid_json(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, code=ErrorCode.INVALID_JSON, param=param)


def render_path(path: list[Segment]) -> str | None:
    """`messages[0].content` from `["messages", 0, "content"]`; None for the top level."""
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        else:
            parts.append(f".{segment}" if parts else segment)
    return "".join(parts)[:MAX_PARAM_CHARS] or None


def _clean(key: str) -> str:
    """A key as the client wrote it, cut short and without control characters (it is echoed)."""
    return "".join(c if c.isprintable() else "?" for c in key[:MAX_KEY_CHARS])


def _key(token: str) -> str:
    try:
        key = orjson.loads(token)
    except orjson.JSONDecodeError:  # a lone surrogate escape, say
        key = token[1:-1]
    return _clean(str(key))


def path_at(text: str, pos: int) -> list[Segment]:
    """The key path of the value that starts at character `pos` of `text` (valid JSON before it)."""
    # One frame per open container: [key token or None, expecting a key] for an object, [index]
    # for an array.
    frames: list[list[Any]] = []
    for match in _TOKENS.finditer(text, 0, pos):
        token = match.group()
        first = token[0]
        if first == '"':
            if frames and len(frames[-1]) == 2 and frames[-1][1]:
                frames[-1][0] = token
        elif first == "{":
            frames.append([None, True])
        elif first == "[":
            frames.append([0])
        elif first in "}]":
            if frames:
                frames.pop()
        elif frames:
            top = frames[-1]
            if len(top) == 1:
                top[0] += first == ","
            else:
                top[1] = first == ","
    path: list[Segment] = []
    for frame in frames:
        if len(frame) == 1:
            path.append(frame[0])
        elif frame[0] is not None:
            path.append(_key(frame[0]))
    return path


def _located(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidRequest:
    """The 400 for a body orjson refused, naming the field where it can."""
    text = raw.decode("utf-8", "replace")  # orjson reports a character offset, not a byte offset
    pos = exc.pos
    if text.startswith(_NON_FINITE, pos):
        param = render_path(path_at(text, pos))
        return invalid_json(f"{param or 'the body'}: NaN and Infinity are not JSON numbers", param)
    number = _NUMBER.match(text, pos)
    if number and math.isinf(float(number.group())):
        param = render_path(path_at(text, pos))
        return invalid_json(f"{param or 'the body'}: the number is out of range", param)
    if "depth" not in exc.msg:  # a syntax error: nothing to name, and no scan to pay for
        return invalid_json("the request body is not valid JSON")
    path = path_at(text, pos)  # orjson stops at 1024 levels, somewhere inside the last container
    if len(path) >= MAX_DEPTH:
        param = render_path(path[:DEPTH_PARAM_SEGMENTS])
        return invalid_json(f"{param or 'the body'} is nested deeper than {MAX_DEPTH} levels", param)
    return invalid_json("the request body is not valid JSON")


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _deep_path(value: Any, limit: int) -> list[Segment]:
    """The path to a container nested deeper than `limit` (the error path only: it builds paths)."""
    stack: list[tuple[Any, list[Segment]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, dict | list):
                here = [*path, key if isinstance(key, int) else _clean(key)]
                if len(here) >= limit:
                    return here
                stack.append((child, here))
    return []


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise invalid_json("the request body is empty; send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _located(raw, exc) from None
    if not isinstance(value, dict):
        raise invalid_json("the request body must be a JSON object")
    if _deeper_than(value, MAX_DEPTH):
        param = render_path(_deep_path(value, MAX_DEPTH)[:DEPTH_PARAM_SEGMENTS])
        raise invalid_json(f"{param or 'the body'} is nested deeper than {MAX_DEPTH} levels", param)
    return value
