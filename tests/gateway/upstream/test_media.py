"""Which media URLs a translated deployment may take by reference (`gateway/upstream/media.py`)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream.base import UpstreamRequestRejected
from gateway.upstream.media import refuse_fetched_media

PUBLIC = "https://images.example.com/cat.png"
GEMINI_FILE = "https://generativelanguage.googleapis.com/v1beta/files/abc123"
INLINE = "data:image/png;base64,iVBORw0KGgo="


def body(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": list(parts)}]}


def image(url: object) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize("prefix", ["anthropic", "gemini", "bedrock", "ollama_chat", "vertex_ai", "mistral"])
def test_inline_data_and_text_never_refused(prefix: str) -> None:
    refuse_fetched_media(prefix, body(image(INLINE), {"type": "text", "text": f"see {PUBLIC} and gs://b/o"}))
    refuse_fetched_media(prefix, {"messages": [{"role": "user", "content": f"look at {PUBLIC}"}]})


@pytest.mark.parametrize(
    ("prefix", "part"),
    [
        ("anthropic", image(PUBLIC)),
        ("anthropic", image("https://images.example.com/no-extension")),
        ("gemini", image(GEMINI_FILE)),
    ],
)
def test_urls_the_provider_fetches_itself_pass(prefix: str, part: dict[str, Any]) -> None:
    refuse_fetched_media(prefix, body(part))


@pytest.mark.parametrize(
    ("prefix", "part"),
    [
        ("anthropic", image("http://images.example.com/cat.png")),  # litellm downloads http
        ("anthropic", {"type": "image_url", "image_url": "http://images.example.com/cat.png"}),
        ("anthropic", {"type": "file", "file": {"file_id": "https://docs.example.com/a.pdf"}}),
        ("gemini", image(PUBLIC)),  # litellm downloads every https image for the Gemini API
        ("gemini", image("gs://bucket/cat.png")),
        ("gemini", image(GEMINI_FILE + "?next=gs://bucket/cat")),
        ("bedrock", image(PUBLIC)),
        ("vertex_ai", image(PUBLIC)),
        ("ollama_chat", image(PUBLIC)),
        ("anthropic", {"type": "input_audio", "input_audio": {"data": "ftp://files.example.com/a.wav"}}),
        ("anthropic", {"type": "image_url", "image_url": {"url": PUBLIC, "detail": "https://x.example/"}}),
    ],
)
def test_urls_the_translation_would_download_are_refused(prefix: str, part: dict[str, Any]) -> None:
    with pytest.raises(UpstreamRequestRejected, match="inline as a data: URL") as refused:
        refuse_fetched_media(prefix, body(part))
    assert "example" not in refused.value.message and refused.value.client_fault
