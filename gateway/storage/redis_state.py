"""The state several replicas share, in Redis (`SLUICE_REDIS_URL`): limits, breakers, holds, budget.

What belongs here: `RedisState`, the Redis implementation of `gateway.core.limits.SharedState`, and
its Lua scripts. Each limit check is one script (`ADMIT`: prune, count, decide, record, in one atomic
step, so two replicas can never both take the last request of a window); ending a request is one
more (`FINISH`: count the reported tokens, release the concurrency lease), only for a key with `tpm`
or `max_concurrency`, sent without the request waiting for it. A key without limits makes no Redis
call. Every request reaches the shared retry budget in one batch a second (not in the check). Both
scripts go over `gateway.storage.resp.RespPipe`, one pipelined connection that costs a fraction of
redis-py's asyncio client per call (redis-py serves everything else, and the hot path too for a URL
the pipe does not take). Circuit openings, closings and Retry-After holds are written as keys that
expire with them and published on one channel: every replica applies them to its own breaker and
holds (`gateway.core.resilience`), so the hot path reads them from memory; a replica that
(re)connects loads the keys first.

Redis away or slow: every call is bounded by `SLUICE_REDIS_TIMEOUT`; the first failure switches to
this process's own state (`LocalState`), logged once, shown by `/readyz` (`shared_state: degraded`,
still ready) and `/metrics` (`sluice_shared_state_up 0`). A background task pings Redis every
second and switches back when it answers. Keys are `<SLUICE_REDIS_PREFIX>:...`; one Redis (no
cluster) per gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.core.limits import WINDOW, KeyLimits, LocalState, ResilienceEvent, Verdict
from gateway.core.resilience import Resilience
from gateway.storage.resp import ReplyError, RespPipe, open_pipe, pack, pipe_options

log = logging.getLogger("sluice.shared")
T = TypeVar("T")
ERRORS = (RedisError, OSError, TimeoutError)
LIMITED = {1: "requests", 2: "tokens", 3: "concurrency"}
PROBE_INTERVAL = 1.0
NAMES_KEPT = 10_000  # keys whose Redis key names are kept encoded (then the cache starts again)

# Windows and leases run on Redis's clock (TIME), so replicas whose clocks differ still agree.
# A window is a hash: one field per second (its count), `s` (the sum of those fields) and `o` (the
# oldest second counted). Pruning moves `o` forward past the seconds that left the window, so a
# check reads two or three fields however busy the key is (not the whole minute), and each second
# is stepped over once in all.
WINDOWS = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now = math.floor(now_ms / 1000)
local function total(key, window)
  local state = redis.call('HMGET', key, 's', 'o')
  local oldest = tonumber(state[2])
  if oldest == nil then return 0, 0 end
  local sum, moved = tonumber(state[1]) or 0, false
  while oldest <= now do
    local count = tonumber(redis.call('HGET', key, oldest))
    if count ~= nil and oldest > now - window then break end
    if count ~= nil then
      sum = sum - count
      redis.call('HDEL', key, oldest)
    end
    oldest, moved = oldest + 1, true
  end
  if oldest > now then
    redis.call('HDEL', key, 's', 'o')
    return 0, 0
  end
  if moved then redis.call('HSET', key, 's', sum, 'o', oldest) end
  return sum, (oldest + window) * 1000 - now_ms
end
local function add(key, amount, window)
  redis.call('HINCRBY', key, now, amount)
  redis.call('HINCRBY', key, 's', amount)
  local oldest = tonumber(redis.call('HGET', key, 'o'))
  if oldest == nil or oldest > now then redis.call('HSET', key, 'o', now) end
  redis.call('EXPIRE', key, window + 1)
end
"""

# KEYS: requests window, tokens window, leases zset. ARGV: rpm, tpm, max_concurrency (0: none),
# lease, lease ttl ms, window s. Only the limits a key has are read (and requests counted for rpm).
# Returns: allowed, which limit (0 none), requests in window, ms until the oldest leaves, tokens, ms.
ADMIT = (
    WINDOWS
    + """
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window = tonumber(ARGV[6])
local requests, requests_reset, tokens, tokens_reset, in_flight = 0, 0, 0, 0, 0
if rpm > 0 then requests, requests_reset = total(KEYS[1], window) end
if tpm > 0 then tokens, tokens_reset = total(KEYS[2], window) end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
  in_flight = redis.call('ZCARD', KEYS[3])
end
local which = 0
if rpm > 0 and requests >= rpm then which = 1
elseif tpm > 0 and tokens >= tpm then which = 2
elseif maxc > 0 and in_flight >= maxc then which = 3 end
if which > 0 then
  return {0, which, requests, requests_reset, tokens, tokens_reset}
end
if rpm > 0 then add(KEYS[1], 1, window) end
if maxc > 0 then
  redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
end
if requests == 0 then requests_reset = window * 1000 end
return {1, 0, requests, requests_reset, tokens, tokens_reset}
"""
)

# KEYS: tokens window, leases zset. ARGV: tokens, lease ('' none), window s.
FINISH = (
    WINDOWS
    + """
local tokens = tonumber(ARGV[1])
if tokens > 0 then add(KEYS[1], tokens, tonumber(ARGV[3])) end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""
)

# ARGV: key prefix, now s, window s, ratio, min retries. Requests are counted by `_heartbeat`.
RETRY = """
local prefix, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local requests, retries = 0, 0
for second = now - window + 1, now do
  requests = requests + tonumber(redis.call('GET', prefix .. ':budget:req:' .. second) or '0')
  retries = retries + tonumber(redis.call('GET', prefix .. ':budget:retry:' .. second) or '0')
end
local allowed = math.max(tonumber(ARGV[5]), math.floor(tonumber(ARGV[4]) * requests))
if retries + 1 > allowed then return 0 end
local key = prefix .. ':budget:retry:' .. now
redis.call('INCR', key)
redis.call('EXPIRE', key, window + 2)
return 1
"""

# KEYS: the event's key. ARGV: payload, ttl ms (0: delete the key), channel.
EVENT = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
else
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""


class RedisState:
    """`SharedState` in Redis, with `LocalState` standing in while Redis does not answer."""

    def __init__(
        self,
        url: str,
        resilience: Resilience,
        *,
        prefix: str = "sluice",
        timeout: float = 0.1,
        lease_seconds: float = 600.0,
    ) -> None:
        self.local = LocalState(resilience, lease_seconds=lease_seconds)
        self._url = url
        self._resilience = resilience
        self._prefix = prefix
        self._timeout = timeout
        self._lease_ms = int(lease_seconds * 1000)
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._channel = f"{prefix}:events"
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._admit = self._client.register_script(ADMIT)
        self._finish = self._client.register_script(FINISH)
        self._retry = self._client.register_script(RETRY)
        self._event = self._client.register_script(EVENT)
        self._pipe_options = pipe_options(url)  # None: a URL the pipe does not take (redis-py then)
        self._pipe: RespPipe | None = None  # the hot path's connection, opened by each session
        self._names: dict[str, tuple[bytes, bytes, bytes]] = {}  # key -> its Redis key names
        self._lease_arg = str(self._lease_ms).encode()
        self._window_arg = str(WINDOW).encode()
        self.up = False
        self._unsent_requests = 0  # requests not yet added to the shared retry budget (once a second)
        self.failures = 0  # times Redis was lost (for /metrics)
        self._detail = "not connected yet"
        self._lost = asyncio.Event()
        self._settled = asyncio.Event()  # the first connection succeeded or failed
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        resilience.listen(self)

    # -- the hot path -------------------------------------------------------------------------

    async def _call(self, work: Awaitable[T]) -> T:
        async with asyncio.timeout(self._timeout):
            return await work

    def _lose(self, exc: BaseException) -> None:
        """Redis failed a call: serve from this process's state until the supervisor is back."""
        if self.up:
            self.up = False
            self.failures += 1
            self._detail = f"Redis unreachable ({type(exc).__name__}); limits, breakers, holds per process"
            log.warning(
                "shared state: Redis at %s unreachable (%s); per-process limits until it is back",
                self.display_url,
                type(exc).__name__,
            )
        self._lost.set()

    def _keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """`key`'s requests and tokens windows and its leases, as Redis key names."""
        names = self._names.get(key)
        if names is None:
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            p = self._prefix
            names = (
                f"{p}:requests:{key}".encode(),
                f"{p}:tokens:{key}".encode(),
                f"{p}:leases:{key}".encode(),
            )
            self._names[key] = names
        return names

    async def _run(self, script: AsyncScript, keys: tuple[bytes, ...], args: tuple[bytes, ...]) -> Any:
        """One script: over the pipe (EVALSHA; EVAL when Redis lost the script), else redis-py."""
        if self._pipe_options is None:
            return await self._call(script(keys=keys, args=args))
        pipe = self._pipe
        if pipe is None:
            raise ConnectionError("no connection to Redis")
        numkeys = b"%d" % len(keys)
        try:
            return await pipe.call(pack(b"EVALSHA", script.sha.encode(), numkeys, *keys, *args))
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            assert isinstance(script.script, str)
            return await pipe.call(pack(b"EVAL", script.script.encode(), numkeys, *keys, *args))

    async def admit(self, key: str, limits: KeyLimits, lease: str) -> Verdict:
        if not self.up:
            return self.local.admit_now(key, limits, lease)
        self._unsent_requests += 1  # the shared retry budget learns of it within a second
        if not limits.active:
            return Verdict(True)
        rpm, tpm, maxc = limits.rpm or 0, limits.tpm or 0, limits.max_concurrency or 0
        args = (b"%d" % rpm, b"%d" % tpm, b"%d" % maxc, lease.encode(), self._lease_arg, self._window_arg)
        try:
            found = await self._run(self._admit, self._keys(key), args)
        except ERRORS as exc:
            self._lose(exc)
            return self.local.admit_now(key, limits, lease)
        allowed, which, requests, requests_ms, tokens, tokens_ms = (int(v) for v in found)
        return Verdict(
            allowed=bool(allowed),
            limited_by=LIMITED.get(which),
            requests=requests,
            requests_reset=requests_ms / 1000,
            tokens=tokens,
            tokens_reset=tokens_ms / 1000,
            lease=lease if allowed and maxc else None,
            shared=True,
        )

    async def finish(self, key: str, verdict: Verdict, tokens: int) -> None:
        if not verdict.shared:
            self.local.finish_now(key, verdict, tokens)
            return
        if not self.up:  # the lease expires in Redis by itself; the tokens count here meanwhile
            self.local.finish_now(key, Verdict(True), tokens)
            return
        _, tokens_key, leases_key = self._keys(key)
        args = (b"%d" % tokens, (verdict.lease or "").encode(), self._window_arg)
        try:
            await self._run(self._finish, (tokens_key, leases_key), args)
        except ERRORS as exc:
            self._lose(exc)
            self.local.finish_now(key, Verdict(True), tokens)

    def finish_soon(self, key: str, verdict: Verdict, tokens: int) -> None:
        """Over the pipe: the command written now, its answer (or failure) handled by a callback;
        else (redis-py, a script Redis lost) a task of `finish`."""
        pipe = self._pipe
        if not (verdict.shared and self.up and pipe is not None and not pipe.closed):
            self._spawn(self.finish(key, verdict, tokens))  # per process, or redis-py
            return
        _, tokens_key, leases_key = self._keys(key)
        args = (b"%d" % tokens, (verdict.lease or "").encode(), self._window_arg)
        sha = self._finish.sha.encode()
        future = pipe.call(pack(b"EVALSHA", sha, b"2", tokens_key, leases_key, *args))
        future.add_done_callback(lambda done: self._finished(done, key, verdict, tokens))

    def _finished(self, done: asyncio.Future[Any], key: str, verdict: Verdict, tokens: int) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            return
        if isinstance(exc, ReplyError) and str(exc).startswith("NOSCRIPT"):
            self._spawn(self.finish(key, verdict, tokens))  # `_run` sends the script whole
        elif isinstance(exc, ERRORS):
            self._lose(exc)
            self.local.finish_now(key, Verdict(True), tokens)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def acquire_retry(self) -> bool:
        if not self.up:
            return self._resilience.budget.acquire()
        budget = self._resilience.budget
        args: list[str | int | float] = [self._prefix, int(time.time()), math.ceil(budget.window)]
        args += [budget.ratio, budget.min_retries]
        try:
            return bool(await self._call(self._retry(args=args)))
        except ERRORS as exc:
            self._lose(exc)
            return budget.acquire()

    # -- breakers and holds: resilience.Listener, and what other replicas publish ----------------

    def opened(self, key: str, seconds: float, reopens: int) -> None:
        self.publish(ResilienceEvent("open", key, seconds, reopens))

    def closed(self, key: str) -> None:
        self.publish(ResilienceEvent("close", key))

    def held(self, key: str, seconds: float) -> None:
        self.publish(ResilienceEvent("hold", key, seconds))

    def publish(self, event: ResilienceEvent) -> None:
        if not self.up:
            return
        self._spawn(self._publish(event))

    async def _publish(self, event: ResilienceEvent) -> None:
        payload = json.dumps(
            {
                "origin": self._origin,
                "kind": event.kind,
                "deployment": event.deployment,
                "until": time.time() + event.seconds,
                "reopens": event.reopens,
            }
        )
        kind = "open" if event.kind == "close" else event.kind
        ttl = 0 if event.kind == "close" else max(1, int(event.seconds * 1000))
        try:
            key = f"{self._prefix}:{kind}:{event.deployment}"
            await self._call(self._event(keys=[key], args=[payload, ttl, self._channel]))
        except ERRORS as exc:
            self._lose(exc)

    def _apply(self, raw: bytes | str, *, own: bool = False) -> None:
        try:
            event = json.loads(raw)
            kind, deployment = str(event["kind"]), str(event["deployment"])
            seconds, reopens = float(event["until"]) - time.time(), int(event.get("reopens", 0))
        except (ValueError, KeyError, TypeError):
            log.warning("shared state: an event that is not Sluice's on %s; ignored", self._channel)
            return
        if event.get("origin") == self._origin and not own:
            return
        if kind == "open" and seconds > 0:
            self._resilience.breaker.apply_open(deployment, seconds, reopens)
        elif kind == "close":
            self._resilience.breaker.apply_close(deployment)
        elif kind == "hold" and seconds > 0:
            self._resilience.holds.apply(deployment, seconds)

    async def _load(self) -> None:
        """Openings and holds already in Redis (set while this replica was away or not yet up)."""
        for kind in ("open", "hold"):
            async for name in self._client.scan_iter(match=f"{self._prefix}:{kind}:*", count=200):
                raw = await self._call(self._client.get(name))
                if raw is not None:
                    self._apply(raw, own=True)

    # -- connection supervision -----------------------------------------------------------------

    async def _session(self) -> None:
        """Connect, load, listen; return (or raise) when Redis is lost."""
        await self._call(self._client.ping())
        listener = aioredis.Redis.from_url(self._url, socket_connect_timeout=self._timeout)
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        try:
            if self._pipe_options is not None:
                self._pipe = await open_pipe(self._pipe_options, self._timeout)
                for script in (ADMIT, FINISH):
                    await self._pipe.call(pack(b"SCRIPT", b"LOAD", script.encode()))
            await self._call(pubsub.subscribe(self._channel))
            async with asyncio.timeout(max(1.0, self._timeout * 10)):
                await self._load()
            self._lost.clear()
            if not self.up:
                if self.failures:
                    log.warning("shared state: Redis at %s is back; limits shared again", self.display_url)
                self.up, self._detail = True, "Redis"
            self._settled.set()
            loop = asyncio.get_running_loop()
            beat = loop.time()
            while not self._lost.is_set():
                message = await pubsub.get_message(timeout=PROBE_INTERVAL)
                if message is not None and message.get("type") == "message":
                    self._apply(message["data"])
                if loop.time() - beat >= PROBE_INTERVAL:
                    beat = loop.time()
                    await self._heartbeat()
        finally:
            if self._pipe is not None:
                self._pipe.close()
            with contextlib.suppress(*ERRORS):
                await self._call(pubsub.aclose())  # type: ignore[no-untyped-call]
            with contextlib.suppress(*ERRORS):
                await self._call(listener.aclose())

    async def _heartbeat(self) -> None:
        """Once a second: Redis still answers (the hot path's connection too), and the retry budget
        learns this process's requests of the last second (batched: they cost no call of their own)."""
        if self._pipe is not None and self._pipe.closed:
            raise ConnectionError("the hot path's connection to Redis was lost")
        count, self._unsent_requests = self._unsent_requests, 0
        if not count:
            await self._call(self._client.ping())
            return
        key = f"{self._prefix}:budget:req:{int(time.time())}"
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.incrby(key, count)
            pipe.expire(key, int(self._resilience.budget.window) + 2)
            await self._call(pipe.execute())

    async def _supervise(self) -> None:
        while True:
            try:
                await self._session()
            except ERRORS as exc:
                if self.up or not self.failures:
                    self.up = True  # so that `_lose` logs the first loss (or a start without Redis)
                    self._lose(exc)
                self._settled.set()
            await asyncio.sleep(PROBE_INTERVAL)

    async def start(self) -> None:
        """Connect in the background; wait briefly for the first answer (or failure) from Redis."""
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, self._timeout * 10)):
                await self._settled.wait()
        if not self.up:
            log.warning(
                "shared state: Redis at %s not reachable at start-up; per-process limits until it is",
                self.display_url,
            )

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pipe is not None:
            self._pipe.close()
        with contextlib.suppress(*ERRORS):
            await self._client.aclose()

    def status(self) -> tuple[str, str]:
        return ("ok", "Redis") if self.up else ("degraded", self._detail)

    @property
    def display_url(self) -> str:
        """The URL without its password."""
        head, at, tail = self._url.rpartition("@")
        if not at:
            return self._url
        scheme, _, _ = head.partition("://")
        return f"{scheme}://***@{tail}"
