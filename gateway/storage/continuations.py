"""The ledger as the memory of `previous_response_id`: which deployment produced a response id.

What belongs here: `find_origin`, one query over `audit_events` (the answers of `POST /v1/responses`
whose record carries `extra.response_id`), used by `gateway.core.continuations` when its own map
does not know an id (another replica answered it, or this process restarted). Metadata only.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from gateway.core.continuations import Lookup, Origin
from gateway.names import Endpoint
from gateway.storage.db import Database, audit_events
from gateway.storage.ledger import DB_ERRORS, describe

log = logging.getLogger("sluice.storage")
MAX_ID = 256


def origin_finder(db: Database) -> Lookup:
    async def find_origin(response_id: str) -> Origin | None:
        """The key and deployment of the newest successful answer with this id; None when the ledger
        has none, or cannot be read (then the request is a 400, never sent to a guessed deployment)."""
        if len(response_id) > MAX_ID:
            return None
        query = (
            select(audit_events.c.key_name, audit_events.c.deployment)
            .where(audit_events.c.endpoint == Endpoint.RESPONSES.value)
            .where(audit_events.c.status == 200)
            .where(audit_events.c.extra["response_id"].as_string() == response_id)
            .order_by(audit_events.c.id.desc())
            .limit(1)
        )
        try:
            async with db.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except DB_ERRORS as exc:
            log.warning("previous_response_id lookup in the ledger failed: %s", describe(exc))
            return None
        if row is None or row.deployment is None:
            return None
        return Origin(row.key_name, row.deployment)

    return find_origin
