"""The cap on one line of an upstream event stream (`gateway/upstream/limits.py`), whatever pieces
the transport hands the body in: one network read can hold many lines (`FastTransport` gives all
that one read brought in one piece)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.upstream.limits import MAX_LINE_BYTES, AnswerRefused, _CappedBody


class Pieces(httpx.AsyncByteStream):
    def __init__(self, *pieces: bytes) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def read(*pieces: bytes) -> bytes:
    body = _CappedBody(Pieces(*pieces), inflate=False, per_line=True, need_event=False)
    return b"".join([piece async for piece in body])


async def test_a_line_ended_inside_a_longer_piece_is_refused() -> None:
    # The over-long line ends in the second piece, which then goes on with short lines.
    with pytest.raises(AnswerRefused):
        await read(b"x" * (MAX_LINE_BYTES - 10), b"y" * 20 + b"\ndata: short\n\n")


async def test_lines_within_the_cap_pass_in_any_pieces() -> None:
    half = b"x" * (MAX_LINE_BYTES // 2)
    body = await read(half, half + b"\n" + half, half + b"\n\n")
    assert body.count(b"\n") == 3
