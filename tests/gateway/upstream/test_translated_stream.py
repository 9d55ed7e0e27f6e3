"""The translated stream's relay (`gateway/upstream/litellm_transform.py` `TransformStream`): the
events one network read brought leave in one piece (one ASGI send instead of one per event), and
none waits for the upstream's next read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.upstream.base import UpstreamTarget
from gateway.upstream.litellm_adapter import LiteLLMAdapter
from tests.gateway.support import LITELLM_WARNINGS

pytestmark = list(LITELLM_WARNINGS)


@pytest.fixture
async def adapter() -> AsyncIterator[LiteLLMAdapter]:
    adapter = LiteLLMAdapter()
    yield adapter
    await adapter.aclose()


async def pieces(adapter: LiteLLMAdapter, fake: FakeUpstream, directive: str) -> tuple[str, list[bytes]]:
    model = "claude-sonnet-4-5"
    target = UpstreamTarget(model=f"anthropic/{model}", upstream_model=model, api_base=fake.url, api_key="k")
    body = {"model": "claude", "messages": [{"role": "user", "content": f"hi [[fake:{directive}]]"}]}
    stream = await adapter.chat_stream(target, {**body, "max_tokens": 64})
    first = stream.first["choices"][0]["delta"]["content"]
    return first, [piece async for piece in stream]


def contents(piece: bytes) -> list[str]:
    data = [event.removeprefix(b"data: ") for event in piece.split(b"\n\n") if event]
    return [orjson.loads(d)["choices"][0]["delta"].get("content", "") for d in data if d != b"[DONE]"]


async def test_the_events_of_one_read_leave_in_one_piece(adapter: LiteLLMAdapter, fake: FakeUpstream) -> None:
    # The fake writes a fast stream in one write: 20 events arrive in one read (or very few).
    first, sent = await pieces(adapter, fake, "chunks=20")
    assert len(sent) <= 3
    assert sent[-1].endswith(b"data: [DONE]\n\n")
    text = first + "".join(c for piece in sent for c in contents(piece))
    assert text.startswith("Simulated reply from claude-sonnet-4-5")
    assert sum(piece.count(b"data: ") for piece in sent) == 19 + 2  # the rest, the finish, [DONE]


async def test_an_event_leaves_before_the_next_read(adapter: LiteLLMAdapter, fake: FakeUpstream) -> None:
    # One event per read: each leaves on its own, none held back until the upstream's next event.
    first, sent = await pieces(adapter, fake, "chunks=4,chunk_delay_ms=20")
    assert [piece.count(b"data: ") for piece in sent] == [1, 1, 1, 2]
    assert len([first, *(c for piece in sent[:-1] for c in contents(piece))]) == 4
