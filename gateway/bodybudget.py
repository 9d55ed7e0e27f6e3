"""The memory that request bodies may hold across a process, all requests together.

What belongs here: `BodyBudget`. `SLUICE_MAX_CONCURRENCY` bounds how many requests are in flight,
not what they hold: a 4 MiB body of small content parts is ~50 MB once parsed, and it stays in
memory for as long as its upstream call runs. A chat or embeddings request claims budget before
its body is read (its `Content-Length`, or the body cap when it sends none), grows the claim to
an estimate of the parsed body (`JsonBody.memory_estimate`) once it is parsed, and
`gateway.hotpath` frees the claim when the response has been sent, whatever happened in between.
Past the budget: a 429 with `Retry-After`, like the concurrency cap. A single request always fits
an idle process, whatever its size: the budget only limits how many large bodies are held at once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from gateway.errors import RateLimited

CLAIM = "sluice.body_bytes"  # where a request's claim is kept: its scope's "state"


class BodyBudget:
    def __init__(self, limit: int) -> None:
        """`limit` bytes for all bodies in flight in this process."""
        self.limit = limit
        self.held = 0

    def claim(self, request: Request, size: int) -> None:
        """Hold `size` bytes for the request (in all: a second claim replaces the first), freed by
        `release(scope)`; a 429 if that does not fit and the request already holds its share."""
        state = request.scope.setdefault("state", {})
        current: int = state.get(CLAIM, 0)
        if size <= current:
            return
        # An idle process takes any one request (the first claim can always go through), so a
        # budget below the body cap cannot refuse every maximum-size body.
        if self.held + size - current > self.limit and self.held > current:
            raise RateLimited(
                "Sluice holds as many request bodies as its memory budget allows "
                "(SLUICE_MAX_INFLIGHT_BODY_BYTES); retry shortly",
                headers={"retry-after": "1"},
            )
        self.held += size - current
        state[CLAIM] = size

    def release(self, scope: Scope) -> None:
        """Free what the request of `scope` holds, if anything."""
        size = scope.get("state", {}).pop(CLAIM, 0)
        self.held -= size
