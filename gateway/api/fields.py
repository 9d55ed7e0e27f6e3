"""The field table: what Sluice does with every request field the providers' specifications define.

What belongs here: one table per API (Chat Completions, Embeddings, Responses, Anthropic Messages),
as data. Each entry is a property path (`messages[].role`, `prompt_cache_options.ttl`; `[]` is
"every item", and a path starting with `**.` matches that suffix at any depth) and one of:

- `passed`: accepted and passed upstream, with the validation Sluice applies;
- `data_path`: a request feature that moves data (DESIGN.md "Data paths"), judged by the policy
  under one of the binding feature ids;
- `refused`: answered 400, with the reason (it steers the upstream or credentials, or Sluice cannot
  honour it);
- `extension`: Sluice's own request fields (`privacy`, OpenRouter's `provider`), never sent upstream.

A top-level entry covers its whole subtree; a nested entry is listed where it matters: keys the
runtime checks one by one (`messages[].*`), and spec-defined keys whose names the forbidden-key walk
would otherwise refuse (`prompt_cache_options.ttl` shares its name with a litellm keyword).
`gateway.api.openai_protocol` builds its allowlists from these tables; `tests/spec/` fails when the
vendored specifications (`tests/spec/*.json`) define a field a table does not classify, and
`scripts/fields_doc.py` publishes the tables as `docs/fields.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

# DESIGN.md "Data paths" (binding ids).
Feature = Literal[
    "stored_response", "extended_cache", "server_web_search", "server_code_execution", "remote_mcp"
]


class Disposition(StrEnum):
    PASSED = "passed"
    DATA_PATH = "data_path"
    REFUSED = "refused"
    EXTENSION = "extension"


class Api(StrEnum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MESSAGES = "messages"


@dataclass(frozen=True, slots=True)
class Field:
    disposition: Disposition
    note: str  # the validation (passed), how the feature is recognised (data path), the reason (refused)
    features: tuple[Feature, ...] = ()


def passed(validation: str) -> Field:
    return Field(Disposition.PASSED, validation)


def data_path(*features: Feature, when: str) -> Field:
    return Field(Disposition.DATA_PATH, when, features)


def refused(reason: str) -> Field:
    return Field(Disposition.REFUSED, reason)


def extension(what: str) -> Field:
    return Field(Disposition.EXTENSION, what)


_ANY = passed("passed as sent")
_STRING_ID = passed("a string")
_EXTENSIONS = {
    "privacy": extension(
        "Sluice's own: `{policy, on_violation}` tightens the policy for this request; "
        "removed before the upstream call"
    ),
    "provider": extension(
        "OpenRouter's routing object: `data_collection: deny` and `zdr: true` tighten the policy; "
        "every other key is refused (`forbidden_parameter`: Sluice routes by its config); "
        "removed before the upstream call"
    ),
}

CHAT: dict[str, Field] = {
    "model": passed("a model alias the key may use; replaced by the chosen deployment's model id"),
    "messages": passed(
        "a non-empty array of at most 10,000 objects; content a string or an array of typed parts; "
        "image and file URLs only to providers that fetch them themselves, otherwise 400"
    ),
    "messages[].role": passed("one of developer, system, user, assistant, tool, function"),
    "messages[].content": passed("a string, null or an array of objects with a `type`"),
    "messages[].name": _ANY,
    "messages[].tool_calls": _ANY,
    "messages[].tool_call_id": _ANY,
    "messages[].function_call": _ANY,
    "messages[].refusal": _ANY,
    "messages[].audio": _ANY,
    "frequency_penalty": passed("a number in [-2, 2]"),
    "presence_penalty": passed("a number in [-2, 2]"),
    "logit_bias": _ANY,
    "logprobs": _ANY,
    "top_logprobs": passed("an integer in [0, 20]"),
    "max_tokens": passed("an integer in [1, 10,000,000]"),
    "max_completion_tokens": passed("an integer in [1, 10,000,000]"),
    "n": passed("an integer in [1, 128]"),
    "response_format": passed("an object (its `json_schema.schema` is the client's own JSON schema)"),
    "seed": passed("a 64-bit integer"),
    "stop": passed("a string or an array of at most 16 strings"),
    "stream": passed("a boolean"),
    "stream_options": passed("an object; removed when `stream` is not true (OpenAI refuses it there)"),
    "temperature": passed("a number in [0, 2]"),
    "top_p": passed("a number in [0, 1]"),
    "tools": passed("an array of at most 512 tools (`function.parameters` is the client's own JSON schema)"),
    "tool_choice": _ANY,
    "parallel_tool_calls": _ANY,
    "functions": passed("an array of at most 512 functions (deprecated by OpenAI, still served)"),
    "function_call": _ANY,
    "user": _STRING_ID,
    "safety_identifier": passed("a string: a stable id of the end user, for the provider's abuse checks"),
    "prompt_cache_key": passed("a string: routes to a warm prompt cache; no retention beyond its"),
    "moderation": passed("an object: the provider's own moderation of this request, on the same channel"),
    "modalities": _ANY,
    "audio": _ANY,
    "prediction": _ANY,
    "reasoning_effort": _ANY,
    "service_tier": _ANY,
    "verbosity": _ANY,
    "store": data_path("stored_response", when="`store: true`"),
    "metadata": data_path("stored_response", when="kept with a stored completion"),
    "prompt_cache_retention": data_path("extended_cache", when="`24h` (beyond the in-memory default)"),
    "prompt_cache_options": data_path("extended_cache", when="`ttl` beyond the provider's default"),
    "prompt_cache_options.ttl": data_path("extended_cache", when="a retention beyond the provider's default"),
    "web_search_options": data_path("server_web_search", when="present: the provider searches the web"),
    **_EXTENSIONS,
}

EMBEDDINGS: dict[str, Field] = {
    "model": passed("a model alias the key may use; replaced by the chosen deployment's model id"),
    "input": passed("a string, at most 2,048 strings, token ids, or arrays of token ids"),
    "encoding_format": passed("`float` or `base64`"),
    "dimensions": passed("an integer in [1, 65,536]"),
    "user": _STRING_ID,
    **_EXTENSIONS,
}

_TOOLS_BY_TYPE = "by `tools[].type`: web search, code interpreter / file search, `mcp`"
RESPONSES: dict[str, Field] = {
    "model": passed("a model alias the key may use; replaced by the chosen deployment's model id"),
    "input": _ANY,
    "instructions": _ANY,
    "previous_response_id": passed(
        "sent to the deployment that produced that response (the ledger knows which); "
        "400 when Sluice does not know it"
    ),
    "include": _ANY,
    "max_output_tokens": _ANY,
    "max_tool_calls": _ANY,
    "moderation": passed("an object: the provider's own moderation of this request, on the same channel"),
    "parallel_tool_calls": _ANY,
    "prompt": passed("a reference to a prompt template kept at the provider"),
    "prompt_cache_key": _STRING_ID,
    "reasoning": _ANY,
    "safety_identifier": _STRING_ID,
    "service_tier": _ANY,
    "stream": _ANY,
    "stream_options": _ANY,
    "temperature": _ANY,
    "text": _ANY,
    "tool_choice": _ANY,
    "top_logprobs": _ANY,
    "top_p": _ANY,
    "truncation": _ANY,
    "user": _STRING_ID,
    "context_management": _ANY,
    "store": data_path("stored_response", when="`store: true`, or absent (stored by default)"),
    "background": data_path("stored_response", when="`background: true` (stored to be polled)"),
    "conversation": data_path("stored_response", when="present: its items are kept at the provider"),
    "metadata": data_path("stored_response", when="kept with the stored response"),
    "prompt_cache_retention": data_path("extended_cache", when="`24h`"),
    "prompt_cache_options": data_path("extended_cache", when="`ttl` beyond the provider's default"),
    "prompt_cache_options.ttl": data_path("extended_cache", when="a retention beyond the provider's default"),
    "tools": data_path("server_web_search", "server_code_execution", "remote_mcp", when=_TOOLS_BY_TYPE),
    "**.tools[].headers": data_path("remote_mcp", when="sent to the MCP server the client names"),
    **_EXTENSIONS,
}

MESSAGES: dict[str, Field] = {
    "model": passed("a model alias the key may use; replaced by the chosen deployment's model id"),
    "messages": _ANY,
    "max_tokens": _ANY,
    "system": _ANY,
    "metadata": passed("`user_id` only: an opaque id of the end user, not stored content"),
    "output_config": _ANY,
    "service_tier": _ANY,
    "stop_sequences": _ANY,
    "temperature": _ANY,
    "thinking": _ANY,
    "tool_choice": _ANY,
    "top_k": _ANY,
    "top_p": _ANY,
    "cache_control": data_path("extended_cache", when="`ttl: 1h`"),
    "**.cache_control.ttl": data_path("extended_cache", when="`1h` at any depth (messages, system, tools)"),
    "container": data_path("server_code_execution", when="present: a provider-side code-execution container"),
    "tools": data_path(
        "server_web_search",
        "server_code_execution",
        when="by `tools[].type`: `web_search_*`, `web_fetch_*`, `code_execution_*`",
    ),
    "inference_geo": refused(
        "chooses where the provider processes the data; Sluice judges residency by the deployment's facts"
    ),
    "anthropic-user-profile-id": refused(
        "a header in the anthropic SDK (`user_profile_id`), not a body field: attributes the request to a "
        "provider-side user profile, which Sluice does not manage"
    ),
    **_EXTENSIONS,
}

TABLES: MappingProxyType[Api, dict[str, Field]] = MappingProxyType(
    {Api.CHAT: CHAT, Api.EMBEDDINGS: EMBEDDINGS, Api.RESPONSES: RESPONSES, Api.MESSAGES: MESSAGES}
)


def _nested(path: str) -> bool:
    return "." in path or "[" in path


def top_level(api: Api, *dispositions: Disposition) -> frozenset[str]:
    """The top-level field names of `api` with one of `dispositions`."""
    return frozenset(
        name for name, field in TABLES[api].items() if not _nested(name) and field.disposition in dispositions
    )


def accepted(api: Api) -> frozenset[str]:
    """The top-level fields Sluice accepts and sends upstream (passed or judged as a data path)."""
    return top_level(api, Disposition.PASSED, Disposition.DATA_PATH) - {"model"}


def nested_keys(api: Api, parent: str) -> frozenset[str]:
    """The keys listed one level under `parent` (`messages[]` gives the message keys)."""
    prefix = parent + "."
    return frozenset(
        name[len(prefix) :]
        for name in TABLES[api]
        if name.startswith(prefix) and not _nested(name[len(prefix) :])
    )


@dataclass(frozen=True, slots=True)
class SpecPaths:
    """The nested paths of a table that are accepted: exact ones, and `**.` suffixes."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (
            path in self.exact or any(path == s[1:] or path.endswith(s) for s in self.suffixes)
        )


def accepted_paths(api: Api) -> SpecPaths:
    """The nested paths the specification defines and Sluice accepts: the forbidden-key walk never
    refuses a key there, whatever its name."""
    names = [
        name
        for name, field in TABLES[api].items()
        if _nested(name) and field.disposition in (Disposition.PASSED, Disposition.DATA_PATH)
    ]
    return SpecPaths(
        frozenset(n for n in names if not n.startswith("**.")),
        tuple(n[2:] for n in names if n.startswith("**.")),
    )
