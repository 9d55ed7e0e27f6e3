"""`GET /healthz` (liveness) and `GET /readyz` (config, catalog, ledger, key cache). No secrets, no
model lists. A key cache whose change channel is down is `degraded`: still ready (keys are checked
with a short time-to-live, gateway.storage.key_cache), never a reason to leave rotation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.state import ServicesDep
from gateway.storage.runtime import Storage
from gateway.util import json_response

router = APIRouter()


@router.get("/healthz", response_model=None)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", response_model=None)
async def readyz(request: Request, services: ServicesDep) -> Response:
    audit_ok, audit_state = services.audit.status()
    deployments = services.router.all_deployments()
    available = sum(1 for d in deployments if d.available)
    body = {
        "status": "ready" if audit_ok else "unready",
        "config": {
            "status": "ok",
            "models": len(services.router.models),
            "deployments": len(deployments),
            "available_deployments": available,
        },
        "catalog": {"status": "ok", "channels": len(services.catalog)},
        "database": {"status": "ok" if audit_ok else "error", "detail": audit_state},
    }
    storage: Storage | None = getattr(request.app.state, "storage", None)
    if storage is not None:
        key_status, key_detail = storage.keys.source.status()
        body["keys"] = {"status": key_status, "detail": key_detail}
    return json_response(body, status=200 if audit_ok else 503)
