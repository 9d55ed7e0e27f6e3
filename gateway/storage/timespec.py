"""Points in time as people type them on a command line or in an admin call.

What belongs here: `90d`-style durations (`s`, `m` minutes, `h`, `d`, `w`) and ISO dates, turned
into aware UTC datetimes relative to a given `now` (`--expires 90d`, `--since 30d`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

DURATION: Final = re.compile(r"^\s*(\d{1,7})\s*([smhdw])\s*$")
UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 2w or 30m")
    return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])


def parse_moment(text: str, *, now: datetime, direction: Literal["past", "future"]) -> datetime:
    """`90d` from `now` (into the past or the future), or an ISO date or datetime (UTC if no zone)."""
    if DURATION.match(text):
        span = parse_duration(text)
        return now - span if direction == "past" else now + span
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration like 90d nor an ISO date like 2026-12-31") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
