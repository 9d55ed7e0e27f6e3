"""How the Messages API reaches a deployment: the pipeline's `Upstream` for `POST /v1/messages`
and `POST /v1/messages/count_tokens`.

What belongs here: the choice per deployment (DESIGN.md "Three APIs, one policy"): an Anthropic-wire
deployment (`anthropic/...` models: `anthropic.api`) gets the request as it is, with the client's
checked `anthropic-*` headers (`gateway/upstream/anthropic_wire.py`); every other deployment gets
it translated to a chat (`gateway/upstream/litellm_adapter.py` `MessagesTranslation`) and sent
through that deployment's chat adapter, its answer translated back. Where the privacy object rides
and how a broken stream ends is the endpoint's `Wire` (`gateway.core.wires`). A token count of a
non-Anthropic deployment is litellm's local estimate (no upstream call), marked `"estimate": true`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.deployments import Deployment
from gateway.core.pipeline import Call
from gateway.upstream.anthropic_wire import AnthropicWireAdapter
from gateway.upstream.base import Adapter, ChatStream, UpstreamRequestRejected
from gateway.upstream.litellm_adapter import MessagesTranslation

ANTHROPIC_PREFIX = "anthropic"


def anthropic_wire(dep: Deployment) -> bool:
    """Does `dep` speak the Messages API itself? (litellm's `anthropic/` prefix: Anthropic's API.)"""
    return dep.config.prefix == ANTHROPIC_PREFIX


class MessagesExchange:
    def __init__(
        self,
        *,
        anthropic: AnthropicWireAdapter,
        chat_for: Callable[[Deployment], Adapter],
        translation: MessagesTranslation,
    ) -> None:
        self._anthropic = anthropic
        self._chat_for = chat_for
        self._translation = translation

    async def _chat(
        self, dep: Deployment, call: Call, *, stream: bool
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The translated chat body for `dep`, with `store: false` where the data paths ask for it
        (Anthropic's own API has no `store`: the pass-through sends the fields as they are)."""
        fields = {**call.parsed.fields, "stream": True} if stream else call.parsed.fields
        chat, mapping = await self._translation.request(dep.target, fields)
        if call.fields_for(dep).get("store") is False:
            chat["store"] = False
        return chat, mapping

    async def complete(self, dep: Deployment, call: Call) -> dict[str, Any]:
        parsed = call.parsed
        if anthropic_wire(dep):
            return await self._anthropic.messages(dep.target, parsed.fields, parsed.wire_headers)
        chat, mapping = await self._chat(dep, call, stream=False)
        result = await self._chat_for(dep).chat(dep.target, chat)
        return await self._translation.response(result, mapping)

    async def open(self, dep: Deployment, call: Call) -> ChatStream:
        parsed = call.parsed
        if anthropic_wire(dep):
            return await self._anthropic.messages_stream(dep.target, parsed.fields, parsed.wire_headers)
        chat, mapping = await self._chat(dep, call, stream=True)
        opened = await self._chat_for(dep).chat_stream(dep.target, chat)
        return await self._translation.stream(opened, mapping, dep.config.upstream_model)


class CountTokensExchange(MessagesExchange):
    """`POST /v1/messages/count_tokens`: Anthropic counts for its own deployments; for the others,
    litellm's tokenizer estimates locally (the prompt leaves nothing, but the decision and the
    ledger record are the same as a message's)."""

    async def complete(self, dep: Deployment, call: Call) -> dict[str, Any]:
        parsed = call.parsed
        if anthropic_wire(dep):
            return await self._anthropic.count_tokens(dep.target, parsed.fields, parsed.wire_headers)
        return {
            "input_tokens": await self._translation.count_tokens(dep.target, parsed.fields),
            "estimate": True,
        }

    async def open(self, dep: Deployment, call: Call) -> ChatStream:
        raise UpstreamRequestRejected("count_tokens does not stream")
