"""The vendored request parts of the providers' specifications, and walks over them.

What belongs here: loading `tests/spec/openai.json` and `tests/spec/anthropic.json` (written by
`scripts/refresh_spec.py`), every property path a request schema defines, and the JSON schema of
one request or response (a root `$ref` over the shared `$defs`) for hypothesis-jsonschema and for
validating answers. Paths are written as Sluice renders them in errors: `messages[].content[].text`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# API name -> (vendored file, request schema key in its `requests`)
APIS: dict[str, tuple[str, str]] = {
    "chat": ("openai.json", "chat"),
    "embeddings": ("openai.json", "embeddings"),
    "responses": ("openai.json", "responses"),
    "messages": ("anthropic.json", "messages"),
    "count_tokens": ("anthropic.json", "count_tokens"),
}


@cache
def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / name).read_text())
    return loaded


def request_schema(api: str) -> dict[str, Any]:
    """A self-contained JSON schema of `api`'s request body."""
    file, key = APIS[api]
    doc = document(file)
    return {"$defs": doc["$defs"], "$ref": f"#/$defs/{doc['requests'][key]}"}


def response_schema(name: str) -> dict[str, Any]:
    doc = document("openai.json")
    return {"$defs": doc["$defs"], "$ref": f"#/$defs/{doc['responses'][name]}"}


Branch = tuple[dict[str, Any], frozenset[str]]


def _branches(schema: dict[str, Any], defs: dict[str, Any], seen: frozenset[str]) -> list[Branch]:
    """`schema` and every schema it is made of (`$ref`, `allOf`, `anyOf`, `oneOf`), each with the
    refs followed to reach it (a ref already on the way is not followed again: recursive types)."""
    out: list[Branch] = []
    stack = [(schema, seen)]
    while stack:
        node, refs = stack.pop()
        out.append((node, refs))
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in refs:
                stack.append((defs[name], refs | {name}))
        for keyword in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(keyword, ()):
                stack.append((sub, refs))
    return out


@cache
def property_paths(api: str) -> frozenset[str]:
    """Every property path `api`'s request schema defines (not the keys of maps, which are the
    client's own: `metadata`, `logit_bias`)."""
    file, key = APIS[api]
    doc = document(file)
    defs = doc["$defs"]
    paths: set[str] = set()
    visited: set[tuple[str, int]] = set()
    stack: list[tuple[dict[str, Any], str, frozenset[str]]] = [(defs[doc["requests"][key]], "", frozenset())]
    while stack:
        schema, prefix, seen = stack.pop()
        if (prefix, id(schema)) in visited or prefix.count(".") > 12:
            continue
        visited.add((prefix, id(schema)))
        for node, refs in _branches(schema, defs, seen):
            for name, sub in node.get("properties", {}).items():
                path = f"{prefix}.{name}" if prefix else name
                paths.add(path)
                stack.append((sub, path, refs))
            items = node.get("items")
            if isinstance(items, dict):
                stack.append((items, prefix + "[]", refs))
    return frozenset(paths)
