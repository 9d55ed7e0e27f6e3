"""`GET /v1/privacy/catalog` and `GET /v1/privacy/policies`: public facts, no key needed."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from gateway.catalog_view import catalog_json, policies_json
from gateway.state import ServicesDep
from gateway.util import json_response

router = APIRouter()


@router.get("/v1/privacy/catalog", response_model=None)
async def catalog(services: ServicesDep, provider: str | None = None) -> Response:
    return json_response(catalog_json(services.catalog, services.today, provider=provider))


@router.get("/v1/privacy/policies", response_model=None)
async def policies(services: ServicesDep) -> Response:
    return json_response(
        policies_json(services.policies.values(), default=services.config.server.default_policy)
    )
