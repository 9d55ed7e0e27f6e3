"""Policies: named sets of requirements over a channel's effective facts.

What belongs here: the requirement vocabulary, the builtin policies of DESIGN.md, the model
operators use to define their own, and resolving a list of names into policies. Evaluation
lives in `policies.engine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Requirement(StrEnum):
    API_CHANNEL = "api_channel"
    NO_TRAINING = "no_training"
    ZERO_RETENTION = "zero_retention"
    NO_HUMAN_REVIEW = "no_human_review"
    SELF_HOSTED = "self_hosted"
    EU_RESIDENCY = "eu_residency"
    MAX_RETENTION_DAYS = "max_retention_days"


class PolicyName(StrEnum):
    API_CHANNEL_ONLY = "api-channel-only"
    NO_TRAINING_ONLY = "no-training-only"
    ZERO_RETENTION = "zero-retention"
    NO_HUMAN_REVIEW = "no-human-review"
    SELF_HOSTED_ONLY = "self-hosted-only"
    EU_RESIDENCY = "eu-residency"


class Policy(BaseModel):
    """A named set of requirements. Operators write these in config in the same vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str
    requires: tuple[Requirement, ...] = Field(min_length=1)
    max_retention_days: int | None = Field(default=None, ge=0)
    builtin: bool = False

    @model_validator(mode="after")
    def _parameters(self) -> Policy:
        needs_days = Requirement.MAX_RETENTION_DAYS in self.requires
        if needs_days != (self.max_retention_days is not None):
            raise ValueError(
                "max_retention_days must be set exactly when the policy requires max_retention_days"
            )
        return self


BASELINE = PolicyName.API_CHANNEL_ONLY

BUILTIN_POLICIES: Mapping[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            name=PolicyName.API_CHANNEL_ONLY,
            description="Only providers' API channels or self-hosted models, on their official hosts; "
            "never a consumer product. Always on.",
            requires=(Requirement.API_CHANNEL,),
            builtin=True,
        ),
        Policy(
            name=PolicyName.NO_TRAINING_ONLY,
            description="The channel does not train on the data: never by default, off unless the account "
            "opts in, or opted out by an operator attestation.",
            requires=(Requirement.NO_TRAINING,),
            builtin=True,
        ),
        Policy(
            name=PolicyName.ZERO_RETENTION,
            description="No training, and nothing retained: zero retention by the catalog or by an attested "
            "zero-data-retention agreement.",
            requires=(Requirement.NO_TRAINING, Requirement.ZERO_RETENTION),
            builtin=True,
        ),
        Policy(
            name=PolicyName.NO_HUMAN_REVIEW,
            description="No human at the provider reads the data, not even flagged content.",
            requires=(Requirement.NO_HUMAN_REVIEW,),
            builtin=True,
        ),
        Policy(
            name=PolicyName.SELF_HOSTED_ONLY,
            description="Only models the operator runs on their own hosts.",
            requires=(Requirement.SELF_HOSTED,),
            builtin=True,
        ),
        Policy(
            name=PolicyName.EU_RESIDENCY,
            description="Processing and storage in the EU, by the catalog or by attestation.",
            requires=(Requirement.EU_RESIDENCY,),
            builtin=True,
        ),
    )
}


class UnknownPolicyError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown policy {name!r}")
        self.name = name


def policy_table(custom: Iterable[Policy] = ()) -> dict[str, Policy]:
    """Builtin policies plus the operator's; an operator policy cannot shadow a builtin one."""
    table = dict(BUILTIN_POLICIES)
    for policy in custom:
        if policy.name in table:
            raise ValueError(f"policy {policy.name!r} is already defined")
        table[policy.name] = policy
    return table


def resolve(names: Iterable[str], table: Mapping[str, Policy]) -> tuple[Policy, ...]:
    """The baseline plus the named policies, deduplicated: baseline first, then by name."""
    chosen: dict[str, Policy] = {BASELINE: table[BASELINE]}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in table:
            raise UnknownPolicyError(name)
        chosen[name] = table[name]
    baseline = chosen.pop(BASELINE)
    return (baseline, *(chosen[name] for name in sorted(chosen)))
