"""Fault directives for the fake upstream: parsing, merging and the `Faults` value object.

What belongs here: the directive grammar, where directives are found in a request (model name,
``[[fake:...]]`` markers in the raw body) and their validation.  Nothing here does I/O.

Grammar: comma-separated items, each ``key=value`` or a bare flag; unknown keys are a 400, so typos
fail loudly.  Sources merge in the order control-API script < model name (``fake-fault:...``) <
body markers; a later value for the same key wins.

    status=<code>          answer <code> with the wire's error body (2xx: normal body, that status)
    retry_after=<s>        add ``retry-after``; retry_after_ms=<n> adds ``retry-after-ms``
    delay_ms=<n>           wait before the response head (watching for the client leaving)
    chunk_delay_ms=<n>     pause between stream frames (between pieces with split_bytes)
    reset                  close with a TCP RST, no answer (after delay_ms, if any)
    reset_after=<k>        send k stream frames (k body bytes when not streaming), then close
                           without the last chunk; add ``rst`` to close with RST instead of FIN
    stall_after=<k>        send k frames/bytes, then hang until the client closes
    error_after=<k>        send k frames, then the wire's in-band error event, then end cleanly
    html                   an nginx-style text/html error page (502 unless status= is given)
    empty200 | error200 | bad_json   200 with no body / an error body / truncated JSON
    redirect=<url>         302 (or the 3xx from status=) with ``location: <url>``
    chunks=<n>             stream content frames (default 20); echo: reply = last user text;
    tricky                 reply text with blank lines, ``data:`` lines and multibyte characters
    split_bytes=<n>        write stream frames in HTTP chunks of at most n bytes
    huge_body=<bytes>      pad the body (or first stream frame) with JSON whitespace to that size
    huge_header=<bytes>    add an ``x-fake-padding`` header of that size
    endless_line[=<bytes>] an SSE line that never ends (bounded, 64 MiB default), then close
    gzip_bomb[=<bytes>]    gzip body inflating to that many spaces + the JSON reply (1 GiB default)
    leak                   error messages echo the API key and the prompt (sanitisation tests)
    leaky_headers          add set-cookie, organisation and request-id headers (stripping tests)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

MODEL_PREFIX: Final = "fake-fault:"
MARKER_RE: Final = re.compile(rb"\[\[fake:([^\]]*)\]\]")
ENDLESS_LINE_DEFAULT: Final = 64 * 1024 * 1024
GZIP_BOMB_DEFAULT: Final = 1024 * 1024 * 1024

_INT_KEYS: Final = frozenset(
    {
        "status",
        "retry_after_ms",
        "delay_ms",
        "chunk_delay_ms",
        "reset_after",
        "stall_after",
        "error_after",
        "chunks",
        "huge_body",
        "endless_line",
        "gzip_bomb",
        "split_bytes",
        "huge_header",
    }
)
_STR_KEYS: Final = frozenset({"retry_after", "redirect"})
_FLAGS: Final = frozenset(
    {"reset", "html", "empty200", "error200", "bad_json", "echo", "rst", "tricky", "leak", "leaky_headers"}
)
_FLAG_DEFAULTS: Final[Mapping[str, int]] = {
    "endless_line": ENDLESS_LINE_DEFAULT,
    "gzip_bomb": GZIP_BOMB_DEFAULT,
}
KNOWN_KEYS: Final = _INT_KEYS | _STR_KEYS | _FLAGS


class DirectiveError(ValueError):
    """A directive string that does not parse; the fake answers 400 so typos fail loudly."""


@dataclasses.dataclass(frozen=True, slots=True)
class Faults:
    """The merged fault plan for one request; every field's default means "behave normally"."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: int | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    reset: bool = False
    reset_after: int | None = None
    stall_after: int | None = None
    error_after: int | None = None
    html: bool = False
    empty200: bool = False
    error200: bool = False
    bad_json: bool = False
    redirect: str | None = None
    chunks: int | None = None
    echo: bool = False
    huge_body: int | None = None
    endless_line: int | None = None
    gzip_bomb: int | None = None
    rst: bool = False
    split_bytes: int | None = None
    tricky: bool = False
    leak: bool = False
    leaky_headers: bool = False
    huge_header: int | None = None


NO_FAULTS: Final = Faults()


@lru_cache(maxsize=4096)
def parse_directives(text: str) -> tuple[tuple[str, str | int | bool], ...]:
    """Parse ``"status=503,reset"`` into validated ``(key, value)`` items, in order."""
    items: list[tuple[str, str | int | bool]] = []
    for raw in text.split(","):
        item = raw.strip()
        if item:
            items.append(_parse_item(item))
    return tuple(items)


def _parse_item(item: str) -> tuple[str, str | int | bool]:
    key, sep, value = item.partition("=")
    key = key.strip().lower()
    value = value.strip()
    if key not in KNOWN_KEYS:
        raise DirectiveError(f"unknown fake directive {key!r}")
    if key in _FLAGS:
        if sep:
            raise DirectiveError(f"fake directive {key!r} takes no value")
        return key, True
    if not sep:
        if key in _FLAG_DEFAULTS:
            return key, _FLAG_DEFAULTS[key]
        raise DirectiveError(f"fake directive {key!r} needs a value")
    if key in _STR_KEYS:
        return key, value
    return key, _parse_int(key, value)


def _parse_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise DirectiveError(f"fake directive {key!r} needs an integer, got {value!r}") from None
    if number < 0:
        raise DirectiveError(f"fake directive {key!r} must not be negative")
    if key == "status" and not 100 <= number <= 599:
        raise DirectiveError(f"fake directive 'status' must be 100..599, got {number}")
    return number


def directives_in_model(model: str) -> str:
    """The directive text carried by a model name such as ``fake-fault:status=503`` (else "")."""
    _, sep, rest = model.partition(MODEL_PREFIX)
    return rest if sep else ""


def directives_in_body(body: bytes) -> str:
    """All ``[[fake:...]]`` markers in the raw body, joined (JSON ``\\/`` escapes undone)."""
    if b"[[fake:" not in body:
        return ""
    found = [m.group(1).decode("utf-8", "replace") for m in MARKER_RE.finditer(body)]
    return ",".join(found).replace("\\/", "/")


def build_faults(*sources: str) -> Faults:
    """Merge directive strings in priority order (later wins) into one `Faults`."""
    merged: dict[str, str | int | bool] = {}
    for source in sources:
        if source:
            merged.update(parse_directives(source))
    if not merged:
        return NO_FAULTS
    return _faults_from(merged)


@lru_cache(maxsize=1024)
def _faults_from_items(items: tuple[tuple[str, str | int | bool], ...]) -> Faults:
    return Faults(**dict(items))  # type: ignore[arg-type]


def _faults_from(merged: dict[str, str | int | bool]) -> Faults:
    return _faults_from_items(tuple(sorted(merged.items())))
