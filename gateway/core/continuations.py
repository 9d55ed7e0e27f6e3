"""Which deployment produced a Responses answer, so that `previous_response_id` goes back to it.

What belongs here: `Continuations`, the map from an upstream response id to the key that asked and
the deployment that answered (metadata only: ids, never content). The pipeline remembers each answer
from a deployment that keeps Responses state itself (the pass-through, Azure's own Responses API:
`keep`), and a request that continues one (`ParsedRequest.continues`) is pinned to that deployment
(`require`): the conversation lives at that provider, and no other deployment can serve it. An id
this map does not know, or one another key produced, is a 400: Sluice never guesses where a
conversation lives.

The map is per process and bounded (the oldest entries go first); the ledger records the same id
with each answer (`extra.response_id`), and `lookup`, when given, reads it from there: so another
replica, or this one after a restart, still finds the deployment.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.core.deployments import Deployment

DEFAULT_LIMIT = 100_000


@dataclass(frozen=True)
class Origin:
    key_name: str
    deployment: str


Lookup = Callable[[str], Awaitable[Origin | None]]


class Continuations:
    def __init__(self, *, limit: int = DEFAULT_LIMIT, lookup: Lookup | None = None) -> None:
        self._known: OrderedDict[str, Origin] = OrderedDict()
        self._limit = limit
        self._lookup = lookup

    def remember(self, response_id: str, key_name: str, deployment: str) -> None:
        self._known[response_id] = Origin(key_name, deployment)
        self._known.move_to_end(response_id)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    async def require(self, response_id: str, key_name: str) -> str:
        """The deployment to pin a request continuing `response_id` to; a 400 when there is none."""
        origin = await self.origin(response_id, key_name)
        if origin is None:
            raise InvalidRequest(
                "previous_response_id is not a response this key received through Sluice from a deployment"
                " that keeps responses; send the conversation as input instead",
                param="previous_response_id",
            )
        return origin

    def keep(self, response_id: str | None, key_name: str, deployment: Deployment) -> str | None:
        """Remember an answer's id if a later request can continue it (its deployment keeps Responses
        state), and return it for the ledger record, where other replicas find it. An id from
        litellm's bridge, which keeps nothing, is neither remembered nor recorded."""
        if response_id is None or not deployment.keeps_responses:
            return None
        self.remember(response_id, key_name, deployment.id)
        return response_id

    async def origin(self, response_id: str, key_name: str) -> str | None:
        """The deployment that produced `response_id` for this key, or None (unknown, or another key's)."""
        found = self._known.get(response_id)
        if found is None and self._lookup is not None:
            found = await self._lookup(response_id)
            if found is not None:
                self.remember(response_id, found.key_name, found.deployment)
        if found is None or found.key_name != key_name:
            return None
        return found.deployment
