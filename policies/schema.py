"""Pydantic models of the catalog files (`policies/catalog/<provider>.yaml`).

What belongs here: the shape of a catalog file and the validation rules a single
file can check on its own (every fact that is not `unknown` cites a source that
the file defines). Loading, cross-file checks and evaluation live elsewhere.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Kind(StrEnum):
    CONSUMER = "consumer"
    API = "api"
    SELF_HOSTED = "self_hosted"


class TrainingDefault(StrEnum):
    NEVER = "never"
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    ALWAYS = "always"
    UNKNOWN = "unknown"


class RetentionQualifier(StrEnum):
    NONE = "none"
    EXACTLY = "exactly"
    UP_TO = "up_to"
    UNTIL_DELETED = "until_deleted"
    AS_LONG_AS_NECESSARY = "as_long_as_necessary"
    UNKNOWN = "unknown"


class ZdrAvailability(StrEnum):
    DEFAULT = "default"
    SELF_SERVE = "self_serve"
    APPROVAL_REQUIRED = "approval_required"
    ENTERPRISE_ONLY = "enterprise_only"
    NOT_AVAILABLE = "not_available"
    UNKNOWN = "unknown"


class HumanReview(StrEnum):
    NONE = "none"
    FLAGGED_ONLY = "flagged_only"
    SAMPLED = "sampled"
    YES = "yes"
    UNKNOWN = "unknown"


class Publisher(StrEnum):
    PROVIDER_OFFICIAL = "provider_official"
    PROVIDER_LEGAL = "provider_legal"
    SECONDARY = "secondary"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Region(StrEnum):
    """Where data is processed or stored. `operator` means the operator's own host."""

    EU = "eu"
    US = "us"
    UK = "uk"
    AU = "au"
    IN = "in"
    JP = "jp"
    CA = "ca"
    PRC = "prc"
    GLOBAL = "global"
    OPERATOR = "operator"
    UNKNOWN = "unknown"


class AttestationFact(StrEnum):
    """Facts an operator may declare about their own account (see DESIGN.md, attestation)."""

    TRAINING_OPTED_OUT = "training_opted_out"
    ZERO_DATA_RETENTION = "zero_data_retention"
    PAID_TIER = "paid_tier"
    NO_HUMAN_REVIEW = "no_human_review"
    EU_RESIDENCY = "eu_residency"


SourceIds = Annotated[list[str], Field(default_factory=list)]


class Source(Strict):
    url: HttpUrl
    publisher: Publisher
    title: str | None = None
    date_stated: date | None = None
    retrieved: date
    quote: str | None = None


class Control(Strict):
    type: Literal["setting", "program", "contract", "plan", "request_param", "form"]
    name: str
    scope: str | None = None
    src: SourceIds


class Training(Strict):
    default: TrainingDefault
    controls: list[Control] = Field(default_factory=list)
    incentive: str | None = None
    feedback_always_used: bool | None = None
    notes: str | None = None
    src: SourceIds


class Retention(Strict):
    days: int | None = Field(default=None, ge=0)
    qualifier: RetentionQualifier
    flagged_days: int | None = Field(default=None, ge=0)
    stateful_features_exempt: bool | None = None
    legal_hold: str | None = None
    notes: str | None = None
    src: SourceIds

    @model_validator(mode="after")
    def _days_match_qualifier(self) -> Retention:
        if self.qualifier is RetentionQualifier.NONE and self.days not in (None, 0):
            raise ValueError("retention qualifier 'none' cannot carry a day count")
        if self.qualifier in (RetentionQualifier.EXACTLY, RetentionQualifier.UP_TO) and self.days is None:
            raise ValueError(f"retention qualifier '{self.qualifier}' needs a day count")
        return self


class Zdr(Strict):
    availability: ZdrAvailability
    how: str | None = None
    exclusions: list[str] = Field(default_factory=list)
    src: SourceIds


class HumanReviewFact(Strict):
    value: HumanReview
    notes: str | None = None
    src: SourceIds


class Regions(Strict):
    processing: list[Region]
    storage: list[Region]
    selected_via: (
        Literal["host", "request_param", "project_setting", "deployment_type", "contract", "operator", "none"]
        | None
    ) = None
    notes: str | None = None
    src: SourceIds


class ModelOverride(Strict):
    """Models whose data policy differs from their channel's (matched by glob on the upstream model id)."""

    models: list[str] = Field(min_length=1)
    training: TrainingDefault | None = None
    retention_days: int | None = Field(default=None, ge=0)
    retention_qualifier: RetentionQualifier | None = None
    overrides_zdr: bool = False
    human_review: HumanReview | None = None
    effective: date | None = None
    notes: str
    src: list[str] = Field(min_length=1)


class Conflict(Strict):
    fact: str
    description: str
    resolution: str
    src: list[str] = Field(min_length=1)


class Channel(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    provider: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    kind: Kind
    plans: list[str] = Field(default_factory=list)
    api_hosts: list[str] = Field(default_factory=list)
    requires_attestation: list[AttestationFact] = Field(default_factory=list)
    router: bool = False
    training: Training
    retention: Retention
    zdr: Zdr
    human_review: HumanReviewFact
    regions: Regions
    model_overrides: list[ModelOverride] = Field(default_factory=list)
    main_source: str
    as_of: date
    confidence: Confidence
    conflicts: list[Conflict] = Field(default_factory=list)
    notes: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Channel:
        if not self.id.startswith(self.provider + "."):
            raise ValueError(f"channel id {self.id!r} must start with its provider {self.provider!r}")
        if self.kind is Kind.API and not self.api_hosts:
            raise ValueError(f"API channel {self.id} must list at least one api_host")
        if self.kind is Kind.CONSUMER and self.requires_attestation:
            raise ValueError("consumer channels are never routable; requires_attestation makes no sense")
        for label, fact_is_known, src in self._facts():
            if fact_is_known and not src:
                raise ValueError(f"{self.id}: fact {label} is not unknown, so it must cite a source")
        return self

    def _facts(self) -> list[tuple[str, bool, list[str]]]:
        return [
            ("training", self.training.default is not TrainingDefault.UNKNOWN, self.training.src),
            ("retention", self.retention.qualifier is not RetentionQualifier.UNKNOWN, self.retention.src),
            ("zdr", self.zdr.availability is not ZdrAvailability.UNKNOWN, self.zdr.src),
            ("human_review", self.human_review.value is not HumanReview.UNKNOWN, self.human_review.src),
            (
                "regions",
                any(r is not Region.UNKNOWN for r in [*self.regions.processing, *self.regions.storage]),
                self.regions.src,
            ),
        ]

    def cited_sources(self) -> set[str]:
        cited = {self.main_source}
        cited.update(self.training.src, self.retention.src, self.zdr.src, self.human_review.src)
        cited.update(self.regions.src)
        for control in self.training.controls:
            cited.update(control.src)
        for override in self.model_overrides:
            cited.update(override.src)
        for conflict in self.conflicts:
            cited.update(conflict.src)
        return cited


class ProviderFile(Strict):
    """One catalog file: a provider, the sources its facts cite, and its channels."""

    provider: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    sources: dict[str, Source]
    channels: list[Channel] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ProviderFile:
        for channel in self.channels:
            if channel.provider != self.provider:
                raise ValueError(f"{channel.id}: provider must be {self.provider!r}")
            missing = channel.cited_sources() - set(self.sources)
            if missing:
                raise ValueError(f"{channel.id}: cites undefined sources {sorted(missing)}")
        return self
