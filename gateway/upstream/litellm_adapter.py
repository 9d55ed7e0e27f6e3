"""The litellm adapter: translation to every provider's wire format. The only module that imports litellm.

What belongs here: loading litellm offline and quiet (no cost-map download, no beta-header fetch,
no callbacks, no debug logging), building its keyword arguments from an allowlisted body plus
config (never the request body as such), handing litellm HTTP clients that neither follow
redirects nor read past Sluice's caps (`gateway/upstream/limits.py`), and mapping litellm's
exceptions onto Sluice's `UpstreamError`s (`gateway/upstream/litellm_errors.py` decides whose fault
each failure is), and refusing media URLs its translation would download
(`gateway/upstream/media.py`). The OpenAI Responses API goes through `litellm.aresponses`: the
provider's own Responses API where litellm has one (Azure), its bridge to the provider's chat API
otherwise (Anthropic, Gemini, and OpenAI-wire hosts that have no `/responses`). litellm is imported
on first use, so a gateway with only OpenAI-wire deployments never pays its import time or memory.

Also the Messages API's translation (`MessagesTranslation`): an Anthropic Messages request as a
Chat Completions body (litellm's own Anthropic adapter), and a chat answer or stream back as an
Anthropic message or event stream. The chat call in between is the chat pipeline's adapter (the
OpenAI-wire pass-through, or `LiteLLMAdapter.chat`), so every translated call keeps its caps,
its error mapping and its media refusal; the token count of a non-Anthropic deployment is
litellm's local estimate (`token_counter`: the model's tokenizer where litellm has it, else a
generic one).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import operator
import os
import ssl
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx
import orjson

from gateway.upstream import sse
from gateway.upstream.base import (
    ChatStream,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRequestRejected,
    UpstreamStreamError,
    UpstreamTarget,
)
from gateway.upstream.limits import CappedTransport
from gateway.upstream.litellm_errors import CURRENT_CALL, Call, MarkSent, map_error
from gateway.upstream.litellm_transform import (
    NotHere,
    Transformer,
    open_stream,
    path_for,
    translate_call,
)
from gateway.upstream.media import refuse_fetched_media
from gateway.upstream.providers import ROUTES

# Set before litellm is imported; forced, so a stray shell variable cannot turn downloads back on.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_DISABLE_LAZY_LOADING": "",
    # litellm downloads image and file URLs itself to inline them for most providers: a connection to
    # a host the client chose. 0 switches every such download off (`gateway/upstream/media.py`
    # refuses those requests first; this covers any path it does not know).
    "MAX_IMAGE_URL_DOWNLOAD_SIZE_MB": "0",
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
    _drop_duplicate_data()
    return litellm


def _drop_duplicate_data() -> None:
    """Free two copies of data litellm keeps beside the one it uses (bench/PROFILE.md, issue 15).

    - `get_bundled_model_cost_map()` parses the bundled model map a second time on the first
      Anthropic call (its capability lookups fall back to it): ~17 MB of RSS for a copy of the
      map `LITELLM_LOCAL_MODEL_COST_MAP` already made `litellm.model_cost` from. It answers with
      litellm's own snapshot of that load (`GetModelCostMap.loaded_model_cost_map()`) instead.
    - `litellm.utils.json_data`: Anthropic's tokenizer file as Python objects (~13 MB), read at
      import only to make `claude_json_str`, which the tokenizer uses (kept).
    """
    from litellm import utils
    from litellm.litellm_core_utils.get_model_cost_map import GetModelCostMap

    for name in ("get_bundled_model_cost_map", "_get_bundled_model_cost_map"):
        setattr(utils, name, GetModelCostMap.loaded_model_cost_map)
    vars(utils).pop("json_data", None)


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


def _translatable(litellm: ModuleType, body: dict[str, Any]) -> dict[str, Any]:
    """The body without the OpenAI fields litellm does not know (`moderation`,
    `prompt_cache_options`): litellm would put those into the provider's body as provider-specific
    keys, which Anthropic and Gemini refuse as unknown, where `drop_params` drops a known field
    the provider lacks. Sluice drops them the same way (docs/fields.md). `metadata` stays: litellm
    maps its `user_id` to Anthropic's `metadata.user_id`."""
    known = frozenset(litellm.OPENAI_CHAT_COMPLETION_PARAMS) | {"messages", "metadata"}
    if known.issuperset(body):
        return body
    return {key: value for key, value in body.items() if key in known}


def _with_required_nulls(data: dict[str, Any], *, chunk: bool) -> dict[str, Any]:
    """A translated completion or chunk with the fields OpenAI's schema requires even when null
    (`_dump` leaves out every None): a choice's `logprobs`, a message's `content` and `refusal`,
    a chunk choice's `finish_reason` and `delta`. Strict clients validate these."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        if chunk:
            choice.setdefault("delta", {})
            choice.setdefault("finish_reason", None)
            continue
        choice.setdefault("logprobs", None)
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("content", None)
            message.setdefault("refusal", None)
    return data


_RESPONSE_NULLS = ("error", "incomplete_details", "instructions", "temperature", "top_p", "metadata")


def _text_part(part: Any) -> None:
    if isinstance(part, dict) and part.get("type") == "output_text":
        part.setdefault("annotations", [])
        part.setdefault("logprobs", [])


def _output_item(item: Any) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("content", []), list):
        return
    if item.get("type") == "message":
        for part in item["content"]:
            _text_part(part)
    elif item.get("type") == "reasoning":
        # litellm's bridge writes reasoning text as `output_text` parts and leaves out `summary`
        item.setdefault("summary", [])
        for part in item.get("content", []):
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part.get("text", "")
                part.clear()
                part.update({"type": "reasoning_text", "text": text})


def _response_required(response: Any) -> None:
    if isinstance(response, dict):
        for name in _RESPONSE_NULLS:
            response.setdefault(name, None)
        usage = response.get("usage")
        details = usage.get("input_tokens_details") if isinstance(usage, dict) else None
        if isinstance(details, dict):
            details.setdefault("cache_write_tokens", 0)
        output = response.get("output")
        for item in output if isinstance(output, list) else ():
            _output_item(item)
        tools = response.get("tools")
        for tool in tools if isinstance(tools, list) else ():
            if isinstance(tool, dict) and tool.get("type") == "function":
                tool.setdefault("strict", None)
                tool.setdefault("parameters", None)


def _with_required_responses(data: dict[str, Any], names: dict[str, str] | None = None) -> dict[str, Any]:
    """A bridged Responses answer or stream event with the fields OpenAI's schema requires even when
    null or empty (`_dump` leaves out every None, and litellm's bridge builds no text `logprobs`):
    a response's `error`, `incomplete_details`, `instructions`, `temperature`, `top_p`, `metadata`
    (null) and `usage.input_tokens_details.cache_write_tokens` (0: the bridge reports no cache
    writes), a function tool's `strict` and `parameters` (null), an `output_text` part's `logprobs`
    and `annotations`, a text event's `logprobs`, and in a stream (`names`: the function names by
    item id, seen so far) the `name` of `response.function_call_arguments.done`."""
    if data.get("object") == "response":
        _response_required(data)
        return data
    _response_required(data.get("response"))
    _output_item(data.get("item"))
    _text_part(data.get("part"))
    if data.get("type") in ("response.output_text.delta", "response.output_text.done"):
        data.setdefault("logprobs", [])
    item = data.get("item")
    if names is not None and isinstance(item, dict) and isinstance(item.get("name"), str):
        names[str(item.get("id"))] = item["name"]
    if names is not None and data.get("type") == "response.function_call_arguments.done":
        data.setdefault("name", names.get(str(data.get("item_id")), ""))
    return data


def _dump(obj: Any, *, json: bool = False) -> dict[str, Any]:
    """litellm's answer as a dict; `json`: enums as their values (Responses events' `type`)."""
    if isinstance(obj, dict):
        return obj
    dumped = obj.model_dump(mode="json", exclude_none=True) if json else obj.model_dump(exclude_none=True)
    if not isinstance(dumped, dict):
        raise UpstreamProtocolError("litellm returned an unexpected object")
    return dumped


def _chat_frame(data: dict[str, Any]) -> bytes:
    return sse.frame(orjson.dumps(data))


def _responses_frame(data: dict[str, Any]) -> bytes:
    return sse.typed(str(data.get("type", "message")), orjson.dumps(data))


def _responses_usage(data: dict[str, Any]) -> Any:
    response = data.get("response")
    return response.get("usage") if isinstance(response, dict) else None


class LiteLLMStream:
    """litellm's chunks (or Responses events) as SSE frames: `data:` lines ending with `[DONE]`
    for Chat Completions, named events (`sse.typed`) with no end mark for Responses."""

    def __init__(
        self,
        litellm: ModuleType,
        iterator: AsyncIterator[Any],
        first: dict[str, Any],
        idle: float | None = None,
        *,
        responses: bool = False,
    ) -> None:
        self.first = first
        self._frame = _responses_frame if responses else _chat_frame
        self._usage_of: Any = _responses_usage if responses else operator.itemgetter("usage")
        self._end = b"" if responses else sse.DONE
        self._json = responses
        self._names: dict[str, str] = {}  # Responses: function names by output item id
        self.usage: dict[str, Any] | None = self._usage(first)
        if responses:
            _with_required_responses(first, self._names)
        self._litellm = litellm
        self._iterator = iterator
        self._idle = idle

    def _usage(self, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            usage = self._usage_of(data)
        except KeyError:
            return None
        return usage if isinstance(usage, dict) else None

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
                data = _dump(chunk, json=self._json)
                if self._json:
                    data = _with_required_responses(data, self._names)
                else:
                    data = _with_required_nulls(data, chunk=True)
                self.usage = self._usage(data) or self.usage
                yield self._frame(data)
        except UpstreamError:
            raise
        except Exception as exc:  # litellm raises many types mid-stream; all end the stream in-band
            mapped = map_error(self._litellm, exc)
            raise UpstreamStreamError(f"the upstream stream broke: {mapped.message}") from None
        if self._end:
            yield self._end

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

    def __init__(self, *, transform: bool = True, max_connections_per_host: int | None = None) -> None:
        """`transform`: drive litellm's provider transformations over Sluice's transport for the
        providers `gateway/upstream/litellm_transform.py` covers (`path_for`); False sends every
        call through `litellm.acompletion`. `max_connections_per_host`: that transport's cap
        (`SLUICE_UPSTREAM_MAX_CONNECTIONS_PER_HOST`; None: the transport's default)."""
        self._use_transform = transform
        self._per_host = max_connections_per_host
        self._transformer: Transformer | None = None
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
        if self._use_transform:
            self._transformer = Transformer(module, max_connections_per_host=self._per_host)
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
            transport = MarkSent(CappedTransport(inner, stream=stream, timeout=deadlines, close_inner=False))
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
        return self._sdk_client(target, azure=True)

    def _sdk_client(self, target: UpstreamTarget, *, azure: bool) -> Any:
        """An OpenAI SDK client on httpx that neither follows redirects nor reads past the caps."""
        key = (target.api_base, target.api_version if azure else "openai", target.api_key)
        found = self._sdk_clients.get(key)
        if found is None:
            import openai

            http_client = httpx.AsyncClient(
                transport=MarkSent(CappedTransport(httpx.AsyncHTTPTransport())),
                follow_redirects=False,
                trust_env=False,
            )
            options: dict[str, Any] = {
                "api_key": target.api_key,
                "max_retries": 0,
                "http_client": http_client,
            }
            if azure:
                options |= {"azure_endpoint": target.api_base or "", "api_version": target.api_version}
                found = openai.AsyncAzureOpenAI(**options)
            else:
                found = openai.AsyncOpenAI(base_url=target.api_base, **options)
            self._sdk_clients[key] = found
        return found

    def path(self, target: UpstreamTarget) -> str:
        """Which path calls to `target` take: `transform` or `acompletion`."""
        return path_for(target.model) if self._use_transform else "acompletion"

    def _responses_kwargs(
        self, target: UpstreamTarget, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        """`litellm.aresponses`'s arguments. Its Responses handlers (Azure's) take the HTTP handler
        as `client`; its bridge hands `client` on to `acompletion`, which takes the chat path's.
        An OpenAI-wire host reaches this adapter only when it has no `/responses`: the bridge then
        calls its chat API through the OpenAI SDK, on a client that does not follow redirects."""
        prefix = target.model.partition("/")[0]
        if prefix == "azure":
            return _kwargs(target, body, self._handler(target, stream=stream))
        if body.get("previous_response_id") is not None:
            # The bridge keeps no conversations; litellm would look for one elsewhere (its proxy's
            # store, or a provider's API): never. The pipeline pins such requests to deployments that
            # keep them (`gateway.core.continuations`), so this guards a path that is not taken.
            raise UpstreamRequestRejected("previous_response_id needs a deployment that keeps responses")
        client: Any
        if prefix in ROUTES and ROUTES[prefix].openai_wire:
            client = self._sdk_client(target, azure=False)
        else:
            client = self._client(target, stream=stream)
        kwargs = _kwargs(target, body, client)
        kwargs["use_chat_completions_api"] = True
        return kwargs

    async def chat(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        litellm = await self._litellm()
        refuse_fetched_media(target.model.partition("/")[0], body)
        if self._transformer is not None and path_for(target.model) == "transform":
            with contextlib.suppress(NotHere):
                fields = _translatable(litellm, body)
                prepared = await translate_call(self._transformer, litellm, target, fields, stream=False)
                return _with_required_nulls(await self._transformer.complete(target, prepared), chunk=False)
        client = self._client(target)
        call = Call(marked=client is not None)
        token = CURRENT_CALL.set(call)
        try:
            response = await litellm.acompletion(**_kwargs(target, _translatable(litellm, body), client))
        except Exception as exc:  # every litellm failure becomes a sanitised UpstreamError
            raise map_error(litellm, exc, sent=call.sent) from None
        finally:
            CURRENT_CALL.reset(token)
        return _with_required_nulls(_dump(response), chunk=False)

    async def chat_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> ChatStream:
        litellm = await self._litellm()
        refuse_fetched_media(target.model.partition("/")[0], body)
        if self._transformer is not None and path_for(target.model) == "transform":
            with contextlib.suppress(NotHere):
                fields = _translatable(litellm, body)
                prepared = await translate_call(self._transformer, litellm, target, fields, stream=True)
                options = body.get("stream_options")
                usage = isinstance(options, dict) and options.get("include_usage") is True
                return await open_stream(self._transformer, litellm, target, prepared, usage)
        client = self._client(target, stream=True)
        kwargs = _kwargs(target, _translatable(litellm, body), client)
        kwargs["stream"] = True
        call = Call(marked=client is not None)
        token = CURRENT_CALL.set(call)
        try:
            response = await litellm.acompletion(**kwargs)
            iterator = aiter(response)
            first = _with_required_nulls(_dump(await anext(iterator)), chunk=True)
        except StopAsyncIteration:
            raise UpstreamProtocolError("the upstream stream ended before its first chunk") from None
        except Exception as exc:  # see chat()
            raise map_error(litellm, exc, sent=call.sent) from None
        finally:
            CURRENT_CALL.reset(token)
        return LiteLLMStream(litellm, iterator, first, target.idle_timeout)

    async def embeddings(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        litellm = await self._litellm()
        client = self._client(target)
        kwargs = _kwargs(target, body, client)
        call = Call(marked=client is not None)
        token = CURRENT_CALL.set(call)
        try:
            response = await litellm.aembedding(**kwargs)
        except Exception as exc:  # see chat()
            raise map_error(litellm, exc, sent=call.sent) from None
        finally:
            CURRENT_CALL.reset(token)
        return _dump(response)

    async def responses(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        litellm = await self._litellm()
        refuse_fetched_media(target.model.partition("/")[0], body)
        kwargs = self._responses_kwargs(target, body, stream=False)
        call = Call(marked=kwargs.get("client") is not None)
        token = CURRENT_CALL.set(call)
        try:
            response = await litellm.aresponses(**kwargs)
        except Exception as exc:  # see chat()
            raise map_error(litellm, exc, sent=call.sent) from None
        finally:
            CURRENT_CALL.reset(token)
        return _with_required_responses(_dump(response, json=True))

    async def responses_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> LiteLLMStream:
        litellm = await self._litellm()
        refuse_fetched_media(target.model.partition("/")[0], body)
        kwargs = self._responses_kwargs(target, body, stream=True)
        kwargs["stream"] = True
        call = Call(marked=kwargs.get("client") is not None)
        token = CURRENT_CALL.set(call)
        try:
            response = await litellm.aresponses(**kwargs)
            iterator = aiter(response)
            first = _with_required_responses(_dump(await anext(iterator), json=True))
        except StopAsyncIteration:
            raise UpstreamProtocolError("the upstream stream ended before its first event") from None
        except Exception as exc:  # see chat()
            raise map_error(litellm, exc, sent=call.sent) from None
        finally:
            CURRENT_CALL.reset(token)
        return LiteLLMStream(litellm, iterator, first, target.idle_timeout, responses=True)

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            with contextlib.suppress(Exception):  # a failed import already told its caller
                await self._loading
        if self._module is None:
            return
        if self._transformer is not None:
            await self._transformer.aclose()
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


# What a translated Messages request may carry to a chat call: Chat Completions fields only (the
# translation passes fields it does not know through as they are; those never reach a chat call).
TRANSLATED_CHAT_FIELDS = frozenset(
    {
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "stream",
        "stream_options",
        "web_search_options",
    }
)
ERROR_EVENT_MARK = b"event: error"


def _chat_chunks(litellm: ModuleType, opened: ChatStream) -> AsyncIterator[Any]:
    """An opened chat stream (first chunk parsed, the rest SSE bytes) as litellm's chunk objects."""

    async def chunks() -> AsyncIterator[Any]:
        yield litellm.ModelResponseStream(**opened.first)
        async for data in sse.data_events(aiter(opened)):
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamStreamError("the upstream sent a stream event that is not JSON") from None
            if isinstance(parsed, dict):
                yield litellm.ModelResponseStream(**parsed)

    return chunks()


def _supports_reasoning(litellm: ModuleType, model: str) -> bool:
    """Does litellm's (offline) model map say `model` reasons? Unknown models: no."""
    try:
        return bool(litellm.supports_reasoning(model=model))
    except Exception:  # litellm raises for models it does not know; unknown means no
        return False


class TranslatedMessages:
    """A chat stream translated to Anthropic's events: `first` is `message_start` (parsed, so the
    privacy object can ride on it); iterating yields the rest, framed. An error event the
    translation writes is never relayed: it ends the stream as the pass-through's does."""

    def __init__(
        self, events: AsyncIterator[bytes], first: dict[str, Any], rest: bytes, opened: ChatStream
    ) -> None:
        self.first = first
        self._events = events
        self._rest = rest
        self._opened = opened
        message = first.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        self.usage: dict[str, Any] | None = dict(usage) if isinstance(usage, dict) else {}

    def _note(self, chunk: bytes) -> None:
        if ERROR_EVENT_MARK in chunk:
            raise UpstreamStreamError("the upstream stream broke")
        if b'"message_delta"' in chunk and self.usage is not None:
            for data in sse.data_of(chunk):
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    usage = orjson.loads(data).get("usage")
                    if isinstance(usage, dict):
                        self.usage.update(usage)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self._rest:
                self._note(self._rest)
                yield self._rest
            async for chunk in self._events:
                self._note(chunk)
                yield chunk
        except UpstreamError:
            raise
        except Exception as exc:  # the translation's own failure: end the stream in-band, no text of it
            raise UpstreamStreamError(f"the stream's translation failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        close = getattr(self._events, "aclose", None)
        try:
            if close is not None:
                with contextlib.suppress(Exception):  # closing a half-read generator; the upstream below
                    await close()
        finally:
            await self._opened.aclose()


class MessagesTranslation:
    """Anthropic Messages <-> Chat Completions, with litellm's adapter (imported through `adapter`)."""

    def __init__(self, adapter: LiteLLMAdapter) -> None:
        self._adapter = adapter

    async def request(
        self, target: UpstreamTarget, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The chat body for `body` (allowlisted Messages fields), and the tool names it shortened."""
        litellm = await self._adapter._litellm()
        from litellm.llms.anthropic.messages.adapters.handler import ANTHROPIC_ADAPTER

        kwargs = {k: v for k, v in body.items() if k != "stream"}
        kwargs["model"] = target.model
        try:
            translated, mapping = ANTHROPIC_ADAPTER.translate_completion_input_params_with_tool_mapping(
                kwargs, custom_llm_provider=target.model.partition("/")[0] or None, drop_params=True
            )
        except Exception as exc:  # a body the translation cannot carry: the client's fault, no text of it
            raise UpstreamRequestRejected(
                f"the request cannot be translated for this deployment ({type(exc).__name__})"
            ) from None
        if translated is None:
            raise UpstreamRequestRejected("the request cannot be translated for this deployment")
        chat = {k: v for k, v in dict(translated).items() if k in TRANSLATED_CHAT_FIELDS and v is not None}
        if _supports_reasoning(litellm, target.model):
            # OpenAI's reasoning models refuse `max_tokens`; every OpenAI-wire model takes this one.
            if "max_tokens" in chat:
                chat["max_completion_tokens"] = chat.pop("max_tokens")
        else:
            # `thinking` becomes `reasoning_effort`, which a model without reasoning refuses (400); the
            # OpenAI-wire pass-through would send it as it is (litellm's own calls drop it themselves).
            chat.pop("reasoning_effort", None)
        if body.get("stream"):
            chat["stream"] = True
            chat["stream_options"] = {"include_usage": True}
        return orjson.loads(orjson.dumps(chat)), dict(mapping or {})

    async def response(self, result: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
        litellm = await self._adapter._litellm()
        from litellm.llms.anthropic.messages.adapters.handler import ANTHROPIC_ADAPTER

        try:
            message = ANTHROPIC_ADAPTER.translate_completion_output_params(
                litellm.ModelResponse(**result), tool_name_mapping=mapping or None
            )
        except Exception as exc:
            raise UpstreamProtocolError(
                f"the upstream answer cannot be translated ({type(exc).__name__})"
            ) from None
        if message is None:
            raise UpstreamProtocolError("the upstream answer cannot be translated")
        dumped = message if isinstance(message, dict) else _dump(message)
        answer: dict[str, Any] = orjson.loads(orjson.dumps(dumped, default=_dump))
        return answer

    async def stream(self, opened: ChatStream, mapping: dict[str, str], model: str) -> TranslatedMessages:
        litellm = await self._adapter._litellm()
        from litellm.llms.anthropic.messages.adapters.handler import ANTHROPIC_ADAPTER

        events = ANTHROPIC_ADAPTER.translate_completion_output_params_streaming(
            _chat_chunks(litellm, opened), model=model, tool_name_mapping=mapping or None, is_async=True
        )
        if not isinstance(events, AsyncIterator):
            await opened.aclose()
            raise UpstreamProtocolError("the upstream stream cannot be translated")
        try:
            first, rest = await sse.first_event(events)
        except UpstreamError:
            await opened.aclose()
            raise
        except BaseException as exc:
            await opened.aclose()
            if isinstance(exc, Exception):
                raise UpstreamProtocolError(
                    f"the upstream stream cannot be translated ({type(exc).__name__})"
                ) from None
            raise
        if first.get("type") != "message_start":
            await opened.aclose()
            raise UpstreamProtocolError("the translated stream did not begin with message_start")
        return TranslatedMessages(events, first, rest, opened)

    async def count_tokens(self, target: UpstreamTarget, body: dict[str, Any]) -> int:
        """litellm's local estimate of the input tokens (no upstream call), in a worker thread."""
        chat, _ = await self.request(target, {**body, "max_tokens": 1})
        litellm = await self._adapter._litellm()

        def count() -> int:
            return int(
                litellm.token_counter(model=target.model, messages=chat["messages"], tools=chat.get("tools"))
            )

        try:
            return await asyncio.to_thread(count)
        except Exception as exc:
            raise UpstreamRequestRejected(
                f"the tokens of this request cannot be counted ({type(exc).__name__})"
            ) from None
