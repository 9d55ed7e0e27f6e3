"""Maximum-size request bodies of the shapes that cost a JSON gateway the most to parse and check.

What belongs here: `SHAPES`, builders of chat bodies of a chosen size (the 4 MiB cap by default)
shared by `tests/gateway/test_body_cost.py`, the fuzz generators (`tests/gateway/fuzzing.py`) and
`scripts/parse_cost.py`, which records what each costs in docs/reliability.md. Each body is valid
JSON; whether Sluice accepts it is for the gateway to say (the expected status is recorded here
so that a change shows). Nothing here starts an app or a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_BODY = 4 * 1024 * 1024
MODEL = "gpt-4o-mini"
HEAD = b'{"model":"' + MODEL.encode() + b'","messages":[{"role":"user","content":'
PART = b'{"type":"text","text":"a"}'


def nested(depth: int) -> bytes:
    """`depth` arrays, one inside the other."""
    return b"[" * depth + b"]" * depth


def fill(prefix: bytes, unit: bytes, suffix: bytes, size: int) -> bytes:
    """`prefix`, as many comma-separated `unit`s as fit in `size` bytes in all, `suffix`."""
    count = max(1, (size - len(prefix) - len(suffix) + 1) // (len(unit) + 1))
    return prefix + b",".join([unit] * count) + suffix


def in_part(field: bytes, unit: bytes, size: int) -> bytes:
    """One user message with one text part whose extra field `field` is an array of `unit`s."""
    prefix = HEAD + b'[{"type":"text","text":"a","' + field + b'":['
    return fill(prefix, unit, b"]}]}]}", size)


@dataclass(frozen=True)
class Shape:
    name: str
    what: str
    build: Callable[[int], bytes]
    status: int  # what Sluice answers (the fake upstream answers 200 to what it is sent)


SHAPES: tuple[Shape, ...] = (
    Shape(
        "deep-unknown-field",
        "an unknown field holding arrays nested 62 levels deep, repeated (issue 11's attack)",
        lambda size: fill(
            b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"x":[',
            nested(61),
            b"]}",
            size,
        ),
        400,
    ),
    Shape(
        "deep-in-part",
        "the same nesting inside a content part's extra field",
        lambda size: in_part(b"x", nested(58), size),
        400,
    ),
    Shape(
        "empty-arrays",
        "a content part's field holding `[],[],...`",
        lambda size: in_part(b"x", b"[]", size),
        400,
    ),
    Shape(
        "empty-objects",
        "a content part's field holding `{},{},...`",
        lambda size: in_part(b"x", b"{}", size),
        400,
    ),
    Shape(
        "content-parts",
        'one message of `{"type":"text","text":"a"}` parts',
        lambda size: fill(HEAD + b"[", PART, b"]}]}", size),
        200,
    ),
    Shape(
        "many-messages",
        '`{"role":"user","content":"a"}` messages (past the 10,000 cap)',
        lambda size: fill(
            b'{"model":"gpt-4o-mini","messages":[', b'{"role":"user","content":"a"}', b"]}", size
        ),
        400,
    ),
    Shape(
        "10k-messages",
        "10,000 messages (the cap), their text filling the body",
        lambda size: (
            b'{"model":"gpt-4o-mini","messages":['
            + b",".join(
                [b'{"role":"user","content":"' + b"a" * max(1, (size - 64) // 10_000 - 30) + b'"}'] * 10_000
            )
            + b"]}"
        ),
        200,
    ),
    Shape(
        "distinct-keys",
        "a content part's extra object with distinct keys `k0`, `k1`, ...",
        lambda size: _distinct_keys(size),
        200,
    ),
    Shape(
        "short-strings",
        'a content part\'s field holding `"ab","ab",...`',
        lambda size: in_part(b"x", b'"ab"', size),
        200,
    ),
    Shape(
        "floats",
        "a content part's field holding `0.5,0.5,...`",
        lambda size: in_part(b"x", b"0.5", size),
        200,
    ),
    Shape(
        "long-string",
        "one message whose content is one string",
        lambda size: HEAD + b'"' + b"a" * (size - len(HEAD) - 5) + b'"}]}',
        200,
    ),
    Shape(
        "escaped-string",
        "one string of `\\u00e9` escapes",
        lambda size: HEAD + b'"' + b"\\u00e9" * ((size - len(HEAD) - 5) // 6) + b'"}]}',
        200,
    ),
    Shape(
        "forbidden-key-last",
        "content parts, the last one carrying `api_base`",
        lambda size: fill(HEAD + b"[", PART, b',{"type":"text","text":"a","api_base":"x"}]}]}', size),
        400,
    ),
    Shape(
        "nan-last",
        "empty arrays in a content part, then `NaN` (not JSON)",
        lambda size: fill(HEAD + b'[{"type":"text","text":"a","x":[', b"[]", b",NaN]}]}]}", size),
        400,
    ),
    Shape(
        "too-deep-last",
        "content parts, then one value nested 65 levels",
        lambda size: fill(
            HEAD + b"[", PART, b',{"type":"text","text":"a","x":' + nested(65) + b"}]}]}", size
        ),
        400,
    ),
)


def _distinct_keys(size: int) -> bytes:
    prefix = HEAD + b'[{"type":"text","text":"a","x":{'
    keys: list[bytes] = []
    used = len(prefix) + len(b"}}]}]}")
    i = 0
    while True:
        key = b'"k%d":0' % i
        if used + len(key) + 1 > size:
            break
        keys.append(key)
        used += len(key) + 1
        i += 1
    return prefix + b",".join(keys) + b"}}]}]}"


def shape(name: str) -> Shape:
    return next(s for s in SHAPES if s.name == name)
