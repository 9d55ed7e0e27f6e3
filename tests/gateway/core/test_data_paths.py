"""Detection of data paths per wire format (gateway/core/data_paths.py): pure, from the body only."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.data_paths import UNNAMED_MCP_HOST, detect_chat, detect_messages, detect_responses
from policies.schema import FeatureId as F

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "features"),
    [
        ({}, ()),
        ({"store": False}, ()),
        ({"store": True}, (F.STORED_RESPONSE,)),
        ({"metadata": {"a": "b"}}, ()),
        ({"web_search_options": {}}, (F.SERVER_WEB_SEARCH,)),
        ({"web_search_options": None}, ()),
        ({"prompt_cache_key": "k"}, ()),
        ({"prompt_cache_retention": "in_memory"}, ()),
        ({"prompt_cache_retention": "24h"}, (F.EXTENDED_CACHE,)),
        ({"prompt_cache_options": {"mode": "implicit"}}, ()),
        ({"prompt_cache_options": {"mode": "explicit", "ttl": "30m"}}, (F.EXTENDED_CACHE,)),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, ()),
        ({"tools": [{"type": "web_search_preview"}]}, (F.SERVER_WEB_SEARCH,)),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, (F.SERVER_WEB_SEARCH,)),
        ({"tools": [{"type": "code_execution_20250825", "name": "c"}]}, (F.SERVER_CODE_EXECUTION,)),
        ({"tools": [{"googleSearch": {}}]}, (F.SERVER_WEB_SEARCH,)),
        ({"tools": [{"codeExecution": {}}]}, (F.SERVER_CODE_EXECUTION,)),
        (
            {"store": True, "tools": [{"type": "mcp", "server_url": "https://a.example/sse"}]},
            (F.STORED_RESPONSE, F.REMOTE_MCP),
        ),
    ],
)
def test_chat_features(extra: dict[str, Any], features: tuple[F, ...]) -> None:
    assert detect_chat({"model": "m", "messages": MSG, **extra}).features == features


def test_chat_store_is_reported_as_the_client_set_it() -> None:
    assert detect_chat({"messages": MSG}).store is None
    assert detect_chat({"messages": MSG, "store": False}).store is False
    assert detect_chat({"messages": MSG, "store": True}).store is True
    assert detect_chat({"messages": MSG, "store": "yes"}).store is None  # validation's job, not ours


def test_chat_mcp_hosts_are_named_lowercased_and_deduplicated() -> None:
    tools = [
        {"type": "mcp", "server_label": "a", "server_url": "https://MCP.Attacker.example:8443/sse"},
        {"type": "mcp", "server_label": "b", "server_url": "https://mcp.attacker.example/other"},
        {"type": "mcp", "server_label": "c", "server_url": "not a url"},
        {"type": "mcp", "server_label": "d", "connector_id": "connector_gmail"},
    ]
    found = detect_chat({"messages": MSG, "tools": tools})
    assert found.features == (F.REMOTE_MCP,)
    assert found.mcp_hosts == ("mcp.attacker.example", UNNAMED_MCP_HOST, "connector:connector_gmail")


@pytest.mark.parametrize("ttl", ["1h", "24h", 3600])
def test_chat_cache_control_ttl_past_default_in_a_content_part(ttl: object) -> None:
    part = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": ttl}}
    body = {"messages": [{"role": "user", "content": [part]}]}
    assert detect_chat(body).features == (F.EXTENDED_CACHE,)
    part["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
    assert detect_chat(body).features == ()
    part["cache_control"] = {"type": "ephemeral"}
    assert detect_chat(body).features == ()


@pytest.mark.parametrize(
    ("extra", "features"),
    [
        ({}, (F.STORED_RESPONSE,)),  # storing is the Responses API's default
        ({"store": True}, (F.STORED_RESPONSE,)),
        ({"store": False}, ()),
        ({"store": False, "background": True}, (F.STORED_RESPONSE,)),
        ({"store": False, "conversation": "conv_1"}, (F.STORED_RESPONSE,)),
        ({"store": False, "tools": [{"type": "web_search"}]}, (F.SERVER_WEB_SEARCH,)),
        ({"store": False, "tools": [{"type": "web_search_preview_2025_03_11"}]}, (F.SERVER_WEB_SEARCH,)),
        (
            {"store": False, "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]},
            (F.SERVER_CODE_EXECUTION,),
        ),
        (
            {"store": False, "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
            (F.SERVER_CODE_EXECUTION,),
        ),
        ({"store": False, "tools": [{"type": "function", "name": "f", "parameters": {}}]}, ()),
        ({"store": False, "prompt_cache_retention": "24h"}, (F.EXTENDED_CACHE,)),
    ],
)
def test_responses_features(extra: dict[str, Any], features: tuple[F, ...]) -> None:
    assert detect_responses({"model": "m", "input": "hi", **extra}).features == features


def test_responses_mcp_tool_names_its_server_host() -> None:
    tool = {
        "type": "mcp",
        "server_label": "x",
        "server_url": "https://mcp.example.com/mcp",
        "require_approval": "never",
    }
    found = detect_responses({"model": "m", "input": "hi", "store": False, "tools": [tool]})
    assert found.features == (F.REMOTE_MCP,)
    assert found.mcp_hosts == ("mcp.example.com",)
    assert found.store is False


@pytest.mark.parametrize(
    ("extra", "features"),
    [
        ({}, ()),
        ({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}, ()),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, (F.SERVER_WEB_SEARCH,)),
        ({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, (F.SERVER_WEB_SEARCH,)),
        (
            {"tools": [{"type": "code_execution_20250522", "name": "code_execution"}]},
            (F.SERVER_CODE_EXECUTION,),
        ),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, ()),  # runs on the client
        (
            {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            (F.EXTENDED_CACHE,),
        ),
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]}, ()),
        (
            {
                "tools": [
                    {"name": "f", "input_schema": {}, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
                ]
            },
            (F.EXTENDED_CACHE,),
        ),
        ({"cache_control": {"type": "ephemeral", "ttl": "1h"}}, (F.EXTENDED_CACHE,)),
    ],
)
def test_messages_features(extra: dict[str, Any], features: tuple[F, ...]) -> None:
    body = {"model": "m", "max_tokens": 8, "messages": MSG, **extra}
    assert detect_messages(body).features == features


def test_messages_cache_ttl_in_a_tool_result_block() -> None:
    inner = {"type": "text", "text": "r", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    block = {"type": "tool_result", "tool_use_id": "t", "content": [inner]}
    body = {"messages": [{"role": "user", "content": [block]}]}
    assert detect_messages(body).features == (F.EXTENDED_CACHE,)


def test_messages_mcp_servers_name_their_hosts() -> None:
    servers = [
        {"type": "url", "url": "https://mcp.internal.example/sse", "name": "a"},
        {"type": "url", "name": "b"},
    ]
    found = detect_messages({"messages": MSG, "mcp_servers": servers})
    assert found.features == (F.REMOTE_MCP,)
    assert found.mcp_hosts == ("mcp.internal.example", UNNAMED_MCP_HOST)
    assert found.store is None


def test_messages_mcp_toolset_without_servers_is_an_unnamed_host() -> None:
    found = detect_messages({"messages": MSG, "tools": [{"type": "mcp_toolset", "mcp_server_name": "a"}]})
    assert found.features == (F.REMOTE_MCP,)
    assert found.mcp_hosts == (UNNAMED_MCP_HOST,)


@pytest.mark.parametrize("detect", [detect_chat, detect_responses, detect_messages])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tools": "x"},
        {"tools": [1, None, {"type": 3}]},
        {"messages": [None, {"content": 5}]},
        {"mcp_servers": 3},
    ],
)
def test_detection_never_raises_on_odd_shapes(detect: Any, body: dict[str, Any]) -> None:
    detect(body)


def test_limit_retention_sends_store_false_only_when_the_client_did_not_choose() -> None:
    chat = detect_chat({"messages": MSG}).limit_retention()
    assert chat.store_false and chat.features == ()
    explicit = detect_chat({"messages": MSG, "store": True}).limit_retention()
    assert not explicit.store_false and explicit.features == (F.STORED_RESPONSE,)
    assert not detect_chat({"messages": MSG, "store": False}).limit_retention().store_false


def test_limit_retention_on_responses_removes_only_the_default_storing() -> None:
    by_default = detect_responses({"input": "hi"})
    assert by_default.features == (F.STORED_RESPONSE,)
    limited = by_default.limit_retention()
    assert limited.store_false and limited.features == ()
    background = detect_responses({"input": "hi", "background": True}).limit_retention()
    assert background.store_false and background.features == (F.STORED_RESPONSE,)


def test_the_parsers_key_survey_spares_the_walk_only_when_no_block_has_cache_control() -> None:
    part = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = {"messages": [{"role": "user", "content": [part]}]}
    assert detect_chat(body, {"messages", "role", "content", "type", "text", "cache_control", "ttl"}).features
    assert detect_messages(body, {"messages", "role", "content", "type", "text", "cache_control"}).features
    assert not detect_chat({"messages": MSG}, {"messages", "role", "content"}).features


def test_only_the_responses_wire_stores_by_default() -> None:
    assert detect_responses({"input": "hi", "store": False}).wire_stores
    assert not detect_chat({"messages": MSG}).wire_stores
    assert not detect_messages({"messages": MSG}).wire_stores
