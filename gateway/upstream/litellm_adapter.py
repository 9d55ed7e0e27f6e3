"""The litellm adapter: translation to every provider's wire format. The only module that imports litellm.

What belongs here: loading litellm offline and quiet (no cost-map download, no beta-header fetch,
no callbacks, no debug logging), building its keyword arguments from an allowlisted body plus
config (never the request body as such), handing litellm HTTP clients that neither follow
redirects nor read past Sluice's caps (`gateway/upstream/limits.py`), and mapping litellm's
exceptions onto Sluice's `UpstreamError`s. litellm is imported on first use, so a gateway with only
OpenAI-wire deployments never pays its import time or memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from types import ModuleType
from typing import Any

import httpx
import orjson

from gateway.upstream.base import (
    QUOTA_MARKERS,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTarget,
    UpstreamTimeout,
    retry_after,
)
from gateway.upstream.causes import Cause, classify
from gateway.upstream.limits import AnswerRefused, CappedTransport

# Set before litellm is imported; forced, so a stray shell variable cannot turn downloads back on.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_DISABLE_LAZY_LOADING": "",
}
LAZY_IMPORTS = ("litellm.proxy.guardrails.exception_utils",)
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "litellm")
CONFIG_KWARGS = ("api_base", "api_key", "api_version", "vertex_project", "vertex_location", "aws_region_name")
# Providers whose litellm handlers take an `AsyncHTTPHandler` as `client`: Sluice passes its own, which
# never follows redirects (litellm's default does, re-sending the body and provider key to the new host)
# and reads through Sluice's caps (litellm's reads a whole answer, or a whole stream line, into memory).
HANDLER_CLIENT_PREFIXES = frozenset(
    {
        "anthropic",
        "gemini",
        "vertex_ai",
        "bedrock",
        "cohere",
        "cohere_chat",
        "ollama",
        "ollama_chat",
        "mistral",
    }
)

# Providers whose stream calls always get a real stream back, so the handler for them refuses a 200
# that is not one (see `gateway/upstream/limits.py`); litellm fakes some streams (Bedrock, Vertex
# partner models) with a plain call.
REAL_STREAM_PREFIXES = frozenset({"anthropic", "gemini"})


def load_litellm() -> ModuleType:
    """Import litellm offline and silent. Safe to call more than once."""
    os.environ.update(OFFLINE_ENV)
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    setattr(litellm, "set_verbose", False)  # noqa: B010 (not exported in its stubs)
    litellm.turn_off_message_logging = True
    litellm.redact_messages_in_exceptions = True
    litellm.log_raw_request_response = False
    litellm.drop_params = True
    litellm.num_retries = 0
    # Its aiohttp transport would otherwise send upstream calls through HTTP(S)_PROXY from the
    # environment: an egress path the config does not show (Sluice's own clients ignore it too).
    litellm.disable_aiohttp_trust_env = True
    for name in (
        "callbacks",
        "success_callback",
        "failure_callback",
        "input_callback",
        "service_callback",
        "_async_success_callback",
        "_async_failure_callback",
    ):
        if isinstance(getattr(litellm, name, None), list):
            setattr(litellm, name, [])
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        logger.propagate = False
        logger.handlers = [logging.NullHandler()]
    return litellm


def _kwargs(target: UpstreamTarget, body: dict[str, Any], client: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(body)
    for name in CONFIG_KWARGS:
        value = getattr(target, name)
        if value is not None:
            kwargs[name] = value
    # The connect deadline is Sluice's own (short, so failover starts soon), not the whole call's.
    timeout = httpx.Timeout(target.timeout, connect=target.connect_timeout)
    kwargs.update(model=target.model, timeout=timeout, num_retries=0, max_retries=0, drop_params=True)
    if client is not None:
        kwargs["client"] = client
    return kwargs


NEVER_REACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, ConnectionRefusedError)


def _transport_cause(exc: BaseException) -> UpstreamError | None:
    """The transport failure behind a litellm exception, if any. litellm wraps a refused connection
    in whatever its provider module raises (an Anthropic connect failure arrives as a 500
    `InternalServerError`), so the status alone cannot tell "never reached" from "failed while
    working"; the exception chain can. The same goes for an answer litellm could not read: a broken,
    refused or capped read (an httpx request error), or a 200 it could not parse (a ValueError with
    no HTTP status error before it, which litellm reports as a made-up 422 for Gemini)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    unreadable = provider_status = False
    while cause is not None and id(cause) not in seen and len(seen) < 16:
        seen.add(id(cause))
        if isinstance(cause, NEVER_REACHED):
            why = classify(cause, Cause.CONNECT)
            return UpstreamConnectError(f"cannot connect to the upstream: {why}", cause=why)
        if isinstance(cause, httpx.TimeoutException):
            return UpstreamTimeout("the upstream did not answer in time", cause=Cause.READ_TIMEOUT)
        if isinstance(cause, AnswerRefused):
            return UpstreamProtocolError(str(cause))  # Sluice's own message
        if isinstance(cause, httpx.RequestError):  # aiohttp's failures arrive as the base class
            return UpstreamProtocolError(f"the upstream answer could not be read ({type(cause).__name__})")
        if isinstance(cause, httpx.HTTPStatusError):
            provider_status = True
        elif isinstance(cause, ValueError) and not provider_status:
            unreadable = True
        cause = cause.__cause__ or cause.__context__
    return UpstreamProtocolError("the upstream answer could not be read") if unreadable else None


def _map_error(litellm: ModuleType, exc: Exception) -> UpstreamError:
    exceptions = litellm.exceptions
    transport = _transport_cause(exc)
    if transport is not None:
        return transport
    if isinstance(exc, exceptions.Timeout):
        return UpstreamTimeout("the upstream did not answer in time", cause=Cause.READ_TIMEOUT)
    if isinstance(exc, exceptions.APIConnectionError):
        # litellm also raises this for answers it could not parse: the provider may have worked.
        return UpstreamProtocolError("the upstream call failed (APIConnectionError)")
    # litellm folds several provider statuses into one class (an Anthropic 529 "overloaded" arrives
    # as a 500 InternalServerError); `provider_status_code` keeps the provider's own, when set.
    status = getattr(exc, "provider_status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        # litellm keeps the provider's headers here; its `response` is often a stand-in without them.
        headers = getattr(exc, "litellm_response_headers", None) or getattr(
            getattr(exc, "response", None), "headers", None
        )
        wait = retry_after(headers) if isinstance(headers, Mapping) else None
        code = type(exc).__name__
        if status == 429 and any(m in str(exc).lower() for m in QUOTA_MARKERS):
            code = "insufficient_quota"  # the marker only, never the message (it may echo input)
        return UpstreamStatusError(status, code=code, retry_after=wait)
    return UpstreamProtocolError(f"the upstream call failed ({type(exc).__name__})")


def _dump(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped = obj.model_dump(exclude_none=True)
    if not isinstance(dumped, dict):
        raise UpstreamProtocolError("litellm returned an unexpected object")
    return dumped


class LiteLLMStream:
    def __init__(
        self,
        litellm: ModuleType,
        iterator: AsyncIterator[Any],
        first: dict[str, Any],
        idle: float | None = None,
    ) -> None:
        self.first = first
        self.usage: dict[str, Any] | None = first.get("usage")
        self._litellm = litellm
        self._iterator = iterator
        self._idle = idle

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                # The gap between chunks is bounded like the pass-through's (`SLUICE_STREAM_IDLE_TIMEOUT`);
                # litellm itself would wait the whole call's read timeout for each read.
                try:
                    async with asyncio.timeout(self._idle):
                        chunk = await anext(self._iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise UpstreamStreamError("the upstream stream stalled") from None
                data = _dump(chunk)
                if isinstance(data.get("usage"), dict):
                    self.usage = data["usage"]
                yield b"data: " + orjson.dumps(data) + b"\n\n"
        except UpstreamError:
            raise
        except Exception as exc:  # litellm raises many types mid-stream; all end the stream in-band
            mapped = _map_error(self._litellm, exc)
            raise UpstreamStreamError(f"the upstream stream broke: {mapped.message}") from None
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


class LiteLLMAdapter:
    """litellm behind Sluice's adapter interface.

    litellm takes seconds and ~190 MB to import: `preload()` (called when the app starts) imports it
    in a worker thread, so the gateway answers health checks and OpenAI-wire traffic at once, and a
    translated call that arrives earlier waits for the import to finish.
    """

    def __init__(self) -> None:
        self._module: ModuleType | None = None
        self._tls: ssl.SSLContext | bool = True
        self._handlers: dict[tuple[bool, float, float], Any] = {}
        self._transports: list[httpx.AsyncBaseTransport] = []
        self._loading: asyncio.Future[None] | None = None
        self._sdk_clients: dict[tuple[str | None, str | None, str | None], Any] = {}

    def _load(self) -> None:
        module = load_litellm()
        from litellm.llms.custom_httpx.http_handler import get_ssl_configuration

        tls = get_ssl_configuration()  # loads the CA bundle: here, off the event loop
        self._tls = tls if isinstance(tls, ssl.SSLContext | bool) else True
        # On the first broken stream litellm imports its guardrail errors: here instead, off the
        # loop. (It also builds Anthropic's tokenizer then, to count the partial answer's tokens for
        # its failure logging: a one-time 90 ms stall, left lazy because it would cost 35 MB of
        # memory in every process that never sees a broken stream.)
        for name in LAZY_IMPORTS:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        self._module = module
        # litellm's ~1M objects live as long as the process: keep them out of the cyclic GC's way
        # (full collections of them paused requests for half a second in the baseline).
        gc.collect()
        gc.freeze()

    def preload(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))

    async def _litellm(self) -> ModuleType:
        if self._module is None:
            self.preload()
            assert self._loading is not None
            await asyncio.shield(self._loading)
        assert self._module is not None
        # With `set_verbose` on, litellm print()s every request, prompt included, to stdout, where no
        # log redaction sees it. Anything in the process could turn it on; every call turns it off.
        setattr(self._module, "set_verbose", False)  # noqa: B010 (not exported in its stubs)
        return self._module

    def _handler(self, target: UpstreamTarget, *, stream: bool) -> Any:
        """litellm's HTTP handler for stream or non-stream calls to deployments with `target`'s
        deadlines. They ride on the transport: litellm flattens a call's timeout to one number for
        most providers (so the connect deadline would be the whole call's, holding failover back that
        long), and its Gemini non-stream call drops it (waiting for the handler's own 120 s)."""
        key = (stream, target.timeout, target.connect_timeout)
        found = self._handlers.get(key)
        if found is None:
            from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

            # The transport litellm would build for itself (aiohttp unless switched off), under the caps.
            tls = self._tls
            inner = AsyncHTTPHandler.create_async_transport(
                ssl_context=tls if isinstance(tls, ssl.SSLContext) else None,
                ssl_verify=tls if isinstance(tls, bool) else None,
            ) or httpx.AsyncHTTPTransport(verify=tls)
            self._transports.append(inner)
            deadlines = httpx.Timeout(
                target.timeout, connect=target.connect_timeout, pool=target.connect_timeout
            )
            transport = CappedTransport(inner, stream=stream, timeout=deadlines, close_inner=False)
            found = AsyncHTTPHandler(follow_redirects=False, timeout=deadlines, transport=transport)
            self._handlers[key] = found
        return found

    def _client(self, target: UpstreamTarget, *, stream: bool = False) -> Any:
        prefix = target.model.partition("/")[0]
        if prefix in HANDLER_CLIENT_PREFIXES:
            return self._handler(target, stream=stream and prefix in REAL_STREAM_PREFIXES)
        if prefix == "azure":
            return self._azure_client(target)
        return None

    def _azure_client(self, target: UpstreamTarget) -> Any:
        """Azure goes through the OpenAI SDK inside litellm; its default httpx client follows redirects."""
        key = (target.api_base, target.api_version, target.api_key)
        found = self._sdk_clients.get(key)
        if found is None:
            import openai

            http_client = httpx.AsyncClient(
                transport=CappedTransport(httpx.AsyncHTTPTransport()), follow_redirects=False, trust_env=False
            )
            options: dict[str, Any] = {
                "api_key": target.api_key,
                "azure_endpoint": target.api_base or "",
                "api_version": target.api_version,
                "max_retries": 0,
                "http_client": http_client,
            }
            found = openai.AsyncAzureOpenAI(**options)
            self._sdk_clients[key] = found
        return found

    async def chat(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        litellm = await self._litellm()
        try:
            response = await litellm.acompletion(**_kwargs(target, body, self._client(target)))
        except Exception as exc:  # every litellm failure becomes a sanitised UpstreamError
            raise _map_error(litellm, exc) from None
        return _dump(response)

    async def chat_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> LiteLLMStream:
        litellm = await self._litellm()
        kwargs = _kwargs(target, body, self._client(target, stream=True))
        kwargs["stream"] = True
        try:
            response = await litellm.acompletion(**kwargs)
            iterator = aiter(response)
            first = _dump(await anext(iterator))
        except StopAsyncIteration:
            raise UpstreamProtocolError("the upstream stream ended before its first chunk") from None
        except Exception as exc:  # see chat()
            raise _map_error(litellm, exc) from None
        return LiteLLMStream(litellm, iterator, first, target.idle_timeout)

    async def embeddings(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        litellm = await self._litellm()
        kwargs = _kwargs(target, body, self._client(target))
        try:
            response = await litellm.aembedding(**kwargs)
        except Exception as exc:  # see chat()
            raise _map_error(litellm, exc) from None
        return _dump(response)

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            with contextlib.suppress(Exception):  # a failed import already told its caller
                await self._loading
        if self._module is None:
            return
        for handler in self._handlers.values():
            await handler.close()
        for transport in self._transports:
            await transport.aclose()
        for client in self._sdk_clients.values():
            await client.close()
        close = getattr(self._module, "close_litellm_async_clients", None)
        if close is not None:
            try:
                await close()
            except Exception as exc:  # closing is best effort at shutdown; say what failed, never why
                logging.getLogger("sluice.upstream").debug(
                    "closing litellm clients failed: %s", type(exc).__name__
                )
