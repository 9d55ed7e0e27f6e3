"""A request as the pipeline receives it from any API, whatever its wire format.

What belongs here: `ParsedRequest` (the model asked for, stream or not, the fields passed on
upstream, and what the request asks of privacy) and `PrivacyAsk`. Each API's wire module
(`gateway.api.openai_protocol`) builds them; `gateway.core.pipeline` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrivacyAsk:
    """What a request adds to its key's policy (it can only tighten)."""

    policies: tuple[str, ...] = ()
    block: bool = False


@dataclass(frozen=True)
class ParsedRequest:
    model: str
    stream: bool
    fields: dict[str, Any]
    ask: PrivacyAsk
    # The upstream object this request continues (Responses' `previous_response_id`): only the
    # deployment that produced it can serve the request (`gateway.core.continuations`).
    continues: str | None = None
    # The data paths the request uses (DESIGN.md "Data paths"), from the wire's detector.
    features: tuple[str, ...] = ()
