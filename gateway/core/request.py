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
    # Data paths the request uses (DESIGN.md "Data paths"): feature ids, filled by each API's parse
    # step (`gateway/core/data_paths.py` judges them); empty until that step exists for the API.
    features: tuple[str, ...] = ()
    # Request headers an upstream on the same wire needs (Anthropic's `anthropic-version` and
    # `anthropic-beta`), validated by the API's parse step; never credentials or hosts.
    wire_headers: tuple[tuple[str, str], ...] = ()
