"""`POST /v1/chat/completions`: a chat, streamed or not, through the pipeline.

What belongs here: the route's handler only: admit the request (`gateway.api.intake`), parse it as
a chat (`gateway.api.openai_protocol`), run it through the pipeline (`gateway.core.pipeline`). The
route is declared in `gateway.api.routes`, and runs inside the edge's guards (`gateway.server.edge`).
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.api.intake import admit, policy_header
from gateway.api.openai_protocol import parse_chat
from gateway.names import Endpoint
from gateway.server.edge import Inbound


async def completions(inbound: Inbound) -> Response:
    key, body = await admit(inbound)
    parsed = parse_chat(body, policy_header=policy_header(inbound.request))
    del body  # its key set, and the fields that are not passed on
    return await inbound.services.chat.run(
        Endpoint.CHAT, key, parsed, request_id=inbound.request_id, started=inbound.started
    )
