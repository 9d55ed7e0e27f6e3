"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, through the pipeline.

What belongs here: the routes' handlers (admit the request, parse it, run it through the pipeline
with the API's own upstream call, `gateway/core/messages_exchange.py`) and the wire model of a
Messages request: the fields passed on (an allowlist; unknown top-level fields refused), steering fields
refused at any depth (outside tool input schemas and tool-call inputs, which are the user's own
JSON), the lists that set an upstream's work counted, numbers bounded, the `anthropic-version` and
`anthropic-beta` headers checked, and Sluice's own extensions (`privacy`, OpenRouter's `provider`,
`X-Privacy-Policy`) read as on the chat API. Errors are rendered in Anthropic's envelope
(`gateway.errors.render_anthropic`), by the edge as well (`gateway.api.routes`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.responses import Response

from gateway.api.fields import Api, accepted, accepted_paths
from gateway.api.intake import admit, policy_header
from gateway.api.openai_protocol import (
    MAX_MESSAGES,
    MAX_STOP,
    MAX_TOOLS,
    _model,
    _privacy_ask,
    _refuse_top_level,
    _split,
    _typed_parts,
    bad,
    check_number,
    refuse_forbidden,
    suspects_in,
)
from gateway.core.data_paths import detect_messages
from gateway.core.messages_exchange import CountTokensExchange, MessagesExchange
from gateway.core.request import ParsedRequest
from gateway.names import Endpoint, ErrorCode
from gateway.server.edge import Inbound
from gateway.server.jsonbody import JsonBody
from gateway.upstream.litellm_adapter import MessagesTranslation

# Anthropic Messages fields passed upstream (after validation): the specification's table
# (`gateway.api.fields`, docs/fields.md; `inference_geo` is refused there), `stream`, and the beta
# fields the anthropic SDK sends (`client.beta.messages`). Fields that move data (`mcp_servers`,
# hosted tools, a 1-hour cache, `container`) are detected here and judged by the pipeline
# (`ParsedRequest.paths`).
BETA_FIELDS: Final = frozenset({"mcp_servers", "context_management", "output_format", "speed"})
MESSAGES_FIELDS: Final = accepted(Api.MESSAGES) | BETA_FIELDS | {"stream"}
# Nested paths the specification defines (`cache_control.ttl`): never refused by the walk.
MESSAGES_PATHS: Final = accepted_paths(Api.MESSAGES)
COUNT_TOKENS_FIELDS: Final = frozenset(
    {
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "mcp_servers",
        "context_management",
        "output_config",
        "output_format",
        "cache_control",
    }
)
MESSAGE_KEYS: Final = frozenset({"role", "content"})
# `system` turns mid-conversation are in the anthropic SDK's `MessageParam` (litellm's translation
# carries them as system messages)
ROLES: Final = frozenset({"user", "assistant", "system"})
# Opaque JSON of the user's own: tool input schemas, output schemas, and the inputs of tool calls
# (a shell tool's `{"command": ..., "timeout": 120000}` is an argument, not a keyword of anyone's).
SCHEMA_PATHS: Final = (
    ("tools", "*", "input_schema"),
    ("output_format", "schema"),
    ("output_config", "format", "schema"),
    ("messages", "*", "content", "*", "input"),
)
NUMBER_BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "temperature": (0, 1),
    "top_p": (0, 1),
    "top_k": (0, 1_000_000),
    "max_tokens": (1, 10_000_000),
}
INTEGER_FIELDS: Final = frozenset({"top_k", "max_tokens"})
VERSION: Final = re.compile(r"[0-9A-Za-z._-]{1,64}")
BETA: Final = re.compile(r"[0-9A-Za-z._-]{1,128}")
MAX_BETAS: Final = 64


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty array", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise bad(f"at most {MAX_MESSAGES} messages", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", param=where)
        if message.get("role") not in ROLES:
            raise bad(f"{where}.role must be 'user', 'assistant' or 'system'", param=f"{where}.role")
        extra = set(message) - MESSAGE_KEYS
        if extra:
            name = sorted(extra)[0]
            raise bad(f"{where} has unsupported field {name[:64]!r}", param=f"{where}.{name[:64]}")
        content = message.get("content")
        if not isinstance(content, str | list):
            raise bad(f"{where}.content must be a string or an array of blocks", param=f"{where}.content")
        if isinstance(content, list) and not _typed_parts(content):
            raise bad(f"{where}.content blocks must be objects with a type", param=f"{where}.content")


def _check_fields(fields: dict[str, Any]) -> None:
    """Shapes of the fields that the counts and the walk rely on; the upstream checks the rest."""
    tools = fields.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or len(tools) > MAX_TOOLS or not all(isinstance(t, dict) for t in tools)
    ):
        raise bad(f"tools must be an array of at most {MAX_TOOLS} objects", param="tools")
    system = fields.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and not (isinstance(system, list) and _typed_parts(system))
    ):
        raise bad("system must be a string or an array of blocks with a type", param="system")
    stop = fields.get("stop_sequences")
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(x, str) for x in stop)
    ):
        raise bad(f"stop_sequences must be an array of at most {MAX_STOP} strings", param="stop_sequences")
    for name in (
        "thinking",
        "metadata",
        "tool_choice",
        "output_config",
        "output_format",
        "context_management",
    ):
        if fields.get(name) is not None and not isinstance(fields[name], dict):
            raise bad(f"{name} must be an object", param=name)
    for name in NUMBER_BOUNDS.keys() & fields.keys():
        if fields[name] is not None:
            check_number(name, fields[name], NUMBER_BOUNDS, INTEGER_FIELDS)


def wire_headers(headers: Headers) -> tuple[tuple[str, str], ...]:
    """`anthropic-version` and `anthropic-beta` for an Anthropic-wire upstream, checked: names only
    (no header a client writes can carry a credential or a host upstream)."""
    found: list[tuple[str, str]] = []
    versions = headers.getlist("anthropic-version")
    if versions:
        if len(set(versions)) != 1 or not VERSION.fullmatch(versions[0].strip()):
            raise bad(
                "anthropic-version must be one version name, such as 2023-06-01", param="anthropic-version"
            )
        found.append(("anthropic-version", versions[0].strip()))
    betas = [b.strip() for line in headers.getlist("anthropic-beta") for b in line.split(",") if b.strip()]
    if betas:
        if len(betas) > MAX_BETAS or not all(BETA.fullmatch(b) for b in betas):
            raise bad("anthropic-beta must be a comma-separated list of beta names", param="anthropic-beta")
        found.append(("anthropic-beta", ",".join(dict.fromkeys(betas))))
    return tuple(found)


def _parse(
    parsed: JsonBody, *, allowed: frozenset[str], count: bool, policy_header: str, headers: Headers
) -> ParsedRequest:
    body = parsed.value
    suspects = suspects_in(parsed)
    # The top level first: a body with an unknown field is refused before anything walks it.
    _refuse_top_level(body, suspects)
    model = _model(body)
    required = ("messages",) if count else ("messages", "max_tokens")
    for name in required:
        if name not in body:
            raise bad(f"missing required field: {name}", param=name, code=ErrorCode.MISSING_FIELD)
    fields = _split(body, allowed)
    _check_fields(fields)
    refuse_forbidden(parsed, MESSAGES_PATHS, SCHEMA_PATHS, suspects)
    _check_messages(fields["messages"])
    stream = fields.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream must be a boolean", param="stream")
    return ParsedRequest(
        model,
        stream,
        fields,
        _privacy_ask(body, policy_header),
        # The data paths (DESIGN.md "Data paths": `mcp_servers`, hosted web and code tools, a 1-hour
        # cache), judged by the pipeline against each deployment's feature facts.
        paths=detect_messages(fields, parsed.keys),
        wire_headers=wire_headers(headers),
    )


def parse_messages(parsed: JsonBody, *, policy_header: str, headers: Headers) -> ParsedRequest:
    return _parse(parsed, allowed=MESSAGES_FIELDS, count=False, policy_header=policy_header, headers=headers)


def parse_count_tokens(parsed: JsonBody, *, policy_header: str, headers: Headers) -> ParsedRequest:
    return _parse(
        parsed, allowed=COUNT_TOKENS_FIELDS, count=True, policy_header=policy_header, headers=headers
    )


def _exchange(inbound: Inbound, kind: type[MessagesExchange]) -> MessagesExchange:
    adapters = inbound.services.adapters
    return kind(
        anthropic=adapters.anthropic,
        chat_for=adapters.adapter_for,
        translation=MessagesTranslation(adapters.translated),
    )


async def create(inbound: Inbound) -> Response:
    key, body = await admit(inbound)
    request = inbound.request
    parsed = parse_messages(body, policy_header=policy_header(request), headers=request.headers)
    del body  # its key set, and the fields that are not passed on
    return await inbound.services.chat.run(
        Endpoint.MESSAGES,
        key,
        parsed,
        request_id=inbound.request_id,
        started=inbound.started,
        upstream=_exchange(inbound, MessagesExchange),
    )


async def count_tokens(inbound: Inbound) -> Response:
    key, body = await admit(inbound)
    request = inbound.request
    parsed = parse_count_tokens(body, policy_header=policy_header(request), headers=request.headers)
    del body
    return await inbound.services.chat.run(
        Endpoint.COUNT_TOKENS,
        key,
        parsed,
        request_id=inbound.request_id,
        started=inbound.started,
        upstream=_exchange(inbound, CountTokensExchange),
    )
