"""`GET /v1/models` and `GET /v1/models/{id}`: only what the caller's key may use, with privacy facts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from gateway.core.auth import KeyRecord
from gateway.core.disclosure import describe
from gateway.core.misses import closest_models
from gateway.core.request import PrivacyAsk
from gateway.core.services import Services, ServicesDep
from gateway.errors import ModelNotFound
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


async def list_models(request: Request, services: ServicesDep) -> Response:
    new_request_id(request)
    key = await services.auth.client(request.headers)
    data = [_model_entry(services, m, key) for m in services.router.models if key.may_use(m)]
    return json_response({"object": "list", "data": data})


async def get_model(model_id: str, request: Request, services: ServicesDep) -> Response:
    new_request_id(request)
    key = await services.auth.client(request.headers)
    if model_id not in services.router.models or not key.may_use(model_id):
        hint = closest_models(model_id, filter(key.may_use, services.router.models))
        raise ModelNotFound(
            f"the model does not exist or you do not have access to it{hint}",
            code=ErrorCode.MODEL_NOT_FOUND,
            param="model",
        )
    return json_response(_model_entry(services, model_id, key))
