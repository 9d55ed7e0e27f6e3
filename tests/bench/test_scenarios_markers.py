"""bench/scenarios.py: the fake's directives reach it in the prompt of every target's request."""

from __future__ import annotations

import json

from bench.scenarios import BY_ID, DIRECT, LITELLM, SLUICE, request_for


def _prompt(scenario: str, target: str) -> str:
    body = json.loads(request_for(target, "http://127.0.0.1:1", BY_ID[scenario]).body)
    return str(body["messages"][0]["content"])


def test_paced_streams_ask_for_one_event_per_millisecond_on_every_target() -> None:
    for scenario in ("paced_c1", "trpaced_c1"):
        for target in (DIRECT, SLUICE, LITELLM):
            assert _prompt(scenario, target).endswith("[[fake:chunks=200,chunk_delay_ms=1]]")


def test_long_streams_ask_for_chunks_only_and_default_streams_for_nothing() -> None:
    assert _prompt("long_c1", SLUICE).endswith("[[fake:chunks=1000]]")
    assert "[[fake:" not in _prompt("st_c1", SLUICE)
