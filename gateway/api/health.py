"""`GET /healthz` (liveness) and `GET /readyz` (config, catalog, ledger). No secrets, no model lists."""

from __future__ import annotations

from starlette.responses import Response

from gateway.core.services import ServicesDep
from gateway.server.responses import json_response


async def healthz() -> Response:
    return json_response({"status": "ok"})


async def readyz(services: ServicesDep) -> Response:
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
    return json_response(body, status=200 if audit_ok else 503)
