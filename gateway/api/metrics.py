"""`GET /metrics`: Prometheus text format 0.0.4; master key only, unless `SLUICE_METRICS_PUBLIC=true`.

What belongs here: the access check and rendering; the metrics live in
`gateway.observability.metrics`. No key: 401. A key that is not the master key (or no master key
configured): 403, as for `/admin`. An allowed scrape also starts the event-loop lag probe, if it
is not running (an app without lifespan).
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from gateway.core.services import Services, ServicesDep
from gateway.observability.metrics import CONTENT_TYPE
from gateway.server.request_body import new_request_id


async def require_access(request: Request, services: Services) -> None:
    if services.settings.metrics_public:
        return
    new_request_id(request)
    await services.auth.master(
        request.headers,
        refusal="metrics need the master key (SLUICE_MASTER_KEY), or SLUICE_METRICS_PUBLIC=true",
    )


async def metrics(request: Request, services: ServicesDep) -> Response:
    await require_access(request, services)
    services.metrics.loop_lag.start()
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
