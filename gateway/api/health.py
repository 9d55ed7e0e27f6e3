"""`GET /healthz` (liveness) and `GET /readyz` (config, catalog, ledger, key cache, shared state).
No secrets, no model lists. A key cache whose change channel is down is `degraded`: still ready (keys
are checked with a short time-to-live, gateway.storage.key_cache), never a reason to leave rotation.
The same for `shared_state`: `ok` with Redis, `local` without it, `degraded` while Redis is away."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.core.services import ServicesDep
from gateway.server.responses import json_response
from gateway.storage.runtime import Storage


async def healthz() -> Response:
    return json_response({"status": "ok"})


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
    # Redis away is `degraded`, still ready: limits hold per process meanwhile (gateway.core.limits).
    shared_status, shared_detail = services.limiter.state.status()
    body["shared_state"] = {"status": shared_status, "detail": shared_detail}
    return json_response(body, status=200 if audit_ok else 503)
