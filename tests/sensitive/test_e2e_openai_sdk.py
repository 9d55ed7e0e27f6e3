"""End to end with the official `openai` SDK against a real `sluice demo` process (the demo's rule:
`secrets` -> `zero-retention`): a prompt with a fake credential to gpt-4o-mini, whose only
deployment keeps data 30 days, is rerouted (demo key), or refused with the detector named (a
request that asks to block, and the legal key); the same prompt without it is served as asked."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import LEGAL_KEY
from tests.gateway.support import split_list
from tests.gateway.test_e2e_openai_sdk import Demo, demo  # noqa: F401 (the demo process fixture)

pytestmark = pytest.mark.e2e

FAKE_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
WITH_KEY: list[Any] = [{"role": "user", "content": f"why is this denied? aws_access_key_id={FAKE_KEY}"}]
WITHOUT_KEY: list[Any] = [{"role": "user", "content": "why is this denied? aws_access_key_id=(redacted)"}]


def test_a_credential_is_rerouted_to_the_self_hosted_model(demo: Demo) -> None:  # noqa: F811
    raw = demo.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=WITH_KEY)
    assert raw.headers["x-privacy-sensitive"] == "secrets"
    assert raw.headers["x-privacy-decision"] == "rerouted"
    assert raw.headers["x-privacy-channel"] == "self_hosted.vllm"
    assert "zero-retention" in split_list(raw.headers["x-privacy-policy"])
    completion = raw.parse()
    assert (completion.model_extra or {})["privacy"]["sensitive"] == ["secrets"]


def test_blocked_with_the_detector_named(demo: Demo) -> None:  # noqa: F811
    for client, extra in (
        (demo.client(), {"privacy": {"on_violation": "block"}}),
        (demo.client(LEGAL_KEY), {}),
    ):
        with pytest.raises(openai.PermissionDeniedError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=WITH_KEY, extra_body=extra)
        error = raised.value
        assert error.code == "no_compliant_deployment"
        assert "secrets" in error.message and FAKE_KEY not in error.message
        assert error.response.headers["x-privacy-sensitive"] == "secrets"
        assert isinstance(error.body, dict) and error.body["privacy"]["sensitive"] == ["secrets"]


def test_without_the_key_the_prompt_is_allowed(demo: Demo) -> None:  # noqa: F811
    raw = demo.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=WITHOUT_KEY)
    assert raw.headers["x-privacy-decision"] == "allowed"
    assert raw.headers["x-privacy-channel"] == "openai.api"
    assert "x-privacy-sensitive" not in raw.headers
    assert "sensitive" not in (raw.parse().model_extra or {})["privacy"]


def test_embeddings_with_a_credential_are_refused(demo: Demo) -> None:  # noqa: F811
    with pytest.raises(openai.PermissionDeniedError) as raised:
        demo.client().embeddings.create(model="text-embedding-3-small", input=[f"key {FAKE_KEY}"])
    assert raised.value.response.headers["x-privacy-sensitive"] == "secrets"
