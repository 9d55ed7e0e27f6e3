"""The memory that request bodies may hold across a process, all requests together.

What belongs here: `BodyBudget`. `SLUICE_MAX_CONCURRENCY` bounds how many requests are in flight,
not what they hold: a 4 MiB body of small content parts is ~50 MB once parsed, and it stays in
memory for as long as its upstream call runs. A chat or embeddings request claims budget before
its body is read (its `Content-Length`, or the body cap when it sends none), grows the claim to
an estimate of the parsed body (`JsonBody.memory_estimate`) once it is parsed; `hold()` is a
context manager the request's claims (`gateway.server.edge.Inbound.claims`) keep open until the
response has been sent, whatever happened in between, and it frees the claim on its way out.
Past the budget: a 429 with `Retry-After`, like the concurrency cap. A single request always fits
an idle process, whatever its size: the budget only limits how many large bodies are held at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway.errors import RateLimited


class BodyClaim:
    """What one request holds of the budget; it only grows, until `BodyBudget.hold` frees it."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold `size` bytes in all (at least what is held already); a 429 if that does not fit
        and the request already holds its share."""
        budget, current = self.budget, self.size
        if size <= current:
            return
        # An idle process takes any one request (the first claim can always go through), so a
        # budget below the body cap cannot refuse every maximum-size body.
        if budget.held + size - current > budget.limit and budget.held > current:
            raise RateLimited(
                "Sluice holds as many request bodies as its memory budget allows "
                "(SLUICE_MAX_INFLIGHT_BODY_BYTES); retry shortly",
                headers={"retry-after": "1"},
            )
        budget.held += size - current
        self.size = size


class BodyBudget:
    def __init__(self, limit: int) -> None:
        """`limit` bytes for all bodies in flight in this process."""
        self.limit = limit
        self.held = 0

    @contextmanager
    def hold(self) -> Iterator[BodyClaim]:
        """A claim of the budget for one request, grown by the request and freed on the way out."""
        claim = BodyClaim(self)
        try:
            yield claim
        finally:
            self.held -= claim.size
