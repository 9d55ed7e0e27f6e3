"""A request as the pipeline receives it from any API, whatever its wire format.

What belongs here: `ParsedRequest` (the model asked for, stream or not, the fields passed on
upstream, what the request asks of privacy, the data paths it uses) and `PrivacyAsk`. Each API's wire module
(`gateway.api.openai_protocol`) builds them; `gateway.core.pipeline` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.data_paths import NONE, DataPaths


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
    paths: DataPaths = NONE  # `gateway.core.data_paths.detect_*` of the body
    # Request headers an upstream on the same wire needs (Anthropic's `anthropic-version` and
    # `anthropic-beta`), validated by the API's parse step; never credentials or hosts.
    wire_headers: tuple[tuple[str, str], ...] = ()
