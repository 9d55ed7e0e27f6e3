"""`POST /v1/embeddings`: embeddings through the same pipeline as chat (never streamed).

What belongs here: the route's handler only: admit the request (`gateway.api.intake`), parse it as
an embeddings request (`gateway.api.openai_protocol`), run it through the pipeline
(`gateway.core.pipeline`). The route is declared in `gateway.api.routes`.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.api.intake import admit, policy_header
from gateway.api.openai_protocol import parse_embeddings
from gateway.names import Endpoint
from gateway.server.edge import Inbound


async def create(inbound: Inbound) -> Response:
    key, body = await admit(inbound)
    parsed = parse_embeddings(body, policy_header=policy_header(inbound.request))
    del body
    return await inbound.services.chat.run(
        Endpoint.EMBEDDINGS, key, parsed, request_id=inbound.request_id, started=inbound.started
    )
