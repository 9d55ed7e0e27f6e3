"""Hypothesis strategies for spec-valid values of a JSON schema (positive mode), and validators.

What belongs here: `valid(schema, ...)`, a strategy of values valid against one of the vendored
request schemas, and `validator(schema)` for answers. hypothesis-jsonschema is in the lock, but its
0.23.1 cannot generate objects with the Hypothesis the lock pins (6.170: `many.more()` is gone, so
every object schema with optional properties raises `AttributeError`); this is the subset of JSON
Schema the vendored specifications use (`$ref`, `allOf`/`anyOf`/`oneOf`, `type`, `enum`/`const`,
`properties`/`required`/`additionalProperties`, `items`/`minItems`/`maxItems`, numeric and length
bounds), small sizes, and a depth past which optional properties are left out. Every drawn value
is checked against the schema with `jsonschema` (draws that are not valid are discarded), so a gap
in this subset costs draws, never a spec-invalid request.

The specifications carry OpenAPI 3.0's `nullable: true` inside an OpenAPI 3.1 document, which JSON
Schema ignores: `nullable_as_null` rewrites it as a `null` alternative, for drawing and validating.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
from hypothesis import strategies as st

Strategy = st.SearchStrategy[Any]
MAX_DEPTH = 7
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def nullable_as_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` where `nullable: true` is a `null` alternative (JSON Schema's spelling)."""

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {
            key: (fix(value) if key != "properties" else {k: fix(v) for k, v in value.items()})
            for key, value in node.items()
            if key != "nullable"
        }
        if node.get("nullable") is True:
            if isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
                if "enum" in out:
                    out["enum"] = [*out["enum"], None]
            else:
                return {"anyOf": [out, {"type": "null"}]}
        return out

    fixed: dict[str, Any] = fix(copy.deepcopy(schema))
    return fixed


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(nullable_as_null(schema))


class _Builder:
    def __init__(self, defs: Mapping[str, Any], overrides: Mapping[str, Strategy]) -> None:
        self.defs = defs
        self.overrides = overrides  # top-level property -> strategy (the model alias, for one)
        self.cache: dict[tuple[str, int], Strategy] = {}

    def ref(self, name: str, depth: int) -> Strategy:
        key = (name, depth)
        if key not in self.cache:
            self.cache[key] = st.deferred(lambda: self.build(self.defs[name], depth))
        return self.cache[key]

    def build(self, schema: Any, depth: int) -> Strategy:
        if schema is True or schema == {}:
            return st.one_of(st.none(), st.booleans(), st.integers(-5, 5), TEXT)
        if "$ref" in schema:
            return self.ref(schema["$ref"].rsplit("/", 1)[-1], depth)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "allOf" in schema:
            return self.build(self._merge(schema), depth)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                branches = schema[keyword]
                if depth >= MAX_DEPTH:
                    simple = [
                        b for b in branches if isinstance(b, dict) and b.get("type") in ("null", "string")
                    ]
                    branches = simple or branches[:1]
                return st.one_of([self.build(branch, depth) for branch in branches])
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.build({**schema, "type": k}, depth) for k in kind])
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return st.integers(int(schema.get("minimum", -1000)), int(schema.get("maximum", 100_000)))
        if kind == "number":
            return st.floats(
                schema.get("minimum", -1000.0),
                schema.get("maximum", 1000.0),
                allow_nan=False,
                allow_infinity=False,
            )
        if kind == "string":
            low = schema.get("minLength", 0)
            return st.text(max_size=max(low, 12), min_size=low) if low else TEXT
        if kind == "array" or "items" in schema:
            low = schema.get("minItems", 0)
            high = min(schema.get("maxItems", low + 2), low + 2 if depth < MAX_DEPTH else low)
            return st.lists(self.build(schema.get("items", {}), depth + 1), min_size=low, max_size=high)
        if kind == "object" or "properties" in schema or "additionalProperties" in schema:
            return self._object(schema, depth)
        return st.one_of(st.none(), st.booleans(), TEXT)

    def _merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`allOf` of object schemas (the only use in the specifications) as one object schema."""
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            while "$ref" in part:
                part = self.defs[part["$ref"].rsplit("/", 1)[-1]]
            if "allOf" in part:
                part = self._merge(part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return merged

    def _object(self, schema: dict[str, Any], depth: int) -> Strategy:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if not properties:
            extra = schema.get("additionalProperties", {})
            values = self.build(extra if isinstance(extra, dict) else {}, depth + 1)
            return st.dictionaries(
                st.text(min_size=1, max_size=8), values, max_size=2 if depth < MAX_DEPTH else 0
            )
        top = depth == 0
        strategies = {
            name: self.overrides[name] if top and name in self.overrides else self.build(sub, depth + 1)
            for name, sub in properties.items()
        }
        fixed = {name: strategies[name] for name in properties if name in required}
        optional = {} if depth >= MAX_DEPTH else {n: s for n, s in strategies.items() if n not in required}
        return st.fixed_dictionaries(fixed, optional=optional)


def valid(
    schema: dict[str, Any],
    *,
    overrides: Mapping[str, Strategy] | None = None,
    keep: Callable[[Any], bool] = bool,
) -> Strategy:
    """Values valid against `schema` (`{"$defs": ..., "$ref": ...}`), `overrides` replacing top-level
    properties' strategies (they must stay valid), `keep` filtering further."""
    fixed = nullable_as_null(schema)
    check = jsonschema.Draft202012Validator(fixed)
    builder = _Builder(fixed["$defs"], overrides or {})
    return builder.build(fixed, 0).filter(lambda value: check.is_valid(value) and keep(value))
