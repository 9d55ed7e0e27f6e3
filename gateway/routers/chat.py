"""`POST /v1/chat/completions` and `POST /v1/embeddings`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.http import new_request_id, read_body
from gateway.protocol import parse_chat, parse_embeddings, parse_json
from gateway.service import Call
from gateway.state import ServicesDep

router = APIRouter()


async def _call(request: Request, services: ServicesDep, endpoint: str) -> Call:
    started = time.perf_counter()
    request_id = new_request_id(request)
    key = await services.auth.authenticate(request.headers)
    body = parse_json(await read_body(request, services.settings.max_body_bytes))
    header = request.headers.get("x-privacy-policy")
    parse = parse_chat if endpoint == "chat" else parse_embeddings
    parsed = parse(body, policy_header=header)
    policy = services.chat.effective_policy(key, parsed.ask)
    return Call(endpoint, key, parsed, policy, request_id, started)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, services: ServicesDep) -> Response:
    call = await _call(request, services, "chat")
    if call.parsed.stream:
        return await services.chat.stream(call)
    return await services.chat.complete(call)


@router.post("/v1/embeddings", response_model=None)
async def embeddings(request: Request, services: ServicesDep) -> Response:
    return await services.chat.complete(await _call(request, services, "embeddings"))
