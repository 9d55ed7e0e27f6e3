"""Wire models of the requests Sluice accepts, and the allowlist that builds upstream arguments.

What belongs here: turning a parsed JSON body (`gateway.server.jsonbody`) into a validated request
(unknown top-level fields rejected, steering fields refused at any depth, numbers bounded, the
lists that set an upstream's work counted: messages, tools, stop sequences, embedding inputs),
Sluice's own request extensions (`privacy`, OpenRouter's `provider`), and `upstream_body()`, which
returns only allowlisted OpenAI fields. The request body is never splatted into an upstream call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from itertools import repeat
from operator import is_
from typing import Any, Final

from gateway.api.fields import Api, Disposition, SpecPaths, accepted, accepted_paths, nested_keys, top_level
from gateway.core.data_paths import detect_chat
from gateway.core.request import ParsedRequest, PrivacyAsk
from gateway.errors import InvalidRequest
from gateway.names import ErrorCode, OnViolation
from gateway.server.jsonbody import JsonBody, collector_paused
from gateway.server.jsonbody import parse_body as parse_body  # re-exported: handlers parse bodies from here
from gateway.server.jsonbody import parse_json as parse_json
from gateway.upstream.litellm_params import LITELLM_PARAMS
from policies.policy import PolicyName

# Fields that would let a client choose where data goes or with which credentials; refused
# at any depth (outside JSON-schema payloads). `litellm_*` and `*callback*` are refused by prefix/substring.
FORBIDDEN_KEYS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "extra_headers",
        "extra_body",
        "extra_query",
        "headers",
        "user_config",
        "model_list",
        "fallbacks",
        "context_window_fallbacks",
        "mock_response",
        "mock_tool_calls",
        "logger_fn",
        "no_log",
        "num_retries",
        "max_retries",
        "timeout",
        "organization",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "aws_profile_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "azure_ad_token",
        "azure_ad_token_provider",
        "input_cost_per_token",
        "output_cost_per_token",
        "ssl_verify",
        "proxy",
        "proxies",
        "http_client",
        "secret_fields",
        "langfuse_host",
        "langsmith_base_url",
        "posthog_api_url",
        "turn_off_message_logging",
        "hf_model_name",
    }
)
FORBIDDEN_PREFIXES = ("litellm_", "langfuse_", "langsmith_", "aws_", "vertex_", "azure_")
FORBIDDEN_PARTS = ("callback",)
# The allowlists come from the field table (`gateway.api.fields`, published as docs/fields.md).
# Fields that move data (`store`, `metadata`, `web_search_options`, `prompt_cache_retention`,
# `prompt_cache_options`, hosted and MCP tools) are data paths (`gateway.core.data_paths`): judged by
# the policy, never dropped silently.
CHAT_DROPPED: frozenset[str] = frozenset()
CHAT_FIELDS = accepted(Api.CHAT) - CHAT_DROPPED
EMBEDDING_FIELDS = accepted(Api.EMBEDDINGS)
EXTENSIONS = top_level(Api.CHAT, Disposition.EXTENSION)
MESSAGE_KEYS = nested_keys(Api.CHAT, "messages[]")
# Nested paths the specification defines: the forbidden-key walk never refuses a key there.
CHAT_PATHS = accepted_paths(Api.CHAT)
EMBEDDING_PATHS = accepted_paths(Api.EMBEDDINGS)
NO_PATHS = SpecPaths(frozenset(), ())
# Top-level objects OpenAI defines whose keys may also be litellm keyword names (`ttl`): there only
# the steering names of `_is_forbidden` are refused, as in `metadata`. The same for `cache_control`
# at any depth (Anthropic's prompt caching, which litellm passes on; a TTL past 5 minutes is the
# `extended_cache` data path).
LENIENT = frozenset({"metadata", "prompt_cache_options"})
LENIENT_ANYWHERE = "cache_control"
MAX_METADATA = 16
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Subtrees that are opaque JSON schemas (tool parameters, structured output): property names there
# are the user's own and never reach a library as keyword arguments.
SchemaPaths = tuple[tuple[str, ...], ...]
SCHEMA_PATHS: SchemaPaths = (
    ("tools", "*", "function", "parameters"),
    ("functions", "*", "parameters"),
    ("response_format", "json_schema", "schema"),
)
# Sluice's own extensions, which refuse every key they do not support themselves (`_privacy_ask`):
# one error for all of them, whatever else a name means (`provider.order` is also a litellm keyword).
SELF_CHECKED = (("provider",),)

# litellm's own keyword arguments that are not OpenAI request fields: refused wherever they appear.
LITELLM_ONLY = LITELLM_PARAMS - (
    CHAT_FIELDS | CHAT_DROPPED | EMBEDDING_FIELDS | MESSAGE_KEYS | {"id", "model"}
)

NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
    "n": (1, 128),
    "max_tokens": (1, 10_000_000),
    "max_completion_tokens": (1, 10_000_000),
    "top_logprobs": (0, 20),
    "seed": (-(2**63), 2**63 - 1),
    "dimensions": (1, 65_536),
}
INTEGER_FIELDS = frozenset({"n", "max_tokens", "max_completion_tokens", "top_logprobs", "seed", "dimensions"})
MAX_MESSAGES = 10_000
MAX_TOOLS = 512
# Bounds on what a client makes the upstream do, above every provider's own (OpenAI: 4 stop
# sequences and 2,048 embedding inputs; Gemini: 5 stop sequences).
MAX_STOP = 16
MAX_EMBEDDING_INPUTS = 2048


# A key's path in the body, innermost step last: (parent, segment), None at the top.
Link = tuple["Link", str] | None


def bad(
    message: str, *, param: str | None = None, code: ErrorCode = ErrorCode.INVALID_VALUE
) -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _is_forbidden(key: str) -> bool:
    lowered = key.lower()
    return (
        lowered in FORBIDDEN_KEYS
        or lowered.startswith(FORBIDDEN_PREFIXES)
        or any(part in lowered for part in FORBIDDEN_PARTS)
    )


def _schema_roots(body: dict[str, Any], schema_paths: SchemaPaths = SCHEMA_PATHS) -> list[Any]:
    """The values at `schema_paths` (a list in the body matches `*`)."""
    found: list[Any] = []
    for pattern in schema_paths:
        nodes: list[Any] = [body]
        for segment in pattern:
            step: list[Any] = []
            for node in nodes:
                if segment == "*" and isinstance(node, list):
                    step.extend(node)
                elif segment == "*" and isinstance(node, dict):
                    step.extend(node.values())
                elif isinstance(node, dict) and segment in node:
                    step.append(node[segment])
            nodes = step
        found += nodes
    return found


def _suspects(keys: AbstractSet[str]) -> set[str]:
    """The keys among `keys` (distinct) that are refused somewhere. A first look in C clears almost
    every body: set operations, and substring searches over all the keys joined by line breaks and
    lowered at once (a key with a line break in it can only raise a false alarm); only a body it
    flags pays a Python check per distinct key (400,000 keys: 90 ms, was 180 ms lowering each)."""
    joined = ("\n" + "\n".join(keys) + "\n").lower()
    if (
        keys.isdisjoint(LITELLM_ONLY)
        and not any(f"\n{prefix}" in joined for prefix in FORBIDDEN_PREFIXES)
        and not any(part in joined for part in FORBIDDEN_PARTS)
        and FORBIDDEN_KEYS.isdisjoint(joined.split("\n"))
    ):
        return set()
    return {key for key in keys if key in LITELLM_ONLY or _is_forbidden(key)}


def _render(link: Link) -> str:
    segments: list[str] = []
    while link is not None:
        link, segment = link
        segments.append(segment)
    return ".".join(reversed(segments)).replace(".*", "[]")


def _locate_forbidden(
    body: dict[str, Any],
    suspects: AbstractSet[str],
    spec_paths: SpecPaths,
    schema_paths: SchemaPaths = SCHEMA_PATHS,
) -> str | None:
    """The first refused key, as `messages[].content[].api_base`, or None. Linear: an object is
    looked into only when it holds a suspect, and a path is a linked pair per step. A key at a path
    the specification defines (`spec_paths`: `prompt_cache_options.ttl`) is the provider's, whatever
    its name."""
    opaque = {id(node) for node in _schema_roots(body, schema_paths) if isinstance(node, dict | list)}
    opaque |= {id(body[key]) for (key,) in SELF_CHECKED if isinstance(body.get(key), dict | list)}
    stack: list[tuple[Any, Link, bool]] = [(body, None, False)]
    while stack:
        node, link, in_metadata = stack.pop()
        if isinstance(node, dict):
            if not suspects.isdisjoint(node):
                for key in node:
                    if (key in LITELLM_ONLY and not in_metadata) or _is_forbidden(key):
                        param = _render((link, key))
                        if param not in spec_paths:
                            return param
            children: Iterable[tuple[str, Any]] = reversed(node.items())
        else:
            children = (("*", child) for child in reversed(node))
        for segment, child in children:
            if isinstance(child, dict | list) and child and id(child) not in opaque:
                metadata = in_metadata or (link is None and segment in LENIENT) or segment == LENIENT_ANYWHERE
                stack.append((child, (link, segment), metadata))
    return None


def _forbidden(param: str) -> InvalidRequest:
    return bad(
        f"parameter {param!r} is not accepted: Sluice chooses upstreams and credentials from its config",
        param=param,
        code=ErrorCode.FORBIDDEN_PARAMETER,
    )


def refuse_forbidden(
    body: JsonBody,
    spec_paths: SpecPaths = NO_PATHS,
    schema_paths: SchemaPaths = SCHEMA_PATHS,
    suspects: AbstractSet[str] | None = None,
) -> None:
    """Refuse a steering key anywhere in the body (outside the schema payloads at `schema_paths`,
    which differ per wire, and the paths the specification defines; in `metadata`, only the names
    of `_is_forbidden`). Linear in the body's
    size, whatever its shape: the keys come from the parser's survey, and the body is walked only
    when one of them is suspect. `suspects`: `suspects_in(body)`, when the caller has it already."""
    if suspects is None:
        suspects = _suspects(body.keys)
    if suspects:
        with collector_paused():  # a tuple per step (see `gateway.server.jsonbody.collector_paused`)
            param = _locate_forbidden(body.value, suspects, spec_paths, schema_paths)
        if param is not None:
            raise _forbidden(param)


def suspects_in(parsed: JsonBody) -> AbstractSet[str]:
    """The keys anywhere in the body that are refused somewhere (see `_suspects`); almost always none."""
    return _suspects(parsed.keys)


def _refuse_top_level(body: dict[str, Any], suspects: AbstractSet[str] | None = None) -> None:
    """The top-level keys only: a steering field is named as such, before it counts as unknown.
    `suspects`: `suspects_in` of the whole body, whose keys hold the top level's: none there, none here
    (every test `_suspects` makes only finds more in more keys), so the usual body is not looked at twice."""
    if suspects is not None and not suspects:
        return
    if _suspects(body.keys()):
        for key in body:
            if key in LITELLM_ONLY or _is_forbidden(key):
                raise _forbidden(key)


def _check_lists(body: dict[str, Any]) -> None:
    """The counts of `tools` and `functions`, before anything walks them."""
    for name in ("tools", "functions"):
        tools = body.get(name)
        if tools is not None and (not isinstance(tools, list) or len(tools) > MAX_TOOLS):
            raise bad(f"{name} must be an array of at most {MAX_TOOLS} entries", param=name)


def bound_text(value: float) -> str:
    """A bound as a client reads it: `10000000`, not `1e+07`; `0.5` as it is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_number(
    name: str,
    value: Any,
    bounds: Mapping[str, tuple[float, float]] = NUMBER_BOUNDS,
    integers: AbstractSet[str] = INTEGER_FIELDS,
) -> None:
    """A numeric field within its wire's `bounds` (an integer where `integers` says so); null passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"{name} must be a number", param=name)
    if name in integers and not isinstance(value, int):
        raise bad(f"{name} must be an integer", param=name)
    low, high = bounds[name]
    if not low <= value <= high:
        raise bad(f"{name} must be between {bound_text(low)} and {bound_text(high)}", param=name)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty array", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise bad(f"at most {MAX_MESSAGES} messages", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role")
        extra = set(message) - MESSAGE_KEYS
        if extra:
            raise bad(
                f"{where} has unsupported field {sorted(extra)[0]!r}", param=f"{where}.{sorted(extra)[0]}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad(f"{where}.content must be a string or an array of parts", param=f"{where}.content")
        if isinstance(content, list) and not _typed_parts(content):
            raise bad(f"{where}.content parts must be objects with a type", param=f"{where}.content")


def _typed_parts(parts: list[Any]) -> bool:
    """Every part an object with a `type` (C-level: a message may hold ~160,000 parts)."""
    objects = all(map(is_, map(type, parts), repeat(dict)))
    return objects and all(map(dict.__contains__, parts, repeat("type")))


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) for s in stop):
        raise bad(f"stop must be a string or an array of at most {MAX_STOP} strings", param="stop")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int for t in value)


def _check_input(value: Any) -> None:
    """A string, an array of strings, one array of token ids, or arrays of token ids."""
    if isinstance(value, str) or _token_ids(value):
        return
    shape = "input must be a string, an array of strings, or arrays of token ids"
    if not isinstance(value, list) or not value:
        raise bad(shape, param="input")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise bad(f"input takes at most {MAX_EMBEDDING_INPUTS} items", param="input")
    if not (all(isinstance(v, str) for v in value) or all(_token_ids(v) for v in value)):
        raise bad(shape, param="input")


def _policy_names(value: Any, param: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise bad(f"{param} must be a policy name or a list of names", param=param)


def _privacy_ask(body: dict[str, Any], header: str | None) -> PrivacyAsk:
    policies: list[str] = list(_policy_names(header, "X-Privacy-Policy")) if header else []
    block = False
    privacy = body.get("privacy")
    if privacy is not None:
        if not isinstance(privacy, dict) or set(privacy) - {"policy", "on_violation"}:
            raise bad("privacy must be an object with 'policy' and/or 'on_violation'", param="privacy")
        if "policy" in privacy:
            policies += _policy_names(privacy["policy"], "privacy.policy")
        on_violation = privacy.get("on_violation")
        if on_violation is not None and on_violation not in (OnViolation.BLOCK, OnViolation.REROUTE):
            raise bad("privacy.on_violation must be 'block' or 'reroute'", param="privacy.on_violation")
        block = on_violation == OnViolation.BLOCK
    provider = body.get("provider")
    if provider is not None:
        if not isinstance(provider, dict):
            raise bad("provider must be an object", param="provider")
        unsupported = set(provider) - {"data_collection", "zdr"}
        if unsupported:
            name = sorted(unsupported)[0]
            raise bad(
                f"provider.{name} is not supported: Sluice routes by its config and policy",
                param=f"provider.{name}",
                code=ErrorCode.FORBIDDEN_PARAMETER,
            )
        collection = provider.get("data_collection")
        if collection not in (None, "allow", "deny"):
            raise bad("provider.data_collection must be 'allow' or 'deny'", param="provider.data_collection")
        if collection == "deny":
            policies.append(PolicyName.NO_TRAINING_ONLY)
        zdr = provider.get("zdr")
        if zdr not in (None, True, False):
            raise bad("provider.zdr must be a boolean", param="provider.zdr")
        if zdr is True:
            policies.append(PolicyName.ZERO_RETENTION)
    return PrivacyAsk(tuple(dict.fromkeys(policies)), block)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise bad("missing required field: model", param="model", code=ErrorCode.MISSING_FIELD)
    if not isinstance(model, str) or not model or len(model) > 256:
        raise bad("model must be a non-empty string", param="model")
    return model


def _split(
    body: dict[str, Any], allowed: frozenset[str], dropped: frozenset[str] = frozenset()
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in allowed:
            fields[key] = value
        elif key == "model" or key in EXTENSIONS or key in dropped:
            continue
        else:
            raise bad(f"unrecognized request argument: {key[:64]!r}", param=key[:64])
    return fields


# Chat fields whose type `parse_chat` checks (in this order: the first wrong one is named).
_CHAT_OBJECTS: Final = ("response_format", "stream_options", "moderation", "prompt_cache_options")
_CHAT_STRINGS: Final = ("user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention")
_CHAT_TYPED: Final = frozenset((*_CHAT_OBJECTS, *_CHAT_STRINGS))


def parse_chat(parsed: JsonBody, *, policy_header: str | None) -> ParsedRequest:
    body = parsed.value
    suspects = suspects_in(parsed)
    # The top level first: a body with an unknown field is refused before anything walks it.
    _refuse_top_level(body, suspects)
    model = _model(body)
    if "messages" not in body:
        raise bad("missing required field: messages", param="messages", code=ErrorCode.MISSING_FIELD)
    fields = _split(body, CHAT_FIELDS, CHAT_DROPPED)
    _check_lists(fields)
    refuse_forbidden(parsed, CHAT_PATHS, suspects=suspects)
    _check_messages(fields["messages"])
    for name in NUMBER_BOUNDS.keys() & fields.keys():
        check_number(name, fields[name])
    _check_stop(fields.get("stop"))
    stream = fields.get("stream")
    if stream is None:  # the specification's `nullable`: null is the default, false
        stream = False
    if not isinstance(stream, bool):
        raise bad("stream must be a boolean", param="stream")
    if not _CHAT_TYPED.isdisjoint(fields):  # most requests set none of them: one C-level look
        for name in _CHAT_OBJECTS:
            if fields.get(name) is not None and not isinstance(fields[name], dict):
                raise bad(f"{name} must be an object", param=name)
        for name in _CHAT_STRINGS:
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise bad(f"{name} must be a string", param=name)
    _check_data_fields(fields)
    if not stream:
        fields.pop("stream_options", None)
    paths = detect_chat(fields, parsed.keys)
    return ParsedRequest(model, stream, fields, _privacy_ask(body, policy_header), paths=paths)


def _check_data_fields(fields: dict[str, Any]) -> None:
    """`store`, `metadata` and `prompt_cache_options`, as OpenAI defines them."""
    if fields.get("store") is not None and not isinstance(fields["store"], bool):
        raise bad("store must be a boolean", param="store")
    metadata = fields.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA
        or not all(isinstance(k, str) and len(k) <= 64 for k in metadata)
        or not all(isinstance(v, str) and len(v) <= 512 for v in metadata.values())
    ):
        raise bad(
            f"metadata must be an object of at most {MAX_METADATA} string pairs"
            " (keys up to 64 characters, values up to 512)",
            param="metadata",
        )
    options = fields.get("prompt_cache_options")
    if options is not None and not isinstance(options, dict):
        raise bad("prompt_cache_options must be an object", param="prompt_cache_options")


def parse_embeddings(parsed: JsonBody, *, policy_header: str | None) -> ParsedRequest:
    body = parsed.value
    suspects = suspects_in(parsed)
    _refuse_top_level(body, suspects)
    model = _model(body)
    if "input" not in body:
        raise bad("missing required field: input", param="input", code=ErrorCode.MISSING_FIELD)
    fields = _split(body, EMBEDDING_FIELDS)
    refuse_forbidden(parsed, EMBEDDING_PATHS, suspects=suspects)
    _check_input(fields["input"])
    if fields.get("encoding_format") not in (None, "float", "base64"):
        raise bad("encoding_format must be 'float' or 'base64'", param="encoding_format")
    if "dimensions" in fields:
        check_number("dimensions", fields["dimensions"])
    return ParsedRequest(model, False, fields, _privacy_ask(body, policy_header))
