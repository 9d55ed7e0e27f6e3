"""Canaries: what a detector matched never appears in logs (DEBUG included), the ledger, metrics or errors.

Each canary is a unique string of a detector's form (an AWS-format key id, an e-mail address, an
operator keyword). They ride in requests that are tightened and served, tightened and blocked,
streamed, only reported (report mode) and failed by a provider that echoes the prompt in its error
(the fake upstream's `leak`). Logging runs at DEBUG with a capturing handler on every logger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.conftest import chat_body
from tests.gateway.support import LITELLM_WARNINGS, bearer, build_app, key_hash, serving
from tests.gateway.test_canary import Everything, attach_everywhere

pytestmark = list(LITELLM_WARNINGS)

SECRET = "AKIACANARY7F3A91E2XY"  # the form of an AWS access key id; not a key
EMAIL = "canary.7f3a91e2@example.com"
KEYWORD = "Bluebird7f3a91e2"
CANARIES = (SECRET, EMAIL, KEYWORD)
CLIENT = "sk-sensitive-canary-client"
MASTER = "sk-sensitive-canary-master-0123456789"


def config(fake_url: str) -> str:
    return f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: local
    deployments:
      - {{provider: self_hosted, channel: self_hosted.vllm, model: hosted_vllm/llama,
          api_base: "{fake_url}/v1"}}
  - name: hosted
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_base: "https://api.openai.com/v1",
          api_key_env: SENSITIVE_CANARY_KEY}}
sensitive:
  rules:
    - {{detectors: [secrets, pii], require: [self-hosted-only]}}
    - {{detectors: [custom], require: [self-hosted-only], mode: report}}
  custom: {{keywords: [{KEYWORD}]}}
keys:
  - {{name: canary, key_hash: "{key_hash(CLIENT)}"}}
"""


@pytest.fixture
async def http(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture, audit: MemoryAuditSink
) -> AsyncIterator[tuple[httpx.AsyncClient, Everything]]:
    caplog.set_level("DEBUG")
    handler = Everything()
    app = build_app(config(fake.url), settings=Settings(master_key=MASTER), audit=audit)
    loggers = attach_everywhere(handler)
    try:
        async with serving(app) as client:
            yield client, handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


PROMPT = f"deploy with {SECRET}, mail {EMAIL} about {KEYWORD}"


async def test_matched_text_is_nowhere(
    http: tuple[httpx.AsyncClient, Everything], caplog: pytest.LogCaptureFixture, audit: MemoryAuditSink
) -> None:
    client, logs = http
    auth = bearer(CLIENT)
    seen: list[str] = []
    for body, status, tightened in (
        (chat_body(model="local", content=PROMPT), 200, True),
        (chat_body(model="local", content=PROMPT, stream=True), 200, True),
        (chat_body(model="hosted", content=PROMPT), 403, True),
        (chat_body(model="local", content=PROMPT + " [[fake:status=500,leak]]"), 502, True),
        (chat_body(model="local", content=PROMPT + " [[fake:status=400,leak]]"), 400, False),
        (chat_body(model="hosted", content=f"only {KEYWORD} here"), 502, False),  # report mode only
    ):
        response = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert response.status_code == status, response.text
        if tightened:
            assert response.headers["X-Privacy-Sensitive"] == "pii, secrets"
        seen += [response.text if status != 200 else "", str(response.headers)]
    metrics = await client.get("/metrics", headers=bearer(MASTER))
    assert metrics.status_code == 200
    seen.append(metrics.text)
    assert audit.events[0].extra == {
        "sensitive": ["pii", "secrets"],
        "sensitive_report": ["custom"],
    }
    assert audit.events[-1].extra == {"sensitive_report": ["custom"]}
    assert logs.texts, "the capturing handler saw nothing: the test is not observing logs"
    everything = "\n".join([*logs.texts, caplog.text, *(repr(e.as_dict()) for e in audit.events), *seen])
    for canary in CANARIES:
        assert canary not in everything, canary
