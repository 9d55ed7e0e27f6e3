"""Data paths: which request features make a provider keep data or send it elsewhere (DESIGN.md).

What belongs here: pure detection, one function per wire format, from the parsed JSON body only
(no validation, no config, no I/O): `detect_chat` (OpenAI Chat Completions), `detect_responses`
(OpenAI Responses), `detect_messages` (Anthropic Messages). `keys`, optional: every key name in the
body (the parser's survey, `JsonBody.keys`), which lets a body without `cache_control` skip the
walk of its content blocks. Each returns `DataPaths`: the feature
ids of DESIGN.md's table in `FeatureId` order, the MCP server hosts a request names (for the
config's `tool_hosts`), and the client's own `store` (None when absent), so that the pipeline can
send `store: false` where the policy limits retention. A shape detection does not understand is
left to the wire model's validation; detection never raises. Judging the features against a
deployment's facts is `policies.engine.evaluate(..., features=...)`.

Detection errs towards seeing a feature: an unknown `prompt_cache_*` option or cache TTL counts as
`extended_cache`, and an MCP tool without a URL names a host no config lists, so it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain, repeat
from typing import Any, Final, cast
from urllib.parse import urlsplit

from policies.schema import FeatureId

# Cache retention values that are the provider's default (not `extended_cache`).
_DEFAULT_CACHE_RETENTION = frozenset({"in_memory", "in-memory"})
_DEFAULT_CACHE_TTL = frozenset({"5m"})  # Anthropic's default ephemeral cache lifetime

# Hosted tool types, by wire. OpenAI names versions with suffixes (`web_search_preview_2025_03_11`),
# Anthropic with dates (`web_search_20250305`): matched by prefix.
_OPENAI_WEB = ("web_search",)
_OPENAI_CODE = ("file_search", "code_interpreter")
_ANTHROPIC_WEB = ("web_search_", "web_fetch_")
_ANTHROPIC_CODE = ("code_execution_",)
# Gemini grounding and code execution, as litellm accepts them in Chat Completions tools.
_GEMINI_WEB_KEYS = frozenset(
    {
        "googleSearch",
        "google_search",
        "googleSearchRetrieval",
        "google_search_retrieval",
        "urlContext",
        "url_context",
    }
)
_GEMINI_CODE_KEYS = frozenset({"codeExecution", "code_execution"})
UNNAMED_MCP_HOST = "(no server_url)"


@dataclass(frozen=True)
class DataPaths:
    """The data paths one request uses. `store`: the client's own `store` value (None: not set).
    `stored_by_default`: `stored_response` comes only from the wire's default (Responses without
    `store`), so sending `store: false` removes it. `wire_stores`: the wire's default is to store
    (Responses), so `store: false` goes to every upstream, not only to channels the catalog says
    store. `store_false`: Sluice sends `store: false` (set by `limit_retention`, never by detection)."""

    features: tuple[FeatureId, ...] = ()
    mcp_hosts: tuple[str, ...] = ()
    store: bool | None = None
    stored_by_default: bool = False
    wire_stores: bool = False
    store_false: bool = False

    def __bool__(self) -> bool:
        return bool(self.features)

    @property
    def ids(self) -> list[str]:
        return [f.value for f in self.features]

    def limit_retention(self) -> DataPaths:
        """The paths once Sluice sends `store: false` because the policy limits retention: only when
        the client did not choose `store` itself (an explicit `store: true` is judged, not changed)."""
        if self.store is not None:
            return self
        features = self.features
        if self.stored_by_default:
            features = tuple(f for f in features if f is not FeatureId.STORED_RESPONSE)
        return replace(self, features=features, stored_by_default=False, store_false=True)


NONE = DataPaths()


def mcp_host(url: Any) -> str:
    """The host an MCP server URL names, lowercased; `UNNAMED_MCP_HOST` when there is none."""
    if not isinstance(url, str):
        return UNNAMED_MCP_HOST
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return UNNAMED_MCP_HOST
    return host.rstrip(".").lower() if host else UNNAMED_MCP_HOST


_FEATURE_ORDER: Final = tuple(FeatureId)  # iterating the enum itself costs a call per member


class _Found:
    def __init__(self) -> None:
        self.features: set[FeatureId] = set()
        self.hosts: dict[str, None] = {}

    def add(self, feature: FeatureId) -> None:
        self.features.add(feature)

    def mcp(self, url: Any, connector: Any = None) -> None:
        self.features.add(FeatureId.REMOTE_MCP)
        if url is None and isinstance(connector, str) and connector:
            self.hosts.setdefault(f"connector:{connector[:128]}", None)
        else:
            self.hosts.setdefault(mcp_host(url), None)

    def done(self, store: Any, *, by_default: bool = False, wire_stores: bool = False) -> DataPaths:
        features = self.features
        ordered = tuple(f for f in _FEATURE_ORDER if f in features) if features else ()
        stored = store if isinstance(store, bool) else None
        return DataPaths(ordered, tuple(self.hosts), stored, by_default, wire_stores)


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _prompt_cache(body: dict[str, Any], found: _Found) -> None:
    """OpenAI's `prompt_cache_retention` beyond in-memory, or `prompt_cache_options` with a lifetime."""
    retention = body.get("prompt_cache_retention")
    if retention is not None and retention not in _DEFAULT_CACHE_RETENTION:
        found.add(FeatureId.EXTENDED_CACHE)
    options = body.get("prompt_cache_options")
    if isinstance(options, dict):
        ttl = options.get("ttl", options.get("retention"))
        if ttl is not None and ttl not in _DEFAULT_CACHE_RETENTION:
            found.add(FeatureId.EXTENDED_CACHE)
    elif options is not None:
        found.add(FeatureId.EXTENDED_CACHE)  # a shape we do not know: count it (fail closed)


def _long_control(control: Any) -> bool:
    if not isinstance(control, dict):
        return False
    ttl = control.get("ttl")
    return ttl is not None and ttl not in _DEFAULT_CACHE_TTL


_is_dict: Callable[[Any], bool] = partial(type.__instancecheck__, dict)
_is_list: Callable[[Any], bool] = partial(type.__instancecheck__, list)


def _dict_list(value: Any) -> list[dict[str, Any]]:
    return list(filter(_is_dict, value)) if isinstance(value, list) else []


def _has_long_cache(body: dict[str, Any]) -> bool:
    """A `cache_control` with a TTL past the default on the body, a system block, a tool, a message,
    a content block, or the content of a tool result. Looked up with C-level `map`s: a body of the
    maximum size holds some 160,000 content parts."""
    messages = _dict_list(body.get("messages"))
    contents = cast("Iterable[list[Any]]", filter(_is_list, map(dict.get, messages, repeat("content"))))
    parts: list[dict[str, Any]] = list(filter(_is_dict, chain.from_iterable(contents)))
    inner = cast("Iterable[list[Any]]", filter(_is_list, map(dict.get, parts, repeat("content"))))
    blocks = chain(
        (body,),
        _dict_list(body.get("system")),
        _dict_list(body.get("tools")),
        messages,
        parts,
        filter(_is_dict, chain.from_iterable(inner)),
    )
    return any(map(_long_control, filter(None, map(dict.get, blocks, repeat("cache_control")))))


def _cache_ttl(body: dict[str, Any], keys: AbstractSet[str] | None, found: _Found) -> None:
    if (keys is None or "cache_control" in keys) and _has_long_cache(body):
        found.add(FeatureId.EXTENDED_CACHE)


def _openai_tool(tool: dict[str, Any], found: _Found) -> None:
    kind = tool.get("type")
    if isinstance(kind, str):
        if kind == "mcp":
            found.mcp(tool.get("server_url"), tool.get("connector_id"))
        elif kind.startswith(_OPENAI_WEB):
            found.add(FeatureId.SERVER_WEB_SEARCH)
        elif kind.startswith(_OPENAI_CODE):
            found.add(FeatureId.SERVER_CODE_EXECUTION)
        elif kind.startswith(_ANTHROPIC_WEB):  # litellm passes Anthropic's hosted tools through
            found.add(FeatureId.SERVER_WEB_SEARCH)
        elif kind.startswith(_ANTHROPIC_CODE):
            found.add(FeatureId.SERVER_CODE_EXECUTION)
    if not _GEMINI_WEB_KEYS.isdisjoint(tool):
        found.add(FeatureId.SERVER_WEB_SEARCH)
    if not _GEMINI_CODE_KEYS.isdisjoint(tool):
        found.add(FeatureId.SERVER_CODE_EXECUTION)


def detect_chat(body: dict[str, Any], keys: AbstractSet[str] | None = None) -> DataPaths:
    """OpenAI Chat Completions: `store: true`, `web_search_options`, hosted and MCP tools, prompt-cache
    retention (`prompt_cache_retention`, `prompt_cache_options`, a `cache_control` TTL past 5m)."""
    found = _Found()
    if body.get("store") is True:
        found.add(FeatureId.STORED_RESPONSE)
    if body.get("web_search_options") is not None:
        found.add(FeatureId.SERVER_WEB_SEARCH)
    for tool in _dicts(body.get("tools")):
        _openai_tool(tool, found)
    _prompt_cache(body, found)
    _cache_ttl(body, keys, found)
    return found.done(body.get("store"))


def detect_responses(body: dict[str, Any], keys: AbstractSet[str] | None = None) -> DataPaths:
    """OpenAI Responses: storing is the default (`store` absent counts as true), `background: true`,
    a `conversation` (its items are kept), hosted tools (web search, file search, code interpreter),
    `mcp` tools with their `server_url`, prompt-cache retention."""
    found = _Found()
    store = body.get("store")
    kept = body.get("background") is True or body.get("conversation") is not None
    if store is not False or kept:
        found.add(FeatureId.STORED_RESPONSE)
    for tool in _dicts(body.get("tools")):
        _openai_tool(tool, found)
    _prompt_cache(body, found)
    return found.done(store, by_default=store is None and not kept, wire_stores=True)


def detect_messages(body: dict[str, Any], keys: AbstractSet[str] | None = None) -> DataPaths:
    """Anthropic Messages: `mcp_servers` (and `mcp_toolset` tools), hosted `web_search_*`,
    `web_fetch_*` and `code_execution_*` tools, and a `cache_control` TTL past 5m on any block."""
    found = _Found()
    for server in _dicts(body.get("mcp_servers")):
        found.mcp(server.get("url"))
    if body.get("mcp_servers") is not None and not isinstance(body.get("mcp_servers"), list):
        found.mcp(None)
    for tool in _dicts(body.get("tools")):
        kind = tool.get("type")
        if not isinstance(kind, str):
            continue
        if kind.startswith(_ANTHROPIC_WEB):
            found.add(FeatureId.SERVER_WEB_SEARCH)
        elif kind.startswith(_ANTHROPIC_CODE):
            found.add(FeatureId.SERVER_CODE_EXECUTION)
        elif kind == "mcp_toolset":
            found.add(FeatureId.REMOTE_MCP)
    if FeatureId.REMOTE_MCP in found.features and not found.hosts:
        found.mcp(None)
    _cache_ttl(body, keys, found)
    return found.done(None)
