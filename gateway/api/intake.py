"""What every pipeline API does with a request before its own parse: the first steps of the pipeline.

What belongs here: `admit()`: authenticate the bearer key, hold the key's slot (before the body:
a slow one holds the slot), read the body within the body cap and the process's body budget, and
parse it as JSON; and the `X-Privacy-Policy` header as one list. Each API's module then parses the
body into its own wire model and hands it to `gateway.core.pipeline`.
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.core.auth import KeyRecord
from gateway.server.edge import Inbound
from gateway.server.jsonbody import JsonBody, parse_body
from gateway.server.request_body import declared_size, read_body


async def admit(inbound: Inbound) -> tuple[KeyRecord, JsonBody]:
    """The caller's key and the body as JSON, with the request's claims held in `inbound.claims`."""
    request, services = inbound.request, inbound.services
    key = await services.auth.client(request.headers)
    inbound.claims.enter_context(services.key_slots.hold(key.name))
    budget = inbound.claims.enter_context(services.body_budget.hold())
    limit = services.settings.max_body_bytes
    budget.grow(declared_size(request, limit))
    raw = await read_body(request, limit)
    body = parse_body(raw)
    budget.grow(body.memory_estimate(len(raw)))
    # What the request holds from here on is the parsed body (and the upstream call's JSON).
    return key, body


def policy_header(request: Request) -> str:
    """`X-Privacy-Policy`: repeated lines are one comma-separated list (RFC 9110); each can only tighten."""
    return ",".join(request.headers.getlist("x-privacy-policy"))
