"""Helpers shared by the policy tests: the fixed evaluation date and a one-line effective_facts()."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from policies.catalog import Catalog
from policies.facts import Attestation, EffectiveFacts, effective_facts

# The catalog's facts were gathered on this day; every entry carries it as its as_of date.
TODAY = date(2026, 11, 29)

# A model id that matches no model override of any channel.
PLAIN_MODEL = "example-model"


def facts_for(
    catalog: Catalog,
    channel_id: str,
    *,
    model: str = PLAIN_MODEL,
    today: date = TODAY,
    host: str | None = None,
    attestations: Iterable[Attestation] = (),
) -> EffectiveFacts:
    channel = catalog.channels[channel_id]
    return effective_facts(
        channel,
        model=model,
        sources=catalog.sources_of(channel_id),
        today=today,
        host=host,
        attestations=attestations,
    )
