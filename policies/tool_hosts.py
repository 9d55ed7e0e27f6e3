"""Tool hosts: MCP servers the operator vouches for, judged by the operator's own facts.

What belongs here: `ToolHost` (one host of the config's `tool_hosts:`, with what the operator
declares about it: training, retention, human review, regions, whether it is the operator's own)
and `check_tool_host()`, which judges one such host under one requirement with a one-line reason.
A remote MCP server receives request data directly from the provider, so a request naming one is
judged against the server's facts as well as the channel's (DESIGN.md, Data paths); a host the
config does not list is refused before any judging. Unknown facts fail closed, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.policy import Requirement
from policies.schema import HumanReview, Region, TrainingDefault


@dataclass(frozen=True)
class ToolHost:
    """What the operator declares about one MCP server host (an attestation, shown as such)."""

    host: str
    evidence: str
    training: TrainingDefault = TrainingDefault.UNKNOWN
    retention_days: int | None = None  # None: unknown
    human_review: HumanReview = HumanReview.UNKNOWN
    regions: frozenset[Region] = frozenset()
    operator_owned: bool = False


def check_tool_host(
    host: ToolHost, requirement: Requirement, max_days: int | None = None
) -> tuple[bool, str]:
    """(passed, reason) for one listed MCP host under one requirement."""

    def out(passed: bool, text: str) -> tuple[bool, str]:
        return passed, f"MCP server {host.host}: {text} (attested: {host.evidence})"

    days = host.retention_days
    kept = (
        "retention unknown" if days is None else ("keeps nothing" if days == 0 else f"keeps data {days} days")
    )
    match requirement:
        case Requirement.API_CHANNEL:
            return out(True, "listed in tool_hosts")
        case Requirement.NO_TRAINING:
            passed = host.training in (TrainingDefault.NEVER, TrainingDefault.OPT_IN)
            return out(passed, f"training {host.training.value}")
        case Requirement.ZERO_RETENTION:
            return out(days == 0, kept)
        case Requirement.MAX_RETENTION_DAYS:
            limit = max_days or 0
            return out(days is not None and days <= limit, f"{kept} (limit {limit} days)")
        case Requirement.NO_HUMAN_REVIEW:
            return out(host.human_review is HumanReview.NONE, f"human review {host.human_review.value}")
        case Requirement.EU_RESIDENCY:
            passed = host.regions == frozenset({Region.EU})
            where = ", ".join(sorted(host.regions)) or "unknown"
            return out(passed, f"regions {where}")
        case Requirement.SELF_HOSTED:
            return out(
                host.operator_owned,
                "the operator's own host" if host.operator_owned else "not the operator's",
            )
    return out(False, f"no rule for {requirement.value}; fails closed")
