"""The direct pass-through for Anthropic-wire upstreams (`anthropic.api`): the Messages API as is.

What belongs here: sending an allowlisted Messages body to `{api_base}/v1/messages` (or
`/v1/messages/count_tokens`) with the deployment's key as `x-api-key` and the client's validated
`anthropic-version` / `anthropic-beta` headers, and relaying a stream's bytes as the upstream
framed them (only `message_start` is parsed, so the privacy object can ride on its `message`).
The transport, the caps, the error mapping and the relay are the OpenAI wire's
(`gateway/upstream/openai_wire.py`); only the paths, the headers and the stream's shape
(`MESSAGES_STREAM`: it ends with `message_stop`, an in-band error is an `event: error`) are
Anthropic's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import orjson

from gateway.upstream.answer import UpstreamAnswer
from gateway.upstream.base import UpstreamProtocolError, UpstreamTarget
from gateway.upstream.openai_wire import (
    RelayStream,
    StreamShape,
    new_client,
    open_events,
    post_request,
    read_answer,
    send_checked,
)
from gateway.upstream.transport import MAX_CONNECTIONS_PER_HOST

DEFAULT_VERSION: Final = "2023-06-01"
# An in-band error event (`event: error`, or an error typed in its data): its message is the
# upstream's, so it is never relayed.
ERROR_EVENT: Final = re.compile(rb'(?:^|\n)(?:event: ?error\r?\n|data: ?\{\s*"type"\s*:\s*"error")')
MESSAGES_STREAM: Final = StreamShape(
    "/messages", ERROR_EVENT, final_marks=(b'message_stop"',), required="content"
)


def messages_url(api_base: str | None, path: str) -> str:
    """`https://api.anthropic.com` or `.../v1` -> `.../v1/messages` (`path`: `/messages...`)."""
    base = (api_base or "").rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + path


class AnthropicRelay(RelayStream):
    """A Messages stream: `first` is `message_start`; usage is its `message.usage`, updated by the
    last `message_delta`'s."""

    def __init__(
        self,
        response: UpstreamAnswer,
        raw: AsyncIterator[bytes],
        first: dict[str, Any],
        rest: bytes,
        idle: float,
    ) -> None:
        message = first.get("message")
        start = message.get("usage") if isinstance(message, dict) else None
        self._start: dict[str, Any] = dict(start) if isinstance(start, dict) else {}
        self._delta: dict[str, Any] = {}
        super().__init__(response, raw, first, rest, idle, MESSAGES_STREAM)

    @property
    def usage(self) -> dict[str, Any] | None:
        return {**self._start, **self._delta}

    @usage.setter
    def usage(self, value: dict[str, Any] | None) -> None:
        self._delta = value or {}


class AnthropicWireAdapter:
    def __init__(self, *, max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST) -> None:
        self._client = new_client(max_connections_per_host=max_connections_per_host)

    def _request(
        self,
        target: UpstreamTarget,
        path: str,
        body: dict[str, Any],
        wire_headers: tuple[tuple[str, str], ...],
    ) -> httpx.Request:
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers["anthropic-version"] = DEFAULT_VERSION
        headers.update(wire_headers)  # validated by the API's parse step: version and beta names only
        if target.api_key:
            headers["x-api-key"] = target.api_key
        payload = orjson.dumps({**body, "model": target.upstream_model})
        url = messages_url(target.api_base, path)
        return post_request(self._client, url, headers, payload, target, target.timeout)

    async def _object(
        self,
        target: UpstreamTarget,
        path: str,
        body: dict[str, Any],
        wire_headers: tuple[tuple[str, str], ...],
    ) -> dict[str, Any]:
        response = await send_checked(self._client, self._request(target, path, body, wire_headers))
        raw = await read_answer(response)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("the upstream answer is not JSON") from None
        if not isinstance(parsed, dict) or parsed.get("type") == "error":
            raise UpstreamProtocolError("the upstream answer is not an Anthropic response object")
        return parsed

    async def messages(
        self, target: UpstreamTarget, body: dict[str, Any], wire_headers: tuple[tuple[str, str], ...] = ()
    ) -> dict[str, Any]:
        parsed = await self._object(target, "/messages", body, wire_headers)
        if not isinstance(parsed.get("content"), list):
            raise UpstreamProtocolError("the upstream answer is not an Anthropic message")
        return parsed

    async def count_tokens(
        self, target: UpstreamTarget, body: dict[str, Any], wire_headers: tuple[tuple[str, str], ...] = ()
    ) -> dict[str, Any]:
        parsed = await self._object(target, "/messages/count_tokens", body, wire_headers)
        if not isinstance(parsed.get("input_tokens"), int):
            raise UpstreamProtocolError("the upstream answer is not a token count")
        return parsed

    async def messages_stream(
        self, target: UpstreamTarget, body: dict[str, Any], wire_headers: tuple[tuple[str, str], ...] = ()
    ) -> AnthropicRelay:
        request = self._request(target, "/messages", {**body, "stream": True}, wire_headers)
        response = await send_checked(self._client, request)
        raw, first, rest = await open_events(response, target, MESSAGES_STREAM)
        if first.get("type") != "message_start":
            await response.aclose()
            raise UpstreamProtocolError("the upstream stream did not begin with message_start")
        return AnthropicRelay(response, raw, first, rest, target.idle_timeout)

    async def aclose(self) -> None:
        await self._client.aclose()
