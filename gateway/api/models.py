"""`GET /v1/models` and `GET /v1/models/{id}`: only what the caller's key may use, with privacy facts.

Asked by an Anthropic client (an `anthropic-version` header, as the anthropic SDK and Claude Code
send), both answer in Anthropic's shapes (`type: "model"`, `display_name`, `created_at`; a list
with `has_more`, `first_id`, `last_id`) and errors come in Anthropic's envelope.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from gateway.core.auth import KeyRecord
from gateway.core.disclosure import describe
from gateway.core.misses import closest_models
from gateway.core.request import PrivacyAsk
from gateway.core.services import Services, ServicesDep
from gateway.errors import ModelNotFound, SluiceError, render_anthropic
from gateway.names import ErrorCode
from gateway.server.request_body import new_request_id
from gateway.server.responses import json_response


def _model_entry(services: Services, name: str, key: KeyRecord) -> dict[str, Any]:
    policy = services.chat.effective_policy(key, PrivacyAsk())
    deployments = []
    for dep in services.router.models[name]:
        decision, _ = services.router.judge(policy, dep)
        deployments.append({**describe(dep), "complies": decision.allowed, "reasons": decision.reasons()})
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "sluice",
        "privacy": {
            "policy": [p.name for p in policy],
            "complies": any(d["complies"] and d["available"] for d in deployments),
            "deployments": deployments,
        },
    }


# Sluice has no creation date for an alias: the epoch, as `created: 0` in the OpenAI shape.
CREATED_AT = "1970-01-01T00:00:00Z"


def _anthropic_entry(entry: dict[str, Any]) -> dict[str, Any]:
    name = entry["id"]
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": CREATED_AT,
        "privacy": entry["privacy"],
    }


def _anthropic_client(request: Request) -> bool:
    return "anthropic-version" in request.headers


async def list_models(request: Request, services: ServicesDep) -> Response:
    request_id = new_request_id(request)
    try:
        key = await services.auth.client(request.headers)
    except SluiceError as exc:
        if _anthropic_client(request):
            return render_anthropic(exc, request_id=request_id)
        raise
    data = [_model_entry(services, m, key) for m in services.router.models if key.may_use(m)]
    if _anthropic_client(request):
        listed = [_anthropic_entry(entry) for entry in data]
        first, last = (listed[0]["id"], listed[-1]["id"]) if listed else (None, None)
        return json_response({"data": listed, "has_more": False, "first_id": first, "last_id": last})
    return json_response({"object": "list", "data": data})


async def get_model(model_id: str, request: Request, services: ServicesDep) -> Response:
    request_id = new_request_id(request)
    try:
        key = await services.auth.client(request.headers)
        if model_id not in services.router.models or not key.may_use(model_id):
            hint = closest_models(model_id, filter(key.may_use, services.router.models))
            raise ModelNotFound(
                f"the model does not exist or you do not have access to it{hint}",
                code=ErrorCode.MODEL_NOT_FOUND,
                param="model",
            )
    except SluiceError as exc:
        if _anthropic_client(request):
            return render_anthropic(exc, request_id=request_id)
        raise
    entry = _model_entry(services, model_id, key)
    return json_response(_anthropic_entry(entry) if _anthropic_client(request) else entry)
