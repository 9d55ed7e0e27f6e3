"""The audit seam: one metadata-only record per request that reached a decision.

What belongs here: `AuditEvent` (never message content, never keys) and the `AuditSink`
protocol the service writes to without waiting. The database-backed ledger implements the same
protocol; `MemoryAuditSink` serves tests and runs without storage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass
class AuditEvent:
    request_id: str
    time: datetime
    key_name: str
    endpoint: str
    requested_model: str
    policy: tuple[str, ...]
    decision: str
    status: int = 0
    served_model: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    provider: str | None = None
    channel: str | None = None
    badges: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    error_code: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stream: bool = False
    client_cancelled: bool = False
    attempts: int = 0
    simulated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.isoformat()
        data["policy"] = list(self.policy)
        data["badges"] = list(self.badges)
        data["reasons"] = list(self.reasons)
        return data


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Queue one event; never blocks the request and never raises."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> tuple[bool, str]:
        """(ready, one-line state) for /readyz."""


class MemoryAuditSink:
    """Keeps events in memory (tests, and `serve` before a database is configured)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.events: list[AuditEvent] = []
        self._limit = limit

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)
        if len(self.events) > self._limit:
            del self.events[: len(self.events) - self._limit]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def status(self) -> tuple[bool, str]:
        return True, "in memory"
