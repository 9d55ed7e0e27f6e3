"""`/admin/keys`: list, create (the key is shown once), revoke, and change the limits of (PATCH) database
keys; master key only.

What belongs here: parsing admin requests and rendering answers, and `AdminGuard`, which checks the
master key of every `/admin` request before routing, so that an answer without it (401, 403) says
nothing about which admin routes and methods exist (no 404 or 405 to an outsider). The key
lifecycle lives in `gateway.storage.keys`. No key: 401. A key that is not the master key
(`SLUICE_MASTER_KEY`): 403 `master_key_required`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.openai_protocol import parse_json
from gateway.api.pages import OWN_AUTH
from gateway.core.limits import KeyLimits
from gateway.core.services import Services, ServicesDep
from gateway.errors import InvalidRequest, KeyStoreUnavailable, NameTaken, NotFound, SluiceError, render
from gateway.names import ErrorCode, OnViolation
from gateway.server.request_body import new_request_id, read_body
from gateway.server.responses import json_response
from gateway.storage.keys import (
    KeyNameTaken,
    KeyNotFound,
    create_key,
    key_problems,
    list_keys,
    revoke_key,
    update_limits,
)
from gateway.storage.ledger import DB_ERRORS, describe
from gateway.storage.runtime import Storage
from gateway.storage.timespec import parse_moment

log = logging.getLogger("sluice.admin")
M = TypeVar("M", bound=BaseModel)
PREFIX = "/admin"
REFUSAL = "administration needs the master key (SLUICE_MASTER_KEY)"


def _is_admin(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class AdminGuard:
    """ASGI middleware: a `/admin` request without the master key is answered before routing.
    The report page and its sign-in (`gateway.api.pages.OWN_AUTH`, when the pages are on) check the
    master key or a browser session themselves."""

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services
        self.own_auth = OWN_AUTH if services.settings.pages else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_admin(scope["path"]) and scope["path"] not in self.own_auth:
            request = Request(scope)
            request_id = new_request_id(request)
            try:
                await self.services.auth.master(request.headers, refusal=REFUSAL)
            except SluiceError as exc:
                await render(exc, request_id=request_id)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    policy: list[str] = Field(default_factory=list)
    models: list[str] | None = None
    expires: str | None = Field(default=None, description="a duration like 90d, or an ISO date")
    on_violation: OnViolation | None = None
    rpm: int | None = Field(default=None, ge=0, description="requests per minute; 0: none")
    tpm: int | None = Field(default=None, ge=0, description="tokens per minute; 0: none")
    max_concurrency: int | None = Field(default=None, ge=0, description="requests in flight; 0: none")

    @field_validator("policy", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


class NewLimits(BaseModel):
    """PATCH /admin/keys/{name}: the limits named change (null: back to the server's default)."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    max_concurrency: int | None = Field(default=None, ge=0)


async def admin_storage(request: Request, services: ServicesDep) -> Storage:
    """The caller must hold the master key, and keys must live in the database."""
    new_request_id(request)
    await services.auth.master(request.headers, refusal=REFUSAL)  # AdminGuard checked it too
    storage: Storage | None = getattr(request.app.state, "storage", None)
    if storage is None:
        raise NotFound("this gateway does not keep keys in a database")
    return storage


StorageDep = Annotated[Storage, Depends(admin_storage)]


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except DB_ERRORS as exc:
        log.error("key administration: database unavailable: %s", describe(exc))
        raise KeyStoreUnavailable("the key store is unavailable; try again shortly") from None


async def get_keys(storage: StorageDep) -> Response:
    now = datetime.now(UTC)
    with _database_errors():
        found = await list_keys(storage.db)
    return json_response({"object": "list", "data": [k.as_dict(now) for k in found]})


def _new_key(raw: bytes) -> NewKey:
    return _validated(NewKey, raw)


def _validated(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate(parse_json(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        message = str(first.get("msg", "invalid value")).splitlines()[0][:200]
        raise InvalidRequest(f"invalid value for {where}: {message}", param=where) from None


async def post_key(request: Request, storage: StorageDep, services: ServicesDep) -> Response:
    ask = _new_key(await read_body(request, services.settings.max_body_bytes))
    problems = key_problems(
        ask.name,
        ask.policy,
        ask.models,
        known_policies=services.policies,
        known_models=services.router.models,
        reserved_names=storage.reserved_names,
    )
    if problems:
        unknown_policy = any(p not in services.policies for p in ask.policy)
        code = ErrorCode.UNKNOWN_POLICY if unknown_policy else None
        raise InvalidRequest("; ".join(problems), code=code)
    now = datetime.now(UTC)
    try:
        expires_at = parse_moment(ask.expires, now=now, direction="future") if ask.expires else None
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="expires") from None
    try:
        with _database_errors():
            key, stored = await create_key(
                storage.db,
                name=ask.name,
                policy=ask.policy,
                models=ask.models,
                on_violation=ask.on_violation,
                expires_at=expires_at,
                now=now,
                limits=KeyLimits(ask.rpm, ask.tpm, ask.max_concurrency),
            )
    except KeyNameTaken as exc:
        raise NameTaken(str(exc), param="name") from None
    storage.keys.changed("create", stored.name)  # this replica at once; the others by notification
    return json_response({**stored.as_dict(now), "key": key}, status=201)


async def delete_key(name: str, storage: StorageDep) -> Response:
    try:
        with _database_errors():
            stored = await revoke_key(storage.db, name)
    except KeyNotFound as exc:
        raise NotFound(str(exc)) from None
    storage.keys.changed("revoke", stored.name)  # this replica at once; the others by notification
    return json_response(stored.as_dict(datetime.now(UTC)))


async def patch_key(name: str, request: Request, storage: StorageDep, services: ServicesDep) -> Response:
    ask = _validated(NewLimits, await read_body(request, services.settings.max_body_bytes))
    changes = ask.model_dump(include=ask.model_fields_set)
    if not changes:
        raise InvalidRequest("name at least one of rpm, tpm, max_concurrency (null: the server's default)")
    try:
        with _database_errors():
            stored = await update_limits(storage.db, name, **changes)
    except KeyNotFound as exc:
        raise NotFound(str(exc)) from None
    storage.keys.changed("update", stored.name)  # this replica at once; the others by notification
    return json_response(stored.as_dict(datetime.now(UTC)))
