"""The pipeline of every API: policy, routing, failover, badges and one audit record per request.

What belongs here: the request flow of DESIGN.md ("One request, end to end") from a parsed body and
an authenticated key to a response. Each API's handler (`gateway.api.chat`,
`gateway.api.embeddings`, `gateway.api.responses`) calls `run`; it calls the policy router (pure),
the adapters (I/O) and the audit sink. What differs between wire formats (which adapter call, where
`privacy` rides, how a broken stream ends) is the endpoint's `Wire` (`gateway.core.wires`). A
request that continues an upstream response (`previous_response_id`) is pinned to the deployment
that produced it (`gateway.core.continuations`). Failover moves only among compliant deployments,
only before the first byte reached the client, and only on answers that say the provider did not
start the work (connect errors, 429, 503, 529; see `gateway/upstream/base.py`). It skips deployments
whose circuit is open or that asked to wait (Retry-After), and stops when the retry budget is spent
(all three in `gateway/core/resilience.py`). A request the translation or the provider refuses as
invalid is the client's 400 and counts against none of them (`client_fault` in the upstream errors).
Before the first attempt, the failover loop checks the key's limits (`gateway/core/limits.py`: 429
`rate_limited`, recorded in the ledger); the audit record of the request's end counts the tokens
the upstream reported and releases its concurrency lease. A one-answer response makes that record
once it has been sent (`RecordedResponse`): the record, its hash and the metrics are off the latency path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.config import Config
from gateway.core.auth import KeyRecord
from gateway.core.continuations import Continuations
from gateway.core.data_paths import NONE, DataPaths
from gateway.core.deployments import Deployment
from gateway.core.limits import Admission, Limiter, local_limiter
from gateway.core.misses import closest_models
from gateway.core.request import ParsedRequest, PrivacyAsk
from gateway.core.resilience import Resilience, trips
from gateway.core.retry_after import rate_limited_headers, unavailable_headers
from gateway.core.routing import Plan, PolicyRouter, PolicySet, limits_retention, sends_store_false
from gateway.core.sensitive.detectors import WINDOW
from gateway.core.sensitive.rules import NOTHING, Outcome
from gateway.core.wires import WIRES, Wire
from gateway.errors import (
    InvalidRequest,
    ModelNotAllowed,
    PolicyViolation,
    RateLimited,
    SluiceError,
    UpstreamFailure,
)
from gateway.names import DecisionKind, Endpoint, ErrorCode, Header, OnViolation
from gateway.observability.audit import AuditEvent, AuditSink
from gateway.server.responses import RelayResponse
from gateway.upstream import sse
from gateway.upstream.base import (
    Adapter,
    ChatStream,
    UpstreamError,
    UpstreamRequestRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from policies.policy import Policy, UnknownPolicyError, resolve

log = logging.getLogger("sluice.request")
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the request"; ledger only, never sent


def to_client_error(exc: UpstreamError) -> SluiceError:
    """An upstream failure as the client sees it; the message is Sluice's own, never the upstream's."""
    if isinstance(exc, UpstreamRequestRejected):
        return InvalidRequest(exc.message)
    if isinstance(exc, UpstreamTimeout):
        return UpstreamFailure("the upstream did not answer in time", timeout=True)
    if isinstance(exc, UpstreamStatusError):
        if exc.quota:
            return RateLimited("the upstream account is out of quota or over its spend limit; not retried")
        if exc.status == 429:
            headers = rate_limited_headers(exc.retry_after) if exc.retry_after is not None else {}
            return RateLimited("the upstream is rate limiting; try again later", headers=headers)
        if exc.client_fault:
            code = f", code {exc.code}" if exc.code else ""
            return InvalidRequest(f"the upstream rejected the request as invalid (HTTP {exc.status}{code})")
    if not exc.retryable:
        return UpstreamFailure(f"{exc.message}; not sent elsewhere: the provider may have started the work")
    # None of them started the work (connect error, 503, 529), so a retry is safe: say so, briefly
    # (gateway/core/retry_after.py: SDKs sleep what we say, twice).
    headers = unavailable_headers(exc.retry_after or 0.0)
    return UpstreamFailure(f"every compliant deployment failed; last error: {exc.message}", headers=headers)


def _log_failure(call: Call, dep: Deployment, exc: UpstreamError, then: str) -> None:
    """One line per failed attempt: which deployment, which host, what class of failure, and what
    happens next (only the truth: "failing over" names the deployment that is tried next)."""
    log.warning(
        "%s %s at %s failed: %s; %s", call.request_id, dep.id, dep.host, exc.cause or exc.message, then
    )


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    """Prompt and completion tokens: OpenAI Chat's names, else the Responses (and Anthropic) names."""
    if not isinstance(usage, dict):
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)


@dataclass
class Held:
    """What a request holds under its key's limits, from the check to its audit record."""

    admission: Admission | None = None
    strip_usage: bool = False  # Sluice asked the stream for usage; the client did not


@dataclass(frozen=True)
class Call:
    """One client request in flight: who, what, under which policy."""

    endpoint: Endpoint
    key: KeyRecord
    parsed: ParsedRequest
    policy: PolicySet
    request_id: str
    started: float
    sensitive: Outcome = NOTHING  # what content-aware tightening found (detector ids only)
    paths: DataPaths = NONE  # the data paths the request uses, once the policy is known
    held: Held = field(default_factory=Held)

    def fields_for(self, dep: Deployment) -> dict[str, Any]:
        """The upstream fields for `dep`: with `store: false` where the policy limits retention, the
        client did not set `store`, and the channel stores responses (`sends_store_false`)."""
        if sends_store_false(self.paths, dep):
            return {**self.parsed.fields, "store": False}
        return self.parsed.fields

    def mark(self, headers: dict[str, str], privacy: dict[str, Any] | None = None) -> None:
        """Say which detectors tightened the policy: `X-Privacy-Sensitive` and `privacy.sensitive`."""
        if self.sensitive.tightened:
            headers[Header.SENSITIVE] = self.sensitive.header
            if privacy is not None:
                privacy["sensitive"] = list(self.sensitive.tightened)

    @property
    def wire(self) -> Wire:
        return WIRES[self.endpoint]

    def event(
        self,
        decision: str,
        status: int,
        response_id: str | None = None,
        *,
        served_by: Deployment | None = None,
        ended: float | None = None,
        **fields: Any,
    ) -> AuditEvent:
        """The request's audit record; `ended`: when its answer was ready (default: now)."""
        extra = {**self.sensitive.ledger(), **self._paths_ledger(served_by)}
        if response_id is not None:  # an upstream id, for `previous_response_id` (metadata only)
            extra["response_id"] = response_id[:256]
        return AuditEvent(
            request_id=self.request_id,
            time=datetime.now(UTC),
            key_name=self.key.name,
            endpoint=self.endpoint,
            requested_model=self.parsed.model[:256],
            policy=tuple(p.name for p in self.policy),
            decision=decision,
            status=status,
            stream=self.parsed.stream,
            latency_ms=round(((ended or time.perf_counter()) - self.started) * 1000, 3),
            extra=extra,
            **fields,
        )

    def _paths_ledger(self, dep: Deployment | None) -> dict[str, Any]:
        """The ledger's `extra` fields for data paths: feature ids, and whether Sluice sent `store: false`."""
        found: dict[str, Any] = {}
        if self.paths.features:
            found["features"] = self.paths.ids
        if dep is not None and sends_store_false(self.paths, dep):
            found["store_false"] = True
        return found


class RecordedResponse(Response):
    """A non-stream answer whose audit record (with the metrics counted from it and the key's lease
    released) is made once the answer has been sent: off the request's latency path, and made
    whatever happens to the send (an error, a cancellation). Its latency is the answer's, not the send's."""

    media_type = "application/json"

    def __init__(self, content: bytes, *, headers: dict[str, str], record: Callable[[], None]) -> None:
        super().__init__(content, headers=headers)
        self._record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._record()


class Upstream(Protocol):
    """An API's own upstream call, where the endpoint's `Wire` cannot make it from the deployment's
    adapter alone (`gateway.core.messages_exchange`). The fields for `dep` are `call.fields_for(dep)`."""

    async def complete(self, dep: Deployment, call: Call) -> dict[str, Any]:
        """One answer; raise UpstreamError before anything is sent."""

    async def open(self, dep: Deployment, call: Call) -> ChatStream:
        """A stream opened up to its first event; raise UpstreamError before anything is sent."""


class ChatService:
    def __init__(
        self,
        *,
        config: Config,
        router: PolicyRouter,
        policies: dict[str, Policy],
        adapter_for: Callable[[Deployment, Endpoint], Adapter],
        audit: AuditSink,
        resilience: Resilience | None = None,
        limiter: Limiter | None = None,
        continuations: Continuations | None = None,
    ) -> None:
        self._config = config
        self._router = router
        self._policies = policies
        self._adapter_for = adapter_for
        self._audit = audit
        self._resilience = resilience or Resilience()
        self._limiter = limiter or local_limiter(self._resilience)
        self._continuations = continuations or Continuations()
        self._tightening = config.tightening()

    async def sensitive(self, endpoint: Endpoint, key: KeyRecord, parsed: ParsedRequest) -> Outcome:
        """Content-aware tightening: the detectors that matched the request's text, and the policies
        the rules add (per-key rules: keys from the config file). A text past one scan window runs
        in a worker thread, which yields the GIL between windows: the event loop keeps serving."""
        per_key = key.name if key.origin == "config" else None
        job = self._tightening.prepare(endpoint, parsed.fields, per_key)
        if job is None:
            return NOTHING
        if len(job.text) <= WINDOW:
            return job.run()
        return await anyio.to_thread.run_sync(job.run)

    def effective_policy(self, key: KeyRecord, ask: PrivacyAsk, added: tuple[str, ...] = ()) -> PolicySet:
        base = key.policy or self._config.server.default_policy
        try:
            return resolve((*base, *ask.policies, *added), self._policies)
        except UnknownPolicyError as exc:
            raise InvalidRequest(
                f"unknown policy {exc.name[:64]!r}; see GET /v1/privacy/policies",
                code=ErrorCode.UNKNOWN_POLICY,
                param="privacy.policy",
            ) from None

    def _reroute(self, key: KeyRecord, ask: PrivacyAsk) -> bool:
        on_violation = key.on_violation or self._config.server.on_violation
        return on_violation is OnViolation.REROUTE and not ask.block

    def _plan(self, call: Call, origin: str | None = None) -> Plan:
        """The compliant deployments to try, in order; with `origin` (the deployment that produced
        the response the request continues), that one only, or a 400 when it is not among them."""
        plan = self._judge(call)
        if origin is None:
            return plan
        pinned = tuple(d for d in plan.candidates if d.id == origin)
        if pinned:
            return replace(plan, candidates=pinned)
        error = InvalidRequest(
            "previous_response_id was answered by a deployment this request may not use (another model,"
            " or one its policy does not allow); send the conversation as input instead",
            param="previous_response_id",
        )
        error.headers[Header.REQUEST_ID] = call.request_id
        call.mark(error.headers)
        self._audit.record(call.event(DecisionKind.BLOCKED, error.status, error_code=error.code.value))
        raise error

    def _judge(self, call: Call) -> Plan:
        key = call.key
        if not key.may_use(call.parsed.model):
            hint = closest_models(call.parsed.model, filter(key.may_use, self._router.models))
            raise ModelNotAllowed(
                f"this key may not use the model {call.parsed.model[:64]!r}{hint}", param="model"
            )
        try:
            return self._router.plan(
                call.parsed.model,
                call.policy,
                reroute=self._reroute(key, call.parsed.ask),
                may_use=key.may_use,
                paths=call.paths,
            )
        except (PolicyViolation, UpstreamFailure) as exc:
            # Blocked by policy, or allowed with every compliant deployment unavailable (no key).
            blocked = isinstance(exc, PolicyViolation)
            reasons = tuple(r for c in exc.extra["privacy"]["considered"] for r in c["reasons"])
            self._audit.record(
                call.event(
                    DecisionKind.BLOCKED if blocked else DecisionKind.ALLOWED,
                    exc.status,
                    reasons=reasons,
                    error_code=exc.code.value,
                    provider=None if blocked else exc.headers.get(Header.PROVIDER),
                    channel=None if blocked else exc.headers.get(Header.CHANNEL),
                )
            )
            exc.headers[Header.REQUEST_ID] = call.request_id
            call.mark(exc.headers, exc.extra["privacy"])
            if blocked and call.sensitive.tightened:
                exc.message += f" (added because the request contains: {call.sensitive.header})"
            raise

    def _release(self, call: Call, tokens: int = 0) -> None:
        """The request ended: count its reported tokens against its key, release its lease."""
        admission, call.held.admission = call.held.admission, None
        if admission is not None:
            self._limiter.finish_soon(admission, tokens)

    def _served(
        self,
        call: Call,
        plan: Plan,
        dep: Deployment,
        status: int,
        attempts: int,
        response_id: str | None = None,
        ended: float | None = None,
        **fields: Any,
    ) -> None:
        self._release(call, (fields.get("prompt_tokens") or 0) + (fields.get("completion_tokens") or 0))
        self._audit.record(
            call.event(
                plan.decision,
                status,
                response_id,
                served_by=dep,
                ended=ended,
                served_model=plan.alias,
                attempts=attempts,
                **dep.ledger_fields,
                **fields,
            )
        )

    def _failed(
        self, call: Call, plan: Plan, dep: Deployment, exc: UpstreamError, attempts: int
    ) -> SluiceError:
        error = to_client_error(exc)
        headers, _ = self._router.disclose(plan, dep, call.request_id)
        error.headers.update(headers)
        call.mark(error.headers)
        self._served(call, plan, dep, error.status, attempts, error_code=error.code.value)
        return error

    async def _limit(self, call: Call, plan: Plan) -> None:
        """The key's limits (rpm, tpm, max_concurrency), before anything is sent: past one, a 429
        recorded in the ledger. A chat stream under a token limit asks the upstream for its usage."""
        try:
            admission = await self._limiter.admit(call.key.name, call.key.limits, call.parsed.fields)
        except RateLimited as error:
            error.headers[Header.REQUEST_ID] = call.request_id
            call.mark(error.headers)
            self._audit.record(call.event(plan.decision, error.status, error_code=error.code.value))
            raise
        call.held.admission = admission
        if admission.counts_tokens and call.parsed.stream and call.endpoint is Endpoint.CHAT:
            options = call.parsed.fields.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                call.parsed.fields["stream_options"] = {**(options or {}), "include_usage": True}
                call.held.strip_usage = True

    async def _admit(self, dep: Deployment, attempts: int) -> bool | None:
        """May this request try `dep` now? False: its circuit is open or it asked to wait (skip it);
        None: the retry budget is spent (stop failing over). Only removes candidates, never adds one."""
        breaker = self._resilience.breaker
        if not breaker.available(dep.id) or self._resilience.holds.remaining(dep.id) > 0:
            return False
        if attempts and not await self._limiter.acquire_retry():
            return None
        breaker.begin(dep.id)
        return True

    def _outcome(self, dep: Deployment, exc: BaseException | None) -> None:
        breaker = self._resilience.breaker
        if exc is None:
            breaker.success(dep.id)
        elif isinstance(exc, UpstreamRequestRejected):
            breaker.abandon(dep.id)  # refused before any upstream call: no verdict on the provider
        elif isinstance(exc, UpstreamError):
            self._resilience.holds.observe(dep.id, exc)
            if trips(exc):
                breaker.failure(dep.id)
            else:
                breaker.success(dep.id)  # the provider answered (4xx, 429): it is up
        else:
            breaker.abandon(dep.id)

    def _unavailable(self, call: Call, plan: Plan) -> SluiceError:
        """Every compliant deployment was skipped (open circuit, or a Retry-After still running):
        fail fast with no upstream call, and say when one will be available again."""
        resilience = self._resilience
        held = [resilience.holds.remaining(d.id) for d in plan.candidates]
        opened = [resilience.breaker.remaining(d.id) for d in plan.candidates]
        wait = min(map(max, held, opened), default=0.0)
        error: SluiceError
        if any(held):
            error = RateLimited(
                "every compliant deployment asked to wait (rate limited); try again later",
                headers=rate_limited_headers(wait),
            )
            why = "asked to wait (Retry-After)"
        else:
            error = UpstreamFailure(
                "every compliant deployment is failing (circuit open); try again later",
                headers=unavailable_headers(wait),
            )
            why = "failing (circuit open)"
        error.headers[Header.REQUEST_ID] = call.request_id
        call.mark(error.headers)
        self._release(call)
        self._audit.record(call.event(plan.decision, error.status, error_code=error.code.value))
        log.warning(
            "%s no call made: every compliant deployment of %s is %s for %.0f s more (%s)",
            call.request_id,
            plan.alias,
            why,
            wait,
            ", ".join(f"{d.id} at {d.host}" for d in plan.candidates),
        )
        return error

    async def _first_success(
        self, call: Call, plan: Plan, attempt_on: Callable[[Deployment], Awaitable[T]]
    ) -> tuple[Deployment, int, T]:
        """Try compliant deployments in order until one answers; the failover loop of both paths.

        Failover happens only on retryable errors, within the retry budget, skipping open circuits.
        """
        await self._limit(call, plan)  # also counts the request for the retry budget
        attempt = 0
        last: tuple[Deployment, UpstreamError] | None = None
        stopped, skipped = "", []
        for dep in plan.candidates:
            admitted = await self._admit(dep, attempt)
            if admitted is None:
                stopped = "the retry budget is spent; not failing over"
                break
            if not admitted:
                skipped.append(dep.id)
                continue
            if last is not None:
                _log_failure(call, *last, f"failing over to {dep.id} at {dep.host}")
            attempt += 1
            try:
                result = await attempt_on(dep)
            except UpstreamError as exc:
                self._outcome(dep, exc)
                last = (dep, exc)
                if exc.retryable:
                    continue
                if exc.client_fault:  # the request, not the deployment: no operator needs to act
                    log.info("%s request refused as invalid for %s: %s", call.request_id, dep.id, exc.message)
                else:
                    _log_failure(call, dep, exc, "not sent elsewhere: the provider may have started the work")
                raise self._failed(call, plan, dep, exc, attempt) from None
            except asyncio.CancelledError:  # the client went away: the upstream call is abandoned
                self._outcome(dep, asyncio.CancelledError())
                self._served(call, plan, dep, CLIENT_CLOSED, attempt, client_cancelled=True)
                raise
            except BaseException as exc:
                self._outcome(dep, exc)
                self._release(call)
                raise
            self._outcome(dep, None)  # an answer (for a stream: its first chunk): the provider works
            return dep, attempt, result
        if last is not None:
            held = f" available ({', '.join(skipped)}: circuit open or asked to wait)" if skipped else ""
            _log_failure(call, *last, stopped or f"no other compliant deployment{held}")
            raise self._failed(call, plan, last[0], last[1], attempt) from None
        raise self._unavailable(call, plan)

    async def run(
        self,
        endpoint: Endpoint,
        key: KeyRecord,
        parsed: ParsedRequest,
        *,
        request_id: str,
        started: float,
        upstream: Upstream | None = None,
    ) -> Response:
        """The pipeline from a parsed request on: content-aware tightening, the effective policy, the
        plan, the call with failover (one answer, or a stream), badges, and the ledger record.
        `upstream`: the API's own upstream call (default: the endpoint's `Wire` on the adapter)."""
        sensitive = await self.sensitive(endpoint, key, parsed)
        policy = self.effective_policy(key, parsed.ask, sensitive.policies)
        paths = parsed.paths.limit_retention() if limits_retention(policy) else parsed.paths
        call = Call(endpoint, key, parsed, policy, request_id, started, sensitive, paths)
        origin = None
        if parsed.continues is not None:  # previous_response_id: only where that response was made
            origin = await self._continuations.require(parsed.continues, key.name)
        if parsed.stream:
            return await self.stream(call, origin, upstream)
        return await self.complete(call, origin, upstream)

    async def complete(
        self, call: Call, origin: str | None = None, upstream: Upstream | None = None
    ) -> Response:
        """A non-stream answer (chat, embeddings, responses), with failover among compliant deployments."""
        plan = self._plan(call, origin)
        wire = call.wire

        async def call_upstream(dep: Deployment) -> dict[str, Any]:
            if upstream is not None:
                return await upstream.complete(dep, call)
            return await wire.call(self._adapter_for(dep, call.endpoint), dep.target, call.fields_for(dep))

        dep, attempt, result = await self._first_success(call, plan, call_upstream)
        headers, privacy = self._router.disclose(plan, dep, call.request_id)
        call.mark(headers, privacy)
        if call.held.admission is not None:
            headers.update(call.held.admission.headers)
        wire.attach(result, privacy)
        answer_id = self._continuations.keep(wire.answer_id(result), call.key.name, dep)
        prompt, completion = _tokens(result.get("usage"))
        ended = time.perf_counter()

        def record() -> None:
            self._served(
                call,
                plan,
                dep,
                200,
                attempt,
                answer_id,
                ended,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )

        return RecordedResponse(orjson.dumps(result), headers=headers, record=record)

    async def stream(
        self, call: Call, origin: str | None = None, upstream: Upstream | None = None
    ) -> Response:
        """A streamed answer: failover until the first chunk arrives, then commit to one upstream."""
        plan = self._plan(call, origin)
        wire = call.wire

        async def open_stream(dep: Deployment) -> ChatStream:
            if upstream is not None:
                return await upstream.open(dep, call)
            return await wire.open(self._adapter_for(dep, call.endpoint), dep.target, call.fields_for(dep))

        dep, attempt, opened = await self._first_success(call, plan, open_stream)
        headers, privacy = self._router.disclose(plan, dep, call.request_id)
        call.mark(headers, privacy)
        if call.held.admission is not None:
            headers.update(call.held.admission.headers)
        answer_id = self._continuations.keep(wire.first_id(opened.first), call.key.name, dep)
        body = self._relay(call, plan, dep, opened, privacy, attempt, answer_id)
        return RelayResponse(body, headers={**headers, **sse.HEADERS}, media_type=sse.MEDIA_TYPE)

    async def _relay(
        self,
        call: Call,
        plan: Plan,
        dep: Deployment,
        opened: ChatStream,
        privacy: dict[str, Any],
        attempts: int,
        response_id: str | None = None,
    ) -> AsyncIterator[bytes]:
        status, cancelled, error_code = 200, False, None
        wire = call.wire
        try:
            yield wire.opening(opened.first, privacy)
            usage = sse.UsageFilter() if call.held.strip_usage else None
            try:
                async for chunk in opened:
                    if usage is None:
                        yield chunk
                    elif passed := usage.feed(chunk):
                        yield passed
                if usage is not None and (rest := usage.flush()):
                    yield rest
            except UpstreamError as exc:
                broke = UpstreamFailure(exc.message)  # the envelope of a 502, as the last event
                status, error_code = broke.status, broke.code.value
                why = exc.cause or exc.message
                log.warning("%s stream from %s at %s broke: %s", call.request_id, dep.id, dep.host, why)
                yield wire.broken(broke)
        except (asyncio.CancelledError, GeneratorExit):
            cancelled = True
            raise
        finally:
            # Record first: a cancelled task is cancelled again at its next await (anyio), so the
            # close below is shielded and the ledger entry must not wait for it.
            prompt, completion = _tokens(opened.usage)
            self._served(
                call,
                plan,
                dep,
                status,
                attempts,
                response_id,
                prompt_tokens=prompt,
                completion_tokens=completion,
                client_cancelled=cancelled,
                error_code=error_code,
            )
            with anyio.CancelScope(shield=True):
                await opened.aclose()
