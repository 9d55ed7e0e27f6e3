"""Refresh the vendored request parts of the providers' published API specifications.

    .venv/bin/python scripts/refresh_spec.py --openapi-git /path/to/openai-openapi.git
    .venv/bin/python scripts/refresh_spec.py --openapi-file openapi.json --commit <sha> --date <iso>
    .venv/bin/python scripts/refresh_spec.py --anthropic-only

The procedure (docs/fields.md, "Refreshing"):

1. Fetch OpenAI's specification: `git clone https://github.com/openai/openai-openapi` (a bare clone
   will do) and pass its git directory as `--openapi-git`; the script reads `openapi.json` at HEAD
   and records the commit and its date.
2. Extract: the request schemas (`CreateChatCompletionRequest`, `CreateEmbeddingRequest`,
   `CreateResponse`), the response schemas the property-based tests validate against, and every
   schema they reference, with `$ref`s rewritten to `#/$defs/<name>` and documentation keywords
   dropped, into `tests/spec/openai.json`. The Anthropic Messages request types come from the
   installed anthropic SDK (`MessageCreateParams`, `MessageCountTokensParams` and every TypedDict
   they reach), turned into the same JSON-schema shape, into `tests/spec/anthropic.json`.
3. Regenerate the table: `docs/fields.md` from `gateway/api/fields.py` (`scripts/fields_doc.py`).
4. Run the drift test: `tests/spec/test_spec_drift.py` names every field the new specification
   defines that `gateway/api/fields.py` does not classify. Classify each (pass, data path or
   refusal with its reason), then run `tests/spec/` again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typing_extensions

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "tests" / "spec"
OPENAI_REQUESTS = ("CreateChatCompletionRequest", "CreateEmbeddingRequest", "CreateResponse")
OPENAI_RESPONSES = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "Response",
)
# Keywords that document a schema without constraining it: dropped to keep the copy small.
DOC_KEYWORDS = frozenset({"description", "title", "example", "examples", "deprecated", "externalDocs"})


def _compact(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in DOC_KEYWORDS or key.startswith("x-"):
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = "#/$defs/" + value.rsplit("/", 1)[-1]
            elif key == "properties" and isinstance(value, dict):
                # a property may be named `description`: property names are kept as they are
                out[key] = {name: _compact(sub) for name, sub in value.items()}
            else:
                out[key] = _compact(value)
        return out
    if isinstance(node, list):
        return [_compact(item) for item in node]
    return node


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref.rsplit("/", 1)[-1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def extract_openai(document: dict[str, Any], *, commit: str, date: str) -> dict[str, Any]:
    schemas: dict[str, Any] = document["components"]["schemas"]
    wanted = list(OPENAI_REQUESTS + OPENAI_RESPONSES)
    defs: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in defs:
            continue
        defs[name] = _compact(schemas[name])
        wanted.extend(sorted(_references(defs[name]) - defs.keys()))
    return {
        "source": {
            "repository": "https://github.com/openai/openai-openapi",
            "path": "openapi.json",
            "commit": commit,
            "date": date,
            "openapi": document.get("openapi"),
            "version": document.get("info", {}).get("version"),
        },
        "requests": {
            "chat": "CreateChatCompletionRequest",
            "embeddings": "CreateEmbeddingRequest",
            "responses": "CreateResponse",
        },
        "responses": {
            "chat": "CreateChatCompletionResponse",
            "chat_stream": "CreateChatCompletionStreamResponse",
            "embeddings": "CreateEmbeddingResponse",
            "responses": "Response",
        },
        "$defs": dict(sorted(defs.items())),
    }


class _TypedDictSchemas:
    """JSON schemas of the anthropic SDK's request TypedDicts, by typing introspection."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def of(self, hint: Any) -> dict[str, Any]:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Annotated:
            return self.of(args[0])
        if origin in (typing.Required, typing.NotRequired):
            return self.of(args[0])
        if hint is type(None):
            return {"type": "null"}
        if hint is str:
            return {"type": "string"}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer"}
        if hint is float:
            return {"type": "number"}
        if hint is object or hint is typing.Any:
            return {}
        if origin is typing.IO or hint is typing.IO or origin is os.PathLike or hint is os.PathLike:
            return {"type": "string"}  # a file the SDK sends base64-encoded
        if isinstance(hint, type) and hasattr(hint, "model_fields"):
            return {"type": "object"}  # a response model echoed back; its param twin is described
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(arg) for arg in args]}
        if origin is not None and getattr(origin, "__name__", "") in {"Iterable", "Sequence", "list", "List"}:
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is not None and getattr(origin, "__name__", "") in {"dict", "Dict", "Mapping"}:
            return {"type": "object", "additionalProperties": self.of(args[1]) if args else {}}
        if typing_extensions.is_typeddict(hint):
            return self._typeddict(hint)
        raise TypeError(f"unsupported type in the anthropic SDK's request types: {hint!r}")

    def _typeddict(self, cls: Any) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # a placeholder: recursive types refer to themselves
            hints = typing.get_type_hints(cls, include_extras=True)
            properties: dict[str, Any] = {}
            for field, hint in hints.items():
                wire = _alias(hint) or field
                properties[wire] = self.of(hint)
            required = sorted(
                _alias(hints[field]) or field for field in getattr(cls, "__required_keys__", ())
            )
            schema: dict[str, Any] = {"type": "object", "properties": properties}
            if required:
                schema["required"] = required
            self.defs[name] = schema
        return {"$ref": f"#/$defs/{name}"}


def _alias(hint: Any) -> str | None:
    """The wire name of a field the SDK sends under another name (`PropertyInfo(alias=...)`)."""
    if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Annotated:
        for meta in typing.get_args(hint)[1:]:
            alias = getattr(meta, "alias", None)
            if isinstance(alias, str):
                return alias
    return None


def extract_anthropic() -> dict[str, Any]:
    import anthropic
    from anthropic.types import MessageCountTokensParams, message_create_params

    schemas = _TypedDictSchemas()
    schemas.of(message_create_params.MessageCreateParamsBase)
    schemas.of(MessageCountTokensParams)
    return {
        "source": {
            "package": "anthropic",
            "version": anthropic.__version__,
            "types": ["anthropic.types.MessageCreateParams", "anthropic.types.MessageCountTokensParams"],
            "note": "wire names (PropertyInfo aliases applied)",
        },
        "requests": {"messages": "MessageCreateParamsBase", "count_tokens": "MessageCountTokensParams"},
        "$defs": dict(sorted(schemas.defs.items())),
    }


def _dump(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=None, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--openapi-git", type=Path, help="a clone (bare or not) of openai/openai-openapi")
    source.add_argument("--openapi-file", type=Path, help="openapi.json (with --commit, --date)")
    source.add_argument("--anthropic-only", action="store_true", help="refresh the Anthropic part only")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--date", default="unknown")
    parser.add_argument("--no-test", action="store_true", help="skip the drift test")
    args = parser.parse_args()
    SPEC_DIR.mkdir(parents=True, exist_ok=True)
    if args.openapi_git is not None:
        git = ["git", "--git-dir", str(args.openapi_git)]
        if (args.openapi_git / ".git").is_dir():
            git = ["git", "-C", str(args.openapi_git)]
        text = subprocess.run([*git, "show", "HEAD:openapi.json"], check=True, capture_output=True).stdout
        commit, date = (
            subprocess.run([*git, "log", "-1", "--format=%H %cI"], check=True, capture_output=True, text=True)
            .stdout.strip()
            .split(" ")
        )
        _dump(SPEC_DIR / "openai.json", extract_openai(json.loads(text), commit=commit, date=date))
    elif args.openapi_file is not None:
        document = json.loads(args.openapi_file.read_text())
        _dump(SPEC_DIR / "openai.json", extract_openai(document, commit=args.commit, date=args.date))
    _dump(SPEC_DIR / "anthropic.json", extract_anthropic())
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fields_doc.py")], check=True)
    if args.no_test:
        return 0
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "spec")],
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
