"""The pass-through's view of an upstream answer, and FastTransport's own cheap one.

What belongs here: `UpstreamAnswer`, the four things the pass-through reads from an answer (status,
a header lookup, the body's bytes, closing it), which `httpx.Response` has too; `Answer`, the object
FastTransport and CappedTransport hand the pass-through directly (`open`); `RawHeaders`, its header
lookup over the lines as parsed.

Why: building an `httpx.Response` (twice: the wire's, then CappedTransport's) normalised every
header line into `httpx.Headers`, and reading it went through the response's decoder, chunker and
`aiter_raw` layers, none of which the pass-through needs (CappedTransport inflates and caps the
body itself): about a sixth of the upstream call's CPU (bench/PROFILE.md). A mock at the HTTP seam
(respx) still answers with an `httpx.Response`, which the pass-through reads the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Protocol, runtime_checkable

import httpx


class UpstreamAnswer(Protocol):
    """An answer as the pass-through reads it (`httpx.Response` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


def _text(value: bytes) -> str:
    """A header value as `httpx.Headers` gives it (ascii, else utf-8, else latin-1)."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")


class RawHeaders(Mapping[str, str]):
    """Header lines as the parser gave them, looked up by case-insensitive name; a name sent more
    than once gives its values joined by ", " (as `httpx.Headers` does). A few lookups per answer,
    so a scan of the lines costs less than building an index."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def _values(self, key: str) -> list[str]:
        wanted = key.lower().encode("latin-1")
        return [_text(value) for name, value in self.raw if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        values = self._values(key)
        if not values:
            raise KeyError(key)
        return ", ".join(values)

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        values = self._values(key)
        return ", ".join(values) if values else default

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for name, _ in self.raw:
            seen.setdefault(name.decode("latin-1").lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len(self.raw)  # the lines, as `httpx.Headers` counts


class Answer:
    """An upstream answer whose body is read once, as it arrives (`aiter_bytes`), then closed."""

    __slots__ = ("headers", "status_code", "stream")

    def __init__(self, status_code: int, headers: RawHeaders, stream: httpx.AsyncByteStream) -> None:
        self.status_code = status_code
        self.headers = headers
        self.stream = stream

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self.stream.__aiter__()

    async def aclose(self) -> None:
        await self.stream.aclose()


@runtime_checkable
class Opener(Protocol):
    """A transport that can answer with an `Answer` instead of an `httpx.Response`."""

    async def open(self, request: httpx.Request) -> Answer: ...
