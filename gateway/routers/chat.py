"""`POST /v1/chat/completions` and `POST /v1/embeddings`.

`handle()` is the whole endpoint; the FastAPI routes below keep it in the app's route table (the
route inventory, 405s for other methods), and `gateway.hotpath` calls it straight from ASGI so the
hot path skips FastAPI's routing.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.http import declared_size, new_request_id, read_body
from gateway.protocol import parse_body, parse_chat, parse_embeddings
from gateway.service import Call
from gateway.state import Services, ServicesDep

router = APIRouter()

CHAT = "chat"
EMBEDDINGS = "embeddings"


async def handle(request: Request, services: Services, endpoint: str) -> Response:
    started = time.perf_counter()
    request_id = new_request_id(request)
    key = await services.auth.client(request.headers)
    services.key_slots.claim(request, key.name)  # before the body: a slow one holds the slot
    limit = services.settings.max_body_bytes
    services.body_budget.claim(request, declared_size(request, limit))
    raw = await read_body(request, limit)
    body = parse_body(raw)
    services.body_budget.claim(request, body.memory_estimate(len(raw)))
    del raw  # what the request holds from here on is the parsed body (and the upstream call's JSON)
    # Repeated lines are one comma-separated list (RFC 9110): every line can only tighten.
    header = ",".join(request.headers.getlist("x-privacy-policy"))
    parse = parse_chat if endpoint == CHAT else parse_embeddings
    parsed = parse(body, policy_header=header)
    del body  # its key set, and the fields that are not passed on
    sensitive = await services.chat.sensitive(endpoint, key, parsed)
    policy = services.chat.effective_policy(key, parsed.ask, sensitive.policies)
    call = Call(endpoint, key, parsed, policy, request_id, started, sensitive)
    if parsed.stream:
        return await services.chat.stream(call)
    return await services.chat.complete(call)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, services: ServicesDep) -> Response:
    return await handle(request, services, CHAT)


@router.post("/v1/embeddings", response_model=None)
async def embeddings(request: Request, services: ServicesDep) -> Response:
    return await handle(request, services, EMBEDDINGS)
