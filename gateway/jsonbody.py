"""Parsing a request body as JSON, and saying which field a parse error sits in.

What belongs here: `parse_body()` (orjson; an object at the top; at most `MAX_DEPTH` levels and
`MAX_CONTAINERS` arrays and objects, checked in one linear pass that also collects the keys) and,
on the error path only, finding the key path of the value the parser stopped at, so that the 400
names its `param`: `NaN`/`Infinity` (not JSON), numbers no double can hold (`1e400`, a 5,000-digit
integer), and nesting past the cap. A valid body pays for none of the locating.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.names import ErrorCode

# orjson parses 1024 levels but serialises only ~254 (for the upstream call): cap well below both.
MAX_DEPTH = 64
# Arrays and objects in one body. What a body costs in time and memory grows with this count, not
# its bytes: 4 MiB of `[[],[],...]` is 1.4 million lists (85 MB parsed). The cap leaves room for
# 160,000 content parts, 512 tool schemas or 10,000 messages (docs/reliability.md).
MAX_CONTAINERS = 200_000
# What a parsed value holds in memory, upper estimates from tracemalloc (docs/reliability.md): a
# float 24 bytes and its slot 8; a short string about 50; an object of two short keys about 230;
# a distinct key is one more string.
VALUE_BYTES = 64
CONTAINER_BYTES = 128
# A too-deep value is named by the start of its path (`tools[0].function.parameters`), not all of it.
DEPTH_PARAM_SEGMENTS = 4
MAX_KEY_CHARS = 64
MAX_PARAM_CHARS = 256
# Naming the field of a parse error walks the text before it token by token, in Python: only for
# the first this many tokens (about 20 ms); past them the 400 names no field.
MAX_LOCATE_TOKENS = 50_000
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


def _path_near(text: str, pos: int) -> list[Segment]:
    """`path_at(text, pos)`, or [] (the body as a whole) when finding it would take a Python step
    for each of more than `MAX_LOCATE_TOKENS` tokens (counting them is C-level)."""
    head = text[:pos]
    if sum(head.count(c) for c in "[]{},:") > MAX_LOCATE_TOKENS:
        return []
    return path_at(text, pos)


def _located(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidRequest:
    """The 400 for a body orjson refused, naming the field where it can."""
    text = raw.decode("utf-8", "replace")  # orjson reports a character offset, not a byte offset
    pos = exc.pos
    if text.startswith(_NON_FINITE, pos):
        param = render_path(_path_near(text, pos))
        return invalid_json(f"{param or 'the body'}: NaN and Infinity are not JSON numbers", param)
    number = _NUMBER.match(text, pos)
    if number and math.isinf(float(number.group())):
        param = render_path(_path_near(text, pos))
        return invalid_json(f"{param or 'the body'}: the number is out of range", param)
    if "depth" not in exc.msg:  # a syntax error: nothing to name, and no scan to pay for
        return invalid_json("the request body is not valid JSON")
    # orjson stops at 1024 levels, somewhere inside the last container: deeper than MAX_DEPTH.
    param = render_path(_path_near(text, pos)[:DEPTH_PARAM_SEGMENTS])
    return invalid_json(f"{param or 'the body'} is nested deeper than {MAX_DEPTH} levels", param)


@dataclass(frozen=True)
class JsonBody:
    """A parsed request body: the object, how many values (all of them) and containers (arrays
    and objects) it holds, and every key that occurs in it at any depth (for the steering-key
    check, `gateway.protocol`)."""

    value: dict[str, Any]
    values: int
    containers: int
    keys: AbstractSet[str]

    def memory_estimate(self, raw_size: int) -> int:
        """An upper estimate of the bytes this body holds while its request is in flight: the
        parsed values, and its text twice (the strings, and the upstream call's JSON)."""
        parsed = VALUE_BYTES * (self.values + len(self.keys)) + CONTAINER_BYTES * self.containers
        return 2 * raw_size + parsed


TOO_DEEP = "too deep"
TOO_MANY = "too many"


def _survey(value: dict[str, Any]) -> tuple[int, int, AbstractSet[str]] | str:
    """(values, containers, distinct keys) of `value`, in one depth-first pass; `TOO_DEEP` past
    `MAX_DEPTH` levels and `TOO_MANY` past `MAX_CONTAINERS` containers, as soon as it sees them.

    One Python step per container, in the order orjson built them (a breadth-first pass jumps
    through memory and was 4x slower); the keys of an object are added in one C-level call.
    Linear in the body, whatever its shape: the recursive generator this replaced re-yielded each
    value through every level above it, and took 7 s for a 4 MiB body nested 62 levels deep.
    """
    keys: set[str] = set()
    stack: list[Any] = [value]
    depths: list[int] = [1]
    containers = 0
    values = 1
    while stack:
        node = stack.pop()
        depth = depths.pop() + 1
        containers += 1
        values += len(node)
        if type(node) is dict:
            keys.update(node)
            node = node.values()
        for child in node:
            if type(child) is dict or type(child) is list:
                if child and depth <= MAX_DEPTH:
                    stack.append(child)
                    depths.append(depth)
                elif depth > MAX_DEPTH:
                    return TOO_DEEP
                else:
                    containers += 1
        if containers > MAX_CONTAINERS:
            return TOO_MANY
    return values, containers, keys


def _deep_path(value: Any, limit: int) -> list[Segment]:
    """The first `DEPTH_PARAM_SEGMENTS` segments of the path to a container nested deeper than
    `limit` (the error path only). Linear: a path stops growing once it is as long as it is shown."""
    stack: list[tuple[Any, tuple[Segment, ...], int]] = [(value, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, dict | list):
                segment = key if isinstance(key, int) else _clean(key)
                here = path if len(path) >= DEPTH_PARAM_SEGMENTS else (*path, segment)
                if depth + 1 > limit:
                    return list(here)
                stack.append((child, here, depth + 1))
    return []


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector. Building (or walking, with a tuple per step) a body of a
    million small containers otherwise sets off collections that rescan all of it again and again:
    5x the parse and 15x the survey, measured (docs/reliability.md). Nothing built meanwhile is
    garbage in a cycle, so pausing loses nothing; the collector goes on where it stopped after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_body(raw: bytes) -> JsonBody:
    """The body as a JSON object, surveyed; a 400 for anything else, or past the limits."""
    if not raw.strip():
        raise invalid_json("the request body is empty; send a JSON object")
    with collector_paused():
        result = _parse(raw)
    if isinstance(result, InvalidRequest):
        raise result
    return result


def _parse(raw: bytes) -> JsonBody | InvalidRequest:
    """A refused body is freed here, while the collector is still paused: freeing it gives the
    collector's count back, and nothing rescans it (an exception's traceback would hold it)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _located(raw, exc)
    if not isinstance(value, dict):
        return invalid_json("the request body must be a JSON object")
    survey = _survey(value)
    if survey == TOO_DEEP:
        param = render_path(_deep_path(value, MAX_DEPTH))
        return invalid_json(f"{param or 'the body'} is nested deeper than {MAX_DEPTH} levels", param)
    if isinstance(survey, str):
        return invalid_json(f"the request body holds more than {MAX_CONTAINERS:,} arrays and objects")
    values, containers, keys = survey
    return JsonBody(value, values, containers, keys)


def parse_json(raw: bytes) -> dict[str, Any]:
    return parse_body(raw).value
