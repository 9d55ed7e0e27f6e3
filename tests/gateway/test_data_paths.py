"""Data paths end to end (DESIGN.md, "Data paths"): the official `openai` SDK against the app in front
of the fake upstream, which records what was actually sent.

Each path is allowed where the channel's feature facts comply with the policy, refused with 403
`feature_not_allowed` where none does (nothing reaches the upstream), and rerouted where a model of
`reroute_to` complies with the features too. Sluice sends `store: false` where the policy limits
retention and the client did not choose, and a remote MCP server only to hosts in `tool_hosts`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.support import TEST_HOST, build_app, key_hash

REROUTE_KEY = "sk-dp-reroute"
BLOCK_KEY = "sk-dp-block"
MONTH_KEY = "sk-dp-month"  # a policy that limits retention to 30 days
OPEN_KEY = "sk-dp-open"  # the baseline only (api-channel-only)
MCP_INTERNAL = "https://mcp.internal.example/sse"
MCP_VENDOR = "https://mcp.vendor.example/mcp"
MCP_ATTACKER = "https://mcp.attacker.example/sse"
USER: Any = [{"role": "user", "content": "Hello"}]

CONFIG = f"""
demo: true
server: {{default_policy: no-training-only, on_violation: block}}
policies:
  - name: month-retention
    description: kept at most 30 days
    requires: [max_retention_days]
    max_retention_days: 30
models:
  - name: gpt
    deployments: [{{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}}]
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5, simulate: true}}
    reroute_to: [gpt, gemini]
  - name: gemini
    deployments:
      - {{provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash, simulate: true}}
attestations:
  - {{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "test: billing enabled"}}
tool_hosts:
  - {{host: mcp.internal.example, evidence: "our own MCP server", training: never, retention_days: 0,
     human_review: none, operator_owned: true}}
  - {{host: mcp.vendor.example, evidence: "vendor terms", training: opt_out, retention_days: 30}}
keys:
  - {{name: reroute, key_hash: "{key_hash(REROUTE_KEY)}", on_violation: reroute}}
  - {{name: block, key_hash: "{key_hash(BLOCK_KEY)}"}}
  - {{name: month, key_hash: "{key_hash(MONTH_KEY)}", policy: [month-retention]}}
  - {{name: open, key_hash: "{key_hash(OPEN_KEY)}", policy: [api-channel-only]}}
"""


class Sluice:
    def __init__(self, http: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink) -> None:
        self.http, self.fake, self.audit = http, fake, audit
        self._clients: list[AsyncOpenAI] = []

    def sdk(self, key: str = BLOCK_KEY) -> AsyncOpenAI:
        client = AsyncOpenAI(
            base_url=f"http://{TEST_HOST}/v1", api_key=key, http_client=self.http, max_retries=0
        )
        self._clients.append(client)
        return client

    def sent(self) -> list[dict[str, Any]]:
        """The bodies the fake upstream received, in order."""
        return [r.json for r in self.fake.requests]


@pytest.fixture
async def sluice(fake: FakeUpstream, tmp_path: Path, litellm_over_httpx: None) -> AsyncIterator[Sluice]:
    audit = MemoryAuditSink()
    settings = Settings(
        allow_simulate=True,
        fake_upstream_url=fake.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        audit_spool=tmp_path / "audit.spool",
    )
    app = build_app(CONFIG, settings=settings, audit=audit)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://{TEST_HOST}/v1", timeout=30
        ) as http:
            yield Sluice(http, fake, audit)


async def refused(call: Any, feature: str) -> dict[str, Any]:
    """Assert a 403 `feature_not_allowed` naming `feature`; return `error`."""
    with pytest.raises(openai.PermissionDeniedError) as raised:
        await call
    body = raised.value.response.json()
    error: dict[str, Any] = body["error"]
    assert (raised.value.status_code, error["code"], error["type"]) == (
        403,
        "feature_not_allowed",
        "privacy_policy_violation",
    )
    assert error["privacy"]["feature"] == feature and feature in error["message"]
    assert raised.value.response.headers["x-privacy-decision"] == "blocked"
    assert feature in raised.value.response.headers["x-privacy-features"].split(", ")
    return error


# -- stored_response ------------------------------------------------------------------------------
async def test_store_true_is_honoured_where_the_policy_allows_and_said(sluice: Sluice) -> None:
    raw = await sluice.sdk().chat.completions.with_raw_response.create(
        model="gpt", messages=USER, store=True, metadata={"team": "legal"}
    )
    [sent] = sluice.sent()
    assert (sent["store"], sent["metadata"]) == (True, {"team": "legal"})
    assert raw.headers["x-privacy-features"] == "stored_response"
    assert "stored" in raw.headers["x-privacy-badges"].split(", ")
    privacy = json.loads(raw.content)["privacy"]
    assert privacy["features"] == ["stored_response"]
    assert "stored" in [b["id"] for b in privacy["badges"]]
    [event] = sluice.audit.events
    assert event.extra["features"] == ["stored_response"] and event.status == 200


async def test_a_stream_says_its_data_paths_in_the_headers_and_the_first_chunk(sluice: Sluice) -> None:
    response = await sluice.sdk().chat.completions.with_raw_response.create(
        model="gpt", messages=USER, store=True, stream=True
    )
    assert response.headers["x-privacy-features"] == "stored_response"
    chunks = [chunk async for chunk in response.parse()]
    assert chunks[0].model_extra is not None
    assert chunks[0].model_extra["privacy"]["features"] == ["stored_response"]
    assert sluice.sent()[0]["store"] is True


async def test_no_feature_no_header_and_no_store_added_when_retention_is_not_limited(sluice: Sluice) -> None:
    raw = await sluice.sdk().chat.completions.with_raw_response.create(model="gpt", messages=USER)
    assert "x-privacy-features" not in raw.headers
    assert json.loads(raw.content)["privacy"]["features"] == []
    [sent] = sluice.sent()
    assert "store" not in sent
    assert "features" not in sluice.audit.events[0].extra


async def test_store_false_is_sent_where_the_policy_limits_retention_and_the_client_did_not_choose(
    sluice: Sluice,
) -> None:
    client = sluice.sdk(MONTH_KEY)
    raw = await client.chat.completions.with_raw_response.create(model="gpt", messages=USER)
    assert "x-privacy-features" not in raw.headers
    stream = await client.chat.completions.create(model="gpt", messages=USER, stream=True)
    async for _ in stream:
        pass
    assert [s["store"] for s in sluice.sent()] == [False, False]
    assert [e.extra.get("store_false") for e in sluice.audit.events] == [True, True]
    # Not to a channel that stores nothing on request (Anthropic's, via litellm): nothing to turn off.
    await client.chat.completions.create(model="claude", messages=USER)
    assert "store" not in sluice.sent()[-1]


async def test_explicit_store_true_that_no_compliant_deployment_can_honour_is_refused(sluice: Sluice) -> None:
    # OpenAI keeps stored completions for a period its reference does not state: unknown fails
    # max_retention_days.
    error = await refused(
        sluice.sdk(MONTH_KEY).chat.completions.create(model="gpt", messages=USER, store=True),
        "stored_response",
    )
    [considered] = error["privacy"]["considered"]
    assert any("stored_response" in r for r in considered["reasons"])
    assert sluice.sent() == []
    [event] = sluice.audit.events
    assert (event.decision, event.error_code, event.extra["features"]) == (
        "blocked",
        "feature_not_allowed",
        ["stored_response"],
    )


async def test_store_on_a_channel_without_stored_response_facts_fails_closed(sluice: Sluice) -> None:
    await refused(
        sluice.sdk().chat.completions.create(model="claude", messages=USER, store=True), "stored_response"
    )
    assert sluice.sent() == []


# -- server-side web search (the hole: litellm made it Anthropic's web search tool) ---------------
async def test_web_search_options_to_claude_is_refused_not_forwarded(sluice: Sluice) -> None:
    call = sluice.sdk().chat.completions.create(model="claude", messages=USER, web_search_options={})
    error = await refused(call, "server_web_search")
    reasons = [r for c in error["privacy"]["considered"] for r in c["reasons"]]
    assert any("third party" in r for r in reasons)
    assert sluice.sent() == []


async def test_web_search_reroutes_only_to_a_model_whose_facts_comply_with_the_feature(
    sluice: Sluice,
) -> None:
    raw = await sluice.sdk(REROUTE_KEY).chat.completions.with_raw_response.create(
        model="claude", messages=USER, web_search_options={}
    )
    # gpt (first in reroute_to) has no web-search facts: skipped; gemini's paid tier does.
    assert raw.headers["x-privacy-decision"] == "rerouted"
    assert raw.headers["x-privacy-channel"] == "google.gemini_api_paid"
    assert raw.headers["x-privacy-features"] == "server_web_search"
    assert "web-search" in raw.headers["x-privacy-badges"].split(", ")
    [request] = sluice.fake.requests
    assert request.wire == "gemini"


# -- remote MCP ----------------------------------------------------------------------------------
def mcp_tool(url: str) -> Any:
    return {"type": "mcp", "server_label": "docs", "server_url": url, "require_approval": "never"}


async def test_remote_mcp_to_an_unlisted_host_is_refused_before_any_call(sluice: Sluice) -> None:
    for key in (BLOCK_KEY, REROUTE_KEY):
        call = sluice.sdk(key).chat.completions.create(
            model="claude", messages=USER, tools=[mcp_tool(MCP_ATTACKER)]
        )
        error = await refused(call, "remote_mcp")
        assert "mcp.attacker.example" in error["message"]
        assert error["privacy"]["mcp_hosts"] == ["mcp.attacker.example"]
    # One listed host does not carry an unlisted one along.
    tools = [mcp_tool(MCP_INTERNAL), mcp_tool(MCP_ATTACKER)]
    error = await refused(
        sluice.sdk().chat.completions.create(model="claude", messages=USER, tools=tools), "remote_mcp"
    )
    assert error["privacy"]["mcp_hosts"] == ["mcp.attacker.example"]
    assert sluice.sent() == []
    assert [e.error_code for e in sluice.audit.events] == ["feature_not_allowed"] * 3


async def test_remote_mcp_to_a_listed_host_whose_facts_comply_is_forwarded(sluice: Sluice) -> None:
    raw = await sluice.sdk().chat.completions.with_raw_response.create(
        model="claude", messages=USER, tools=[mcp_tool(MCP_INTERNAL)]
    )
    assert raw.headers["x-privacy-features"] == "remote_mcp"
    assert "remote-mcp" in raw.headers["x-privacy-badges"].split(", ")
    [sent] = sluice.sent()
    assert [s["url"] for s in sent["mcp_servers"]] == [MCP_INTERNAL]


async def test_remote_mcp_to_a_listed_host_whose_facts_fail_the_policy_is_refused(sluice: Sluice) -> None:
    call = sluice.sdk().chat.completions.create(model="claude", messages=USER, tools=[mcp_tool(MCP_VENDOR)])
    error = await refused(call, "remote_mcp")
    reasons = [r for c in error["privacy"]["considered"] for r in c["reasons"]]
    assert any(r.startswith("MCP server mcp.vendor.example: training opt_out") for r in reasons)
    assert sluice.sent() == []


# -- extended cache ------------------------------------------------------------------------------
async def test_extended_cache_is_honoured_where_the_policy_allows_and_said(sluice: Sluice) -> None:
    raw = await sluice.sdk(OPEN_KEY).chat.completions.with_raw_response.create(
        model="gpt", messages=USER, extra_body={"prompt_cache_retention": "24h", "prompt_cache_key": "k"}
    )
    assert raw.headers["x-privacy-features"] == "extended_cache"
    assert "extended-cache" in raw.headers["x-privacy-badges"].split(", ")
    [sent] = sluice.sent()
    assert (sent["prompt_cache_retention"], sent["prompt_cache_key"]) == ("24h", "k")


async def test_extended_cache_is_refused_where_its_facts_are_stale_and_low_confidence(sluice: Sluice) -> None:
    # OpenAI's extended-cache facts come from a secondary source past its freshness: unknown.
    call = sluice.sdk().chat.completions.create(
        model="gpt", messages=USER, extra_body={"prompt_cache_retention": "24h"}
    )
    error = await refused(call, "extended_cache")
    assert any("low-confidence and stale" in r for r in error["privacy"]["considered"][0]["reasons"])
    assert sluice.sent() == []


async def test_prompt_cache_options_with_a_ttl_is_the_extended_cache_path_not_a_forbidden_parameter(
    sluice: Sluice,
) -> None:
    options = {"mode": "explicit", "ttl": "30m"}
    raw = await sluice.sdk(OPEN_KEY).chat.completions.with_raw_response.create(
        model="gpt", messages=USER, extra_body={"prompt_cache_options": options}
    )
    assert raw.headers["x-privacy-features"] == "extended_cache"
    assert sluice.sent()[0]["prompt_cache_options"] == options
    # A cache kept an hour on Anthropic's channel, whose extended-cache facts are unknown: refused.
    part = {"type": "text", "text": "long", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    call = sluice.sdk().chat.completions.create(
        model="claude", messages=[{"role": "user", "content": [part]}]
    )
    await refused(call, "extended_cache")
    assert len(sluice.sent()) == 1


# -- the fields, as OpenAI defines them -----------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"store": "yes"}, "store"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": "x"}, "metadata"),
        ({"prompt_cache_retention": 24}, "prompt_cache_retention"),
        ({"prompt_cache_options": "30m"}, "prompt_cache_options"),
    ],
)
async def test_data_path_fields_are_validated(sluice: Sluice, extra: dict[str, Any], param: str) -> None:
    response = await sluice.http.post(
        "chat/completions",
        json={"model": "gpt", "messages": USER, **extra},
        headers={"authorization": f"Bearer {OPEN_KEY}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert sluice.sent() == []


async def test_steering_names_stay_refused_inside_lenient_objects(sluice: Sluice) -> None:
    for extra in (
        {"prompt_cache_options": {"api_base": "http://127.0.0.1:9/v1"}},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "x", "cache_control": {"api_key": "k"}}],
                }
            ]
        },
    ):
        response = await sluice.http.post(
            "chat/completions",
            json={"model": "gpt", "messages": USER, **extra},
            headers={"authorization": f"Bearer {OPEN_KEY}"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "forbidden_parameter"
    assert sluice.sent() == []


# -- the README's examples, against the demo config -----------------------------------------------
async def test_the_readme_refusals_against_the_demo(
    client: httpx.AsyncClient, fake: FakeUpstream, litellm_over_httpx: None
) -> None:
    sdk = AsyncOpenAI(base_url="http://sluice.test/v1", api_key="sk-sluice-demo", http_client=client)
    hi: Any = [{"role": "user", "content": "hi"}]
    block = {"privacy": {"on_violation": "block"}}
    for model, extra, feature in [
        ("claude-sonnet", {"store": True}, "stored_response"),
        ("claude-sonnet", {"web_search_options": {}}, "server_web_search"),
        ("claude-sonnet", {"tools": [mcp_tool(MCP_ATTACKER)]}, "remote_mcp"),
        ("gpt-4o-mini", {"prompt_cache_retention": "24h"}, "extended_cache"),
    ]:
        call = sdk.chat.completions.create(model=model, messages=hi, extra_body={**extra, **block})
        await refused(call, feature)
    assert fake.requests == []
    raw = await sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=hi, store=True)
    assert raw.headers["x-privacy-features"] == "stored_response"
