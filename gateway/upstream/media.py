"""Media a client sends by URL, and which translated deployments may take it that way.

What belongs here: finding the URL references in a chat request's content parts, or a Responses
request's input items (images, files, audio: every part that is not text), and refusing them
before litellm sees the request where its translation would download them from the gateway's own
host (DESIGN.md invariant 2: nothing leaves the process except to a configured deployment's host,
and no URL a client sent is fetched).

litellm turns an image URL into inline data by downloading it for every provider except Anthropic,
whose API fetches an `https` image itself (litellm sends it as a `{"type": "url"}` source). For the
Gemini API litellm downloads every `https` image, though the API could fetch public URLs: there only
files already uploaded to the Gemini Files API pass by reference (the provider's own host). Every
other URL gets a 400 asking for inline `data:` URLs. The OpenAI-wire pass-through sends the body as
it is: there the provider fetches, not Sluice. litellm's own downloads are also switched off when it
is loaded (`MAX_IMAGE_URL_DOWNLOAD_SIZE_MB=0`, in `gateway/upstream/litellm_adapter.py`), so a path
this module does not know still fetches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.upstream.base import UpstreamRequestRejected

INLINE = "send it inline as a data: URL (data:image/png;base64,...)"
HTTPS = "https://"
GEMINI_FILES = "https://generativelanguage.googleapis.com/v1beta/files/"


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif depth < 16 and isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif depth < 16 and isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def _is_reference(value: str) -> bool:
    """A value a translation would fetch: anything with a scheme that is not inline data."""
    return "://" in value and not value.lstrip().lower().startswith("data:")


TEXT_PARTS = frozenset({"text", "refusal", "input_text", "output_text"})


def _media_parts(messages: Any) -> Iterator[dict[str, Any]]:
    """The non-text parts of chat `messages`, or of Responses `input` items (a message's content,
    a tool output's parts)."""
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        for field in ("content", "output"):
            parts = message.get(field)
            if isinstance(parts, list):
                for part in parts:
                    if isinstance(part, dict) and part.get("type") not in TEXT_PARTS:
                        yield part


def _image_url(part: dict[str, Any]) -> str | None:
    """The URL of an `image_url` part, or a Responses `input_image` part (None for any other part)."""
    if part.get("type") not in ("image_url", "input_image"):
        return None
    image = part.get("image_url")
    if isinstance(image, dict):
        image = image.get("url")
    return image if isinstance(image, str) else None


def refuse_fetched_media(prefix: str, body: dict[str, Any]) -> None:
    """Raise `UpstreamRequestRejected` if a content part of `body` holds a URL that the translation
    for the litellm provider `prefix` would download instead of handing to the provider."""
    for part in (*_media_parts(body.get("messages")), *_media_parts(body.get("input"))):
        references = [s for s in _strings(part) if _is_reference(s)]
        if not references:
            continue
        url = _image_url(part)
        if url is not None and references == [url]:
            if prefix == "anthropic" and url.startswith(HTTPS):
                continue
            if prefix == "gemini" and url.startswith(GEMINI_FILES) and "gs://" not in url:
                continue
        raise UpstreamRequestRejected(
            f"this model's provider cannot take a media URL through Sluice, which does not fetch it; {INLINE}"
        )
