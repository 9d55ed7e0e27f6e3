"""Deterministic content for the fake upstream's replies, shared by all three wires.

What belongs here: the simulated reply text and how it is split into stream chunks, the
"tricky" text used to test SSE re-framing, minimal JSON instances for ``response_format`` schemas,
deterministic embedding vectors, and token-count estimates.  Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from typing import Any, Final

import orjson

DEFAULT_CHUNKS: Final = 20
EMBEDDING_DIMS: Final = 8
# Newlines, an SSE-looking line and multibyte characters (2-, 3- and 4-byte UTF-8).
TRICKY_TEXT: Final = "line one\n\ndata: [DONE]\n\nevent: ping\r\n: caf\u00e9 \u20ac \U0001f389 \u65e5\u672c"
_FILLER: Final = " ok"
_MAX_SCHEMA_DEPTH: Final = 12


def simulated_text(model: str, chunks: int) -> str:
    """``Simulated reply from <model>.``, padded so it splits into ``chunks`` non-empty pieces."""
    text = f"Simulated reply from {model}."
    if len(text) < chunks:
        text += _FILLER * ((chunks - len(text) + len(_FILLER) - 1) // len(_FILLER))
    return text


def split_text(text: str, pieces: int) -> list[str]:
    """Split into at most ``pieces`` nearly equal, non-empty parts (one empty part for "")."""
    count = max(1, min(pieces, len(text)))
    size = len(text)
    return [text[i * size // count : (i + 1) * size // count] for i in range(count)]


def estimate_tokens(text_or_bytes: str | bytes) -> int:
    return max(1, len(text_or_bytes) // 4)


def text_of_content(content: object) -> str:
    """Text of an OpenAI/Anthropic message ``content`` (a string or a list of text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def last_user_text(messages: object, role_key: str = "role", user: str = "user") -> str:
    """The last user message's text in an OpenAI or Anthropic ``messages`` list."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get(role_key) == user:
            return text_of_content(message.get("content"))
    return ""


def last_gemini_user_text(contents: object) -> str:
    if not isinstance(contents, list):
        return ""
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return text_of_content(content.get("parts"))
    return ""


def json_text_for_schema(schema: object) -> str:
    """A small JSON document; a minimal instance of ``schema`` when one is given."""
    if not isinstance(schema, Mapping):
        return '{"result":"simulated"}'
    value = sample_from_schema(schema, schema, 0)
    return orjson.dumps(value).decode()


def sample_from_schema(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    """A minimal value that satisfies common JSON-schema shapes (types, enums, $ref, anyOf)."""
    if depth > _MAX_SCHEMA_DEPTH:
        return None
    schema = _resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf", "any_of"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return sample_from_schema(options[0], root, depth + 1)
    return _sample_typed(schema, root, depth)


def _sample_typed(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind is not None else ("object" if "properties" in schema else "")
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {
            name: sample_from_schema(sub, root, depth + 1)
            for name, sub in props.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items")
        count = int(schema.get("minItems", 0) or 0)
        return [sample_from_schema(items, root, depth + 1) for _ in range(count)] if items else []
    return {"string": "simulated", "integer": 0, "number": 0, "boolean": False}.get(kind)


def _resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def embedding_vector(item: object) -> list[float]:
    """Eight floats in [-1, 1) from a hash of the input; exact in float32 (multiples of 1/128)."""
    digest = hashlib.sha256(orjson.dumps(item)).digest()
    return [byte / 128.0 - 1.0 for byte in digest[:EMBEDDING_DIMS]]


def embedding_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_inputs(value: object) -> list[object]:
    """OpenAI ``input``: a string, a token list, or a list of either -> one item per vector."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return list(value)
    return [value]
