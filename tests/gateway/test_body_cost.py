"""What one body may cost (issue 11, items 2 and 5): time on the event loop, and memory held.

Invariant 7: no single request stalls the event loop. The worst shapes of `tests.gateway.body_shapes`
at the 4 MiB cap go through the demo app in process; the app's own event-loop lag probe must see no
stall in its top bucket (2.5 s; the attack body of issue 11 held the loop for 7 to 19 s), and a
`GET /healthz` sent alongside is answered. Bodies with too many containers are refused with a 400
in the OpenAI envelope before any upstream call. `SLUICE_MAX_INFLIGHT_BODY_BYTES` bounds what the
bodies of requests in flight hold: past it, a 429 with `Retry-After`, never an upstream call.
Memory estimates are checked against tracemalloc, which counts bytes, not time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.api.openai_protocol import parse_chat
from gateway.errors import SluiceError
from gateway.server.jsonbody import MAX_CONTAINERS, MAX_DEPTH, parse_body
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_CONFIG
from tests.gateway.body_shapes import MAX_BODY, SHAPES, shape
from tests.gateway.support import build_app, error_of, mocked_internet, openai_completion, serving
from tests.helpers import until
from tests.scrape import parse

CHAT = "/v1/chat/completions"
HEADERS = {**AUTH, "content-type": "application/json"}
LAG = "sluice_event_loop_lag_seconds"
TOP_BUCKET = "2.5"


def settings(fake: FakeUpstream, tmp: Path, **extra: Any) -> Settings:
    return Settings(
        config=DEMO_CONFIG,
        allow_simulate=True,
        fake_upstream_url=fake.url,
        database_url=f"sqlite+aiosqlite:///{tmp / 'sluice.db'}",
        audit_spool=tmp / "audit.spool",
        metrics_public=True,
        **extra,
    )


@contextlib.asynccontextmanager
async def client(fake: FakeUpstream, tmp: Path, **extra: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(DEMO_CONFIG.read_text(encoding="utf-8"), settings=settings(fake, tmp, **extra))
    async with serving(app) as http:
        yield http


@pytest.fixture
async def http(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client(fake, tmp_path) as each:
        yield each


def lag_samples(text: str) -> tuple[float, float]:
    """(samples in all, samples at or below the top bucket) of the lag histogram."""
    scrape = parse(text)
    return scrape.value(f"{LAG}_count"), scrape.value(f"{LAG}_bucket", le=TOP_BUCKET)


async def test_worst_shapes_leave_the_event_loop_free(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    """The upstream is respx here, not the fake server: the fake runs on this event loop and would
    parse every 4 MiB body itself, and the probe would count its work as the gateway's."""

    async def metrics() -> tuple[float, float]:
        return lag_samples((await http.get("/metrics")).text)

    async def more_samples(than: float) -> tuple[float, float] | None:
        count, top = await metrics()
        return (count, top) if count > than else None

    answers = []
    with mocked_internet() as mock:
        upstream = mock.post(url__startswith=fake.url).respond(200, json=openai_completion())
        before = await metrics()
        for each in SHAPES:
            body = each.build(MAX_BODY)
            big, health = await asyncio.gather(
                http.post(CHAT, content=body, headers=HEADERS), http.get("/healthz")
            )
            answers.append((each, big))
            assert health.status_code == 200
        after_bodies = (await metrics())[0]
        # One more lag sample, taken after the last body: it sees any hold that body caused.
        count, top = await until(lambda: more_samples(after_bodies), "a lag sample after the last body")
    assert count > before[0], "the lag probe took no sample"
    assert count - before[0] == top - before[1], "a body held the event loop past the top lag bucket"
    for each, big in answers:
        assert big.status_code == each.status, (each.name, big.text[:300])
        if big.status_code != 200:
            error_of(big, each.status)
    assert upstream.call_count == sum(each.status == 200 for each in SHAPES)


async def test_the_attack_body_is_a_400_in_the_envelope(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    """Issue 11: 4 MiB, an unknown field holding lists nested 62 levels deep (19.5 s to refuse)."""
    response = await http.post(CHAT, content=shape("deep-unknown-field").build(MAX_BODY), headers=HEADERS)
    error = error_of(response, 400, "invalid_json")
    assert f"{MAX_CONTAINERS:,}" in error["message"]
    assert fake.requests == []


async def test_deep_nesting_at_the_size_cap_is_a_400_naming_the_field(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    response = await http.post(CHAT, content=shape("too-deep-last").build(MAX_BODY), headers=HEADERS)
    error = error_of(response, 400, "invalid_json")
    assert str(MAX_DEPTH) in error["message"]
    assert error["param"] is not None and error["param"].startswith("messages[0].content["), error
    assert fake.requests == []


async def test_more_containers_than_the_cap_is_a_400(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    """A valid chat body whose content part carries 1.4 million empty arrays: 85 MB once parsed."""
    response = await http.post(CHAT, content=shape("empty-arrays").build(MAX_BODY), headers=HEADERS)
    error_of(response, 400, "invalid_json")
    assert fake.requests == []


async def test_a_forbidden_key_after_160k_parts_is_named(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await http.post(CHAT, content=shape("forbidden-key-last").build(MAX_BODY), headers=HEADERS)
    error = error_of(response, 400, "forbidden_parameter")
    assert error["param"] == "messages[].content[].api_base"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        ("API_Base", True),
        ("my_callback_url", True),
        ("Litellm_x", True),
        ("x\napi_base", False),  # the joined keys see `api_base` on a line of its own: a false alarm
        ("api_basement", False),
        ("\nlitellm", False),
    ],
)
def test_steering_keys_are_found_in_one_look_over_all_keys(key: str, refused: bool) -> None:
    content = [{"type": "text", "text": "a", "extra": {"deep": [{key: 1}]}}]
    raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}]})
    try:
        parse_chat(parse_body(raw), policy_header=None)
    except SluiceError as exc:
        assert refused and exc.code == "forbidden_parameter", exc
    else:
        assert not refused


@pytest.mark.parametrize(
    "raw", [b'{"a": [[]]}', b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}", b'{"a": NaN}', b"[]"], ids=str
)
@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_as_it_was_after_a_parse(raw: bytes, enabled: bool) -> None:
    """The collector is paused while a body is parsed, and only then: a body accepted, refused as
    too deep, not JSON, or not an object leaves it as it found it."""
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with contextlib.suppress(SluiceError):
            parse_body(raw)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


# -- item 5: memory held by bodies in flight ---------------------------------------------------------
@pytest.mark.parametrize("name", [s.name for s in SHAPES if s.status == 200])
def test_the_memory_estimate_is_an_upper_bound(name: str) -> None:
    raw = shape(name).build(MAX_BODY)
    parsed = parse_body(raw)
    tracemalloc.start()
    try:
        held = orjson.loads(raw)
        measured = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    # The estimate covers the parsed tree plus the text twice (its strings, the upstream's JSON).
    assert parsed.memory_estimate(len(raw)) >= measured + len(raw), name


def held_request(size: int) -> bytes:
    """A chat body of about `size` bytes that the fake upstream holds until the client goes."""
    text = "[[fake:stall_after=0]]" + "a" * size
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


async def test_past_the_body_budget_a_429_with_retry_after(fake: FakeUpstream, tmp_path: Path) -> None:
    budget = 1024 * 1024
    app = build_app(
        DEMO_CONFIG.read_text(encoding="utf-8"),
        settings=settings(fake, tmp_path, max_inflight_body_bytes=budget),
    )
    held = app.state.sluice.body_budget
    async with serving(app) as http:
        # One body larger than the whole budget still goes through an idle process.
        first = asyncio.ensure_future(http.post(CHAT, content=held_request(600_000), headers=HEADERS))
        await until(lambda: len(fake.requests) == 1, "the first request upstream")
        assert held.held > budget  # its parsed estimate, not only its 600 KB
        shown = parse((await http.get("/metrics")).text)
        assert shown.value("sluice_request_body_bytes_in_flight") == held.held
        assert shown.value("sluice_request_body_bytes_in_flight_limit") == budget
        second = await http.post(CHAT, content=held_request(300_000), headers=HEADERS)
        error = error_of(second, 429, "rate_limited")
        assert "SLUICE_MAX_INFLIGHT_BODY_BYTES" in error["message"]
        assert second.headers["retry-after"] == "1"
        assert len(fake.requests) == 1  # the refused body never reached the upstream
        first.cancel()  # the client leaves: its claim is freed with its request
        with pytest.raises(asyncio.CancelledError):
            await first
        await until(lambda: held.held == 0, "the first claim freed")
        small = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        third = await http.post(CHAT, content=small, headers=HEADERS)
        assert third.status_code == 200, third.text
        assert held.held == 0
