"""litellm's provider translations over Sluice's own transport: the translation path without litellm's
call machinery.

What belongs here: for the providers where litellm's transformation layer can be driven on its own
(`TRANSFORM_PREFIXES`), building the provider's request with litellm's provider config
(`get_optional_params`, `validate_environment`, `get_complete_url`, `transform_request`,
`sign_request`), sending it on Sluice's transport (`FastTransport` under `CappedTransport`, no
redirects, Sluice's deadlines), turning the answer back with the provider's `transform_response` or
its stream iterator (Anthropic's fed line by line, `_AnthropicChunks`), and shaping stream chunks as
litellm's `CustomStreamWrapper` would (role on the first chunk, empty chunks dropped, the finish
reason on its own last chunk, usage only when asked for). What `litellm.acompletion` adds per call
(its logging object, cost calculation, callbacks, retries, the stream wrapper's per-chunk
bookkeeping) is what this path leaves out; that is where the translation path's CPU went
(`bench/PROFILE.md`).

Which provider takes which path is `path_for()`; everything not listed keeps `litellm.acompletion`
(`gateway/upstream/litellm_adapter.py`). Errors are Sluice's: a non-2xx answer becomes
`UpstreamStatusError` as on the pass-through, transport failures the pass-through's classes, and a
failure inside litellm's code goes through `gateway/upstream/litellm_errors.py` (before anything was
sent: the translation refused the input, the client's fault). litellm itself is imported by
`gateway/upstream/litellm_adapter.py`; its submodules are imported here once it is loaded.
"""

from __future__ import annotations

import codecs
import copy
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any, Literal

import httpx
import orjson

from gateway.upstream import sse
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
from gateway.upstream.causes import Cause
from gateway.upstream.idle import IdleDeadline
from gateway.upstream.limits import MAX_BODY_BYTES, CappedTransport
from gateway.upstream.litellm_errors import CURRENT_CALL, Call, MarkSent, map_error
from gateway.upstream.openai_wire import MAX_ERROR_BYTES, _error_code, _read_capped, _transport_error
from gateway.upstream.transport import FastTransport

Path = Literal["transform", "acompletion"]
# prefix -> the recipe that drives litellm's transformation for it. Every other prefix (Bedrock,
# Azure, Ollama, Vertex's partner models) keeps `litellm.acompletion`; `FALLBACK_REASONS` says why.
TRANSFORM_PREFIXES: dict[str, str] = {
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex_ai": "gemini",  # Gemini models on Vertex only (`path_for`)
    "mistral": "http_handler",
    "cohere_chat": "http_handler",
    "cohere": "http_handler",
}
FALLBACK_REASONS: dict[str, str] = {
    "bedrock": (
        "its answers are AWS event streams and its requests are SigV4-signed from the AWS credential "
        "chain; litellm's Bedrock handler (event-stream decoder, signing, fake streams for some models) "
        "is not reachable through the transformation layer alone"
    ),
    "azure": "litellm drives Azure through the OpenAI SDK, not a provider transformation",
    "ollama": "litellm's Ollama handler, not the transformation layer",
    "ollama_chat": "litellm's Ollama handler, not the transformation layer",
    "vertex_ai": "a Vertex partner model (Claude, Llama, ...): litellm's per-partner handlers",
}
# The base URL litellm's `completion()` uses when the deployment gives none (a simulated deployment
# and `gateway/upstream/providers.py` give one for most).
DEFAULT_BASES: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "mistral": "https://api.mistral.ai/v1",
    "cohere_chat": "https://api.cohere.com/v2/chat",
    "cohere": "https://api.cohere.com/v2/chat",
}


# Body fields that are not provider parameters: the messages, the stream flag (set per call), and
# `metadata`, which `litellm.acompletion` keeps in its litellm_params, where a provider's
# transformation reads what it sends (Anthropic: `metadata.user_id`).
NOT_PARAMS = frozenset({"messages", "stream", "metadata"})


def path_for(model: str) -> Path:
    """Which path a deployment's litellm model id takes: litellm's transformations over Sluice's
    transport, or `litellm.acompletion`."""
    prefix, _, rest = model.partition("/")
    if prefix not in TRANSFORM_PREFIXES:
        return "acompletion"
    if prefix == "vertex_ai" and not rest.startswith("gemini"):
        return "acompletion"
    return "transform"


class _QuietLog:
    """What litellm's transformations read from and report to their logging object, and nothing more:
    no callbacks, no cost, no payload kept."""

    def __init__(self, optional_params: dict[str, Any], litellm_params: dict[str, Any]) -> None:
        self.optional_params = optional_params
        self.litellm_params = litellm_params
        self.model_call_details: dict[str, Any] = {
            "optional_params": optional_params,
            "litellm_params": litellm_params,
        }

    def pre_call(self, *args: Any, **kwargs: Any) -> None:
        return None

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record_native_bedrock_guardrail(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Prepared:
    """One translated request: where it goes, what it carries, and what the answer's parser needs."""

    recipe: str
    provider: str
    model: str
    url: str
    headers: dict[str, Any]
    payload: bytes
    data: dict[str, Any]
    messages: list[Any]
    optional_params: dict[str, Any]
    litellm_params: dict[str, Any]
    api_key: str | None
    json_mode: bool = False
    config: Any = None
    log: _QuietLog = field(default_factory=lambda: _QuietLog({}, {}))


class Transformer:
    """The transformation path. Holds one pooled client on Sluice's transport for all its calls."""

    def __init__(self, litellm: ModuleType, *, max_connections_per_host: int | None = None) -> None:
        self._litellm = litellm
        from litellm.litellm_core_utils.get_litellm_params import get_litellm_params
        from litellm.litellm_core_utils.get_llm_provider_logic import get_llm_provider
        from litellm.types.utils import LlmProviders, ModelResponse
        from litellm.utils import ProviderConfigManager, get_optional_params, validate_and_fix_openai_messages

        self._get_litellm_params = get_litellm_params
        self._get_optional_params = get_optional_params
        self._fix_messages = validate_and_fix_openai_messages
        self._model_response = ModelResponse
        self._vertex: Any = None

        @lru_cache(maxsize=256)  # keyed by config's model ids only: bounded by the config
        def resolve(model: str) -> tuple[str, str, Any]:
            name, provider, _, _ = get_llm_provider(model)
            config = ProviderConfigManager.get_provider_chat_config(
                model=name, provider=LlmProviders(provider)
            )
            return name, provider, config

        self._resolve: Callable[[str], tuple[str, str, Any]] = resolve

        def transport() -> FastTransport:
            if max_connections_per_host is None:
                return FastTransport()
            return FastTransport(max_connections_per_host=max_connections_per_host)

        self._client = httpx.AsyncClient(
            transport=MarkSent(CappedTransport(transport())),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(120.0, connect=5.0),
        )
        self._stream_client = httpx.AsyncClient(
            transport=MarkSent(CappedTransport(transport(), stream=True)),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(120.0, connect=5.0),
        )

    # -- request ----------------------------------------------------------------------------------
    async def prepare(self, target: UpstreamTarget, body: dict[str, Any], *, stream: bool) -> Prepared:
        model, provider, config = self._resolve(target.model)
        if config is None:
            raise UpstreamProtocolError("no litellm transformation for this provider")
        messages = list(self._fix_messages(copy.deepcopy(body.get("messages") or [])))
        messages = list(
            config.translate_developer_role_to_system_role(
                messages=messages,
                model=model,
                custom_llm_provider=provider,
                api_base=target.api_base,
                model_info=None,
            )
        )
        params = {name: value for name, value in body.items() if name not in NOT_PARAMS}
        optional = self._get_optional_params(
            model=model,
            custom_llm_provider=provider,
            messages=messages,
            drop_params=True,
            stream=True if stream else None,
            api_version=target.api_version,
            **params,
        )
        litellm_params = self._get_litellm_params(
            metadata=body.get("metadata"),
            api_key=target.api_key,
            api_base=target.api_base,
            custom_llm_provider=provider,
            drop_params=True,
            api_version=target.api_version,
        )
        recipe = TRANSFORM_PREFIXES[target.model.partition("/")[0]]
        if recipe == "anthropic":
            return self._anthropic(target, model, config, messages, optional, litellm_params, stream)
        if recipe == "gemini":
            return await self._gemini(target, model, provider, messages, optional, litellm_params, stream)
        return await self._http_handler(
            target, model, provider, config, messages, optional, litellm_params, stream
        )

    def _anthropic(
        self,
        target: UpstreamTarget,
        model: str,
        config: Any,
        messages: list[Any],
        optional: dict[str, Any],
        litellm_params: dict[str, Any],
        stream: bool,
    ) -> Prepared:
        """As litellm's `AnthropicChatCompletion.completion` builds it (llms/anthropic/chat/handler.py)."""
        from litellm.anthropic_beta_gated_fields import strip_beta_gated_request_body
        from litellm.anthropic_beta_headers_manager import update_request_with_filtered_beta
        from litellm.litellm_core_utils.url_utils import ensure_api_route

        optional = copy.deepcopy(optional)
        optional.pop("stream", None)
        json_mode = bool(optional.pop("json_mode", False))
        optional.pop("is_vertex_request", None)
        optional.pop("vertex_count_tokens_location", None)
        base = ensure_api_route(target.api_base or DEFAULT_BASES["anthropic"], "v1/messages")
        transform_params = {**optional, "is_vertex_request": False}
        headers = config.validate_environment(
            api_key=target.api_key,
            headers={},
            model=model,
            messages=messages,
            optional_params=transform_params,
            litellm_params=litellm_params,
            api_base=base,
        )
        data = config.transform_request(
            model=model,
            messages=messages,
            optional_params=transform_params,
            litellm_params=litellm_params,
            headers=headers,
        )
        headers, data = update_request_with_filtered_beta(
            headers=headers, request_data=data, provider="anthropic", api_base=base
        )
        data = dict(
            strip_beta_gated_request_body(data, headers, drop_params=True, model=model, provider="anthropic")
        )
        if stream:
            data["stream"] = True
        return Prepared(
            "anthropic",
            "anthropic",
            model,
            base,
            dict(headers),
            orjson.dumps(data),
            data,
            messages,
            optional,
            litellm_params,
            target.api_key,
            json_mode,
            config,
            _QuietLog(optional, litellm_params),
        )

    async def _gemini(
        self,
        target: UpstreamTarget,
        model: str,
        provider: str,
        messages: list[Any],
        optional: dict[str, Any],
        litellm_params: dict[str, Any],
        stream: bool,
    ) -> Prepared:
        """As litellm's `VertexLLM.async_completion` / `async_streaming` build it, for one request: no
        context-cache creation (a call of litellm's own client), no thought-signature retry, no
        long-decode continuation hops."""
        from litellm.llms.vertex_ai.gemini.transformation import async_transform_request_body
        from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import (
            VertexGeminiConfig,
            VertexLLM,
        )

        if self._vertex is None:
            self._vertex = VertexLLM()
        vertex = self._vertex
        optional = copy.deepcopy(optional)
        optional.pop("stream", None)
        try:  # Google's credential chain (google-auth, its own token endpoint); nothing of the request
            auth, project = await vertex._ensure_access_token_async(
                credentials=None, project_id=target.vertex_project, custom_llm_provider=provider
            )
        except Exception as exc:  # the deployment's setup, never the client's request: fail over
            why = type(exc).__name__
            raise UpstreamConnectError(
                f"no Vertex AI credentials ({why})", cause=f"credentials: {why}"
            ) from None
        auth, url = vertex._get_token_and_url(
            model=model,
            gemini_api_key=target.api_key,
            auth_header=auth,
            vertex_project=project or target.vertex_project,
            vertex_location=target.vertex_location,
            vertex_credentials=None,
            stream=stream,
            custom_llm_provider=provider,
            api_base=target.api_base,
        )
        config = VertexGeminiConfig()
        headers = config.validate_environment(
            api_key=auth,
            headers=None,
            model=model,
            messages=messages,
            optional_params=optional,
            litellm_params=litellm_params,
        )
        log: Any = _QuietLog(optional, litellm_params)
        scope: Any = provider
        built = await async_transform_request_body(
            gemini_api_key=target.api_key,
            messages=messages,
            api_base=target.api_base,
            model=model,
            client=None,
            timeout=target.timeout,
            extra_headers=None,
            optional_params=optional,
            logging_obj=log,
            custom_llm_provider=scope,
            litellm_params=litellm_params,
            vertex_project=project or target.vertex_project,
            vertex_location=target.vertex_location,
            vertex_auth_header=auth,
            context_caching=False,
        )
        data: dict[str, Any] = dict(built)
        return Prepared(
            "gemini",
            provider,
            model,
            url,
            dict(headers),
            orjson.dumps(data),
            data,
            messages,
            optional,
            litellm_params,
            target.api_key,
            False,
            config,
            log,
        )

    async def _http_handler(
        self,
        target: UpstreamTarget,
        model: str,
        provider: str,
        config: Any,
        messages: list[Any],
        optional: dict[str, Any],
        litellm_params: dict[str, Any],
        stream: bool,
    ) -> Prepared:
        """As litellm's generic `BaseLLMHTTPHandler.completion` builds it (llm_http_handler.py)."""
        json_mode = bool(optional.pop("json_mode", False))
        optional.pop("extra_body", None)
        if optional.pop("fake_stream", False) or config.should_fake_stream(
            model=model, custom_llm_provider=provider, stream=stream
        ):
            raise NotHere("litellm fakes this model's streams")
        if stream and config.has_custom_stream_wrapper:
            raise NotHere("litellm wraps this provider's streams itself")
        api_base = target.api_base or DEFAULT_BASES.get(provider)
        headers = config.validate_environment(
            api_key=target.api_key,
            headers={},
            model=model,
            messages=messages,
            optional_params=optional,
            api_base=api_base,
            litellm_params=litellm_params,
        )
        url = config.get_complete_url(
            api_base=api_base,
            api_key=target.api_key,
            model=model,
            optional_params=optional,
            stream=stream,
            litellm_params=litellm_params,
        )
        if config.uses_async_transform_request:
            data = await config.async_transform_request(
                model=model,
                messages=messages,
                optional_params=optional,
                litellm_params=litellm_params,
                headers=headers,
            )
        else:
            data = config.transform_request(
                model=model,
                messages=messages,
                optional_params=optional,
                litellm_params=litellm_params,
                headers=headers,
            )
        if stream and config.supports_stream_param_in_request_body:
            data["stream"] = True
        headers, signed = config.sign_request(
            headers=headers,
            optional_params=optional,
            request_data=data,
            api_base=url,
            api_key=target.api_key,
            stream=stream,
            fake_stream=False,
            model=model,
        )
        payload = signed if signed is not None else orjson.dumps(data)
        return Prepared(
            "http_handler",
            provider,
            model,
            url,
            dict(headers),
            payload,
            data,
            messages,
            optional,
            litellm_params,
            target.api_key,
            json_mode,
            config,
            _QuietLog(optional, litellm_params),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._stream_client.aclose()

    # -- wire -------------------------------------------------------------------------------------
    async def send(self, target: UpstreamTarget, prepared: Prepared, *, stream: bool) -> httpx.Response:
        client = self._stream_client if stream else self._client
        timeout = httpx.Timeout(
            connect=target.connect_timeout,
            read=target.timeout,
            write=target.timeout,
            pool=target.connect_timeout,
        )
        headers = {str(name): str(value) for name, value in prepared.headers.items()}
        request = client.build_request(
            "POST",
            prepared.url,
            content=prepared.payload,
            headers=headers,
            extensions={"timeout": timeout.as_dict()},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if response.status_code >= 300:
            try:
                raw = await _read_capped(response, MAX_ERROR_BYTES)
            except (UpstreamError, httpx.HTTPError):
                raw = b""
            finally:
                await response.aclose()
            if response.status_code < 400:
                raise UpstreamProtocolError(
                    f"the upstream redirected (HTTP {response.status_code}); not followed"
                )
            code = _error_code(raw)
            if response.status_code == 429 and any(m.encode() in raw.lower() for m in QUOTA_MARKERS):
                # As `litellm_errors.map_error` reads litellm's message: a yes/no, nothing of it kept
                # (Gemini says "quota" only in its message, with status RESOURCE_EXHAUSTED).
                code = "insufficient_quota"
            raise UpstreamStatusError(
                response.status_code, code=code, retry_after=retry_after(response.headers)
            )
        return response

    # -- answers ----------------------------------------------------------------------------------
    async def complete(self, target: UpstreamTarget, prepared: Prepared) -> dict[str, Any]:
        response = await self.send(target, prepared, stream=False)
        try:
            raw = await _read_capped(response, MAX_BODY_BYTES)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        finally:
            await response.aclose()
        # The provider's parser reads `.text` / `.json()`: hand it the whole (capped) answer.
        whole = httpx.Response(
            response.status_code, headers=response.headers, content=raw, request=response.request
        )
        try:
            result = prepared.config.transform_response(
                model=prepared.model,
                raw_response=whole,
                model_response=self._model_response(),
                logging_obj=prepared.log,
                api_key=prepared.api_key,
                request_data=prepared.data,
                messages=prepared.messages,
                optional_params=prepared.optional_params,
                litellm_params=prepared.litellm_params,
                encoding=None,
                json_mode=prepared.json_mode,
            )
        except Exception as exc:  # the provider's parser refused the answer: litellm's classes decide
            raise map_error(self._litellm, exc) from None
        dumped = result.model_dump(exclude_none=True)
        if not isinstance(dumped, dict) or not isinstance(dumped.get("choices"), list):
            raise UpstreamProtocolError("the upstream answer could not be read")
        return dumped

    def iterator(self, prepared: Prepared, response: httpx.Response, lines: Lines) -> AsyncIterator[Any]:
        found: Any
        if prepared.recipe == "anthropic":
            from litellm.llms.anthropic.chat.handler import ModelResponseIterator
            from litellm.llms.anthropic.chat.transformation import (
                ANTHROPIC_TOOL_NAME_REVERSE_MAP_KEY,
                JsonModeRequest,
            )

            schema = (
                JsonModeRequest.model_validate(prepared.optional_params).tool_schema()
                if prepared.json_mode
                else None
            )
            parser = ModelResponseIterator(
                streaming_response=lines,
                sync_stream=False,
                json_mode=prepared.json_mode,
                speed=prepared.optional_params.get("speed"),
                tool_name_reverse_map=prepared.litellm_params.get(ANTHROPIC_TOOL_NAME_REVERSE_MAP_KEY),
                response_format_schema=schema,
                response=response,
            )
            return _AnthropicChunks(parser, lines)
        if prepared.recipe == "gemini":
            from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import (
                ModelResponseIterator as Gi,
            )

            log: Any = prepared.log
            found = Gi(
                streaming_response=lines,
                sync_stream=False,
                logging_obj=log,
                response_headers=dict(response.headers),
                response=response,
                resume=None,
            )
        else:
            found = prepared.config.get_model_response_iterator_for_request(
                streaming_response=lines,
                sync_stream=False,
                json_mode=prepared.json_mode,
                optional_params=prepared.optional_params,
                logging_obj=prepared.log,
            )
        if found is None:
            raise UpstreamProtocolError("no stream parser for this provider")
        return aiter(found)


class Lines:
    """The upstream's stream as the lines litellm's parser reads, split with litellm's SSE line
    splitter one network read at a time, so that the relay knows when the lines of a read are used up
    (`drained`: the next line waits for the network) and sends what they made in one piece.

    Only lines that make a parser item are kept, one item per line: on SSE wires (Anthropic, Gemini)
    the `data:` lines (the parsers turn every other line, `event:`, blanks, comments, into an empty
    chunk: two of three lines on Anthropic's wire), elsewhere the lines that are not blank (litellm's
    generic iterator skips those itself). The deadlines are kept on the reads (where time passes),
    not on each line: the first read may take the call's timeout (`limit`), each later gap the idle
    timeout (`SLUICE_STREAM_IDLE_TIMEOUT`, set as `limit` once the first chunk came).

    The body is read from the response's byte stream and decoded here, as httpx's `aiter_text`
    decodes it (the response's charset, else UTF-8; undecodable bytes replaced): its three generator
    layers (raw, bytes, text, each with a chunker, and an identity decoder, since `CappedTransport`
    already inflated the body) were suspended and resumed on every network read. On a stream whose
    events arrive one per read, that was a third of the read side's Python frames per event."""

    def __init__(self, response: httpx.Response, first: float, idle: float, *, data_only: bool) -> None:
        from litellm.llms.custom_httpx.sse_lines import _SSELineSplitter

        body = response.stream
        if not isinstance(body, httpx.AsyncByteStream):
            raise UpstreamProtocolError("the upstream answer is not an async stream")
        self.limit = first
        self.idle = idle
        self._reads = aiter(body)
        self._decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
        self._splitter = _SSELineSplitter()
        self._ready: deque[str] = deque()
        self._data_only = data_only
        self._ended = False
        self._deadline = IdleDeadline()

    @property
    def drained(self) -> bool:
        return not self._ready

    def pop(self) -> str:
        """The next line of the reads so far (only when not `drained`)."""
        return self._ready.popleft()

    @property
    def ended(self) -> bool:
        """The upstream's stream is over (its last lines may still be ready)."""
        return self._ended

    def __aiter__(self) -> Lines:
        return self

    async def __anext__(self) -> str:
        ready = self._ready
        while not ready:
            if self._ended:
                raise StopAsyncIteration
            await self.read()
        return ready.popleft()

    async def read(self) -> None:
        """One network read, split into lines (or the end of the stream)."""
        try:
            with self._deadline.after(self.limit):
                raw = await anext(self._reads)
        except StopAsyncIteration:
            self._ended = True
            self._deadline.close()
            self._keep(self._splitter.feed(self._decoder.decode(b"", True)))
            self._keep(self._splitter.flush())
            return
        except TimeoutError:
            raise _Stalled from None
        text = self._decoder.decode(raw)
        if text:
            self._keep(self._splitter.feed(text))

    def _keep(self, lines: tuple[str, ...]) -> None:
        if self._data_only:
            self._ready.extend(line for line in lines if line.startswith("data:"))
        else:
            self._ready.extend(line for line in lines if line.strip())


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A text delta as litellm's Anthropic parser reads it (its text, the stream's id and model), not
    yet built into the `ModelResponseStream` it would make of it: `Shaper.shape` frames it directly."""

    text: str
    id: str | None
    model: str | None


_UNREAD = object()


class _AnthropicChunks:
    """litellm's Anthropic stream parser (`ModelResponseIterator`), fed one `data:` line at a time as
    its own `__anext__` feeds it (`_parse_sse_data`; at the end a JSON value still accumulating, then
    `cut_stream_chunk`), without its per-line await on `Lines`: a line already read is parsed
    without suspending two more coroutines.

    A text delta (`content_block_delta` whose delta has `text`, most of a stream) goes through the
    same steps of litellm's `chunk_parser` (`_content_block_delta_helper`, `_settle_held_prose`,
    `_handle_json_mode_chunk`: they decide its text and keep the parser's state) but comes out as a
    `TextDelta`, not as the pydantic `ModelResponseStream` the parser builds from it and `Shaper`
    dumps again: those two were about two thirds of a chunk's CPU. Every other event is the
    parser's own `chunk_parser`."""

    def __init__(self, parser: Any, lines: Lines) -> None:
        from litellm.llms.anthropic.chat.handler import _loads_stream_chunk

        self._parser = parser
        self._lines = lines
        self._loads: Callable[[str], Any] = _loads_stream_chunk

    def __aiter__(self) -> _AnthropicChunks:
        return self

    async def __anext__(self) -> Any:
        lines = self._lines
        while True:
            while lines.drained:  # the read is awaited here, not in a helper: one frame less per read
                if lines.ended:
                    return self._end()
                await lines.read()
            try:
                chunk = self._parse(lines.pop())
            except ValueError as exc:  # as litellm's `__anext__` raises it (the line is not kept)
                raise RuntimeError("Error parsing chunk") from exc
            if chunk is not None:
                return chunk

    def _parse(self, line: str) -> Any:
        parser = self._parser
        if parser.chunk_type != "valid_json":  # accumulating a JSON value split over lines
            return parser._parse_sse_data(line)
        try:
            data = self._loads(line[5:])
        except json.JSONDecodeError:  # the parser's own step starts accumulating
            return parser._parse_sse_data(line)
        if isinstance(data, dict) and data.get("type") == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                return self._text(data)
        return parser.chunk_parser(chunk=data)

    def _text(self, data: dict[str, Any]) -> TextDelta:
        """`chunk_parser`'s steps for a text delta, in its order (the helper returns the text and
        nothing else for a delta with `text`; the other two are litellm's JSON-mode bookkeeping)."""
        parser = self._parser
        text, tool_use, _, _, _ = parser._content_block_delta_helper(chunk=data)
        text, tool_use = parser._handle_json_mode_chunk(
            text=text + parser._settle_held_prose(tool_use), tool_use=tool_use
        )
        return TextDelta(text, parser.response_id, parser.served_model)

    def _end(self) -> Any:
        parser = self._parser
        if parser._json_buffer:
            last = parser._handle_accumulated_json_chunk(data_str="", is_final=True)
            if last is not None:
                return last
        cut = parser.cut_stream_chunk()
        if cut is not None:
            return cut
        raise StopAsyncIteration


class _Stalled(UpstreamStreamError):
    def __init__(self) -> None:
        super().__init__("the upstream stream stalled", cause=Cause.READ_TIMEOUT)


class NotHere(Exception):
    """This call cannot take the transformation path after all (litellm fakes or wraps its stream):
    the adapter sends it through `litellm.acompletion` instead."""


class Shaper:
    """litellm's stream chunks as OpenAI chunk objects, shaped as litellm's `CustomStreamWrapper` shapes
    them: one id for the stream, `role` on the first chunk, chunks without content dropped, the finish
    reason alone on the last chunk, and usage on a chunk of its own only when the client asked."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.fingerprint: str | None = None
        self._sent_role = False
        self._tool_calls = False

    def shape(self, chunk: Any) -> dict[str, Any] | None:
        if isinstance(chunk, TextDelta):
            return self._text(chunk)
        if chunk is None:  # a line the parser skipped (Gemini's blank lines)
            return None
        if isinstance(chunk, dict):  # litellm's GenericStreamingChunk: a blank line, or an old-style chunk
            return self._generic(chunk)
        data = chunk.model_dump(exclude_none=True)
        if not isinstance(data, dict):
            return None
        self.id = self.id or data.get("id")
        self.created = self.created or data.get("created")
        self.model = self.model or data.get("model")
        self.fingerprint = self.fingerprint or data.get("system_fingerprint")
        usage = data.pop("usage", None)
        if isinstance(usage, dict):
            usage.pop("cost", None)
            self.usage = usage
        choices = data.get("choices") or []
        kept = []
        for choice in choices:
            if choice.get("finish_reason"):
                self.finish = choice.pop("finish_reason")
            delta = choice.get("delta") or {}
            delta.pop("provider_specific_fields", None)
            if delta.get("content") == "":
                delta.pop("content")
            if delta.get("tool_calls"):
                self._tool_calls = True
            role = delta.pop("role", None)
            if not any(value not in (None, [], {}) for value in delta.values()):
                if self._sent_role or role is None:
                    continue
                delta["content"] = ""  # the upstream's own opening chunk: the role alone
            choice["delta"] = delta
            choice.setdefault("finish_reason", None)  # OpenAI's schema requires it, null until the end
            kept.append(choice)
        if not kept:
            return None
        data["choices"] = kept
        data["id"] = self.id
        if not self._sent_role:
            kept[0]["delta"] = {**kept[0]["delta"], "role": "assistant"}
            self._sent_role = True
        return data

    def _text(self, piece: TextDelta) -> dict[str, Any] | None:
        """What `shape` makes of the `ModelResponseStream` litellm's parser builds for a text delta
        (one choice, index 0, whose delta holds `content` alone, no finish reason; `created` the
        time it was built), without building it."""
        created = int(time.time())
        self.id = self.id or piece.id
        self.created = self.created or created
        self.model = self.model or piece.model
        if not piece.text:
            return None
        delta = {"content": piece.text}
        if not self._sent_role:
            delta["role"] = "assistant"
            self._sent_role = True
        data: dict[str, Any] = {"id": self.id, "created": created}
        if piece.model is not None:
            data["model"] = piece.model
        data["object"] = "chat.completion.chunk"
        data["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
        return data

    def _generic(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = dict(usage)
        if chunk.get("finish_reason"):
            self.finish = chunk["finish_reason"]
        delta: dict[str, Any] = {}
        if chunk.get("text"):
            delta["content"] = chunk["text"]
        tool = chunk.get("tool_use")
        if tool:
            delta["tool_calls"] = [tool]
            self._tool_calls = True
        if not delta:
            return None
        if not self._sent_role:
            delta = {**delta, "role": "assistant"}
            self._sent_role = True
        return self._frame([{"index": 0, "delta": delta, "finish_reason": None}])

    def _frame(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "id": self.id or "chatcmpl-sluice",
            "created": self.created or 0,
            "model": self.model or "",
            "object": "chat.completion.chunk",
        }
        if self.fingerprint:
            frame["system_fingerprint"] = self.fingerprint
        frame["choices"] = choices
        return frame

    def tail(self) -> list[dict[str, Any]]:
        finish = self.finish or ("tool_calls" if self._tool_calls else "stop")
        if finish == "stop" and self._tool_calls:
            finish = "tool_calls"
        out = [self._frame([{"finish_reason": finish, "index": 0, "delta": {}}])]
        if self.include_usage and self.usage is not None:
            out.append({**self._frame([]), "usage": self.usage})
        return out


class TransformStream:
    """An opened translated stream (the `ChatStream` of `gateway/upstream/base.py`)."""

    def __init__(
        self,
        litellm: ModuleType,
        response: httpx.Response,
        chunks: AsyncIterator[Any],
        lines: Lines,
        shaper: Shaper,
        first: dict[str, Any],
    ) -> None:
        self.first = first
        self.usage: dict[str, Any] | None = shaper.usage
        self._litellm = litellm
        self._response = response
        self._chunks = chunks
        self._lines = lines
        self._shaper = shaper

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The stream's events, those of one network read in one piece: each piece is yielded before
        the next line waits for the network, so no event waits for the upstream's next one."""
        shaper, lines, chunks = self._shaper, self._lines, self._chunks
        frames: list[bytes] = []
        broke: UpstreamError | None = None
        try:
            while True:
                if frames and lines.drained:
                    yield b"".join(frames)
                    frames.clear()
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                shaped = shaper.shape(chunk)
                self.usage = shaper.usage
                if shaped is not None:
                    frames.append(sse.frame(orjson.dumps(shaped)))
        except UpstreamError as exc:
            broke = exc
        except Exception as exc:  # the provider's parser or the wire broke mid-stream: in-band end
            mapped = map_error(self._litellm, exc)
            broke = UpstreamStreamError(f"the upstream stream broke: {mapped.message}")
        finally:
            await self._response.aclose()
        if broke is not None:
            if frames:  # what came before the break still reaches the client, then the error event
                yield b"".join(frames)
            raise broke
        frames.extend(sse.frame(orjson.dumps(tail)) for tail in shaper.tail())
        frames.append(sse.DONE)
        yield b"".join(frames)

    async def aclose(self) -> None:
        await self._response.aclose()


async def open_stream(
    transformer: Transformer,
    litellm: ModuleType,
    target: UpstreamTarget,
    prepared: Prepared,
    include_usage: bool,
) -> TransformStream:
    """Send a prepared stream call and read up to its first chunk with content (failover may still
    happen until then)."""
    response = await transformer.send(target, prepared, stream=True)
    shaper = Shaper(include_usage)
    # SSE wires (Cohere's v1 stream is JSON lines)
    data_only = prepared.recipe in ("anthropic", "gemini")
    try:
        lines = Lines(response, target.timeout, target.idle_timeout, data_only=data_only)
        chunks = transformer.iterator(prepared, response, lines)
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                raise UpstreamProtocolError("the upstream stream ended before its first chunk") from None
            first = shaper.shape(chunk)
            if first is not None:
                lines.limit = lines.idle
                break
    except _Stalled:
        await response.aclose()
        raise UpstreamTimeout("the upstream sent no first chunk in time", cause=Cause.READ_TIMEOUT) from None
    except httpx.HTTPError as exc:
        await response.aclose()
        raise _transport_error(exc) from None
    except UpstreamError:
        await response.aclose()
        raise
    except Exception as exc:  # the provider's parser refused the stream's start
        await response.aclose()
        raise map_error(litellm, exc) from None
    except BaseException:  # cancelled: the client left before the first chunk
        await response.aclose()
        raise
    return TransformStream(litellm, response, chunks, lines, shaper, first)


async def translate_call(
    transformer: Transformer,
    litellm: ModuleType,
    target: UpstreamTarget,
    body: dict[str, Any],
    *,
    stream: bool,
) -> Prepared:
    """Build the provider's request; a failure here is litellm's translation refusing the input."""
    call = Call()
    token = CURRENT_CALL.set(call)
    try:
        return await transformer.prepare(target, body, stream=stream)
    except (UpstreamError, NotHere):
        raise
    except Exception as exc:  # nothing was sent: the translation refused the input
        raise map_error(litellm, exc, sent=call.sent) from None
    finally:
        CURRENT_CALL.reset(token)
