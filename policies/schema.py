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
    TRAINING_OPTED_IN = "training_opted_in"
    ZERO_DATA_RETENTION = "zero_data_retention"
    PAID_TIER = "paid_tier"
    NO_HUMAN_REVIEW = "no_human_review"
    EU_RESIDENCY = "eu_residency"
    OPERATOR_HOST = "operator_host"


class FactName(StrEnum):
    """The judged facts of a channel: each has its own sources, date, confidence and conflicts."""

    TRAINING = "training"
    RETENTION = "retention"
    ZDR = "zdr"
    HUMAN_REVIEW = "human_review"
    REGIONS = "regions"


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
    confidence: Confidence | None = None  # None: derived from the sources and conflicts
    src: SourceIds


class Retention(Strict):
    days: int | None = Field(default=None, ge=0)
    qualifier: RetentionQualifier
    flagged_days: int | None = Field(default=None, ge=0)
    stateful_features_exempt: bool | None = None
    legal_hold: str | None = None
    notes: str | None = None
    confidence: Confidence | None = None  # None: derived from the sources and conflicts
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
    confidence: Confidence | None = None  # None: derived from the sources and conflicts
    src: SourceIds


class HumanReviewFact(Strict):
    value: HumanReview
    notes: str | None = None
    confidence: Confidence | None = None  # None: derived from the sources and conflicts
    src: SourceIds


class Regions(Strict):
    processing: list[Region]
    storage: list[Region]
    selected_via: (
        Literal["host", "request_param", "project_setting", "deployment_type", "contract", "operator", "none"]
        | None
    ) = None
    notes: str | None = None
    confidence: Confidence | None = None  # None: derived from the sources and conflicts
    src: SourceIds


class ModelOverride(Strict):
    """Models whose data policy differs from their channel's (matched by glob on the upstream model id).

    `routes_onward`: the channel hands these model ids on to someone else (Ollama `-cloud` models
    behind a local server, Fireworks routers), so training, retention, review and regions are
    unknown unless attested. `shares_with`: the channel shares these models' data with a named
    third party (Bedrock's `provider_data_share` mode); their regions are unknown, and no
    attestation about the channel's own account changes the overridden facts.
    """

    models: list[str] = Field(min_length=1)
    training: TrainingDefault | None = None
    retention_days: int | None = Field(default=None, ge=0)
    retention_qualifier: RetentionQualifier | None = None
    overrides_zdr: bool = False
    human_review: HumanReview | None = None
    routes_onward: bool = False
    shares_with: str | None = None
    effective: date | None = None
    notes: str
    src: list[str] = Field(min_length=1)


_READING_VALUES: dict[FactName, frozenset[str]] = {
    FactName.TRAINING: frozenset(TrainingDefault),
    FactName.ZDR: frozenset(ZdrAvailability),
    FactName.HUMAN_REVIEW: frozenset(HumanReview),
    FactName.REGIONS: frozenset(Region),
}


def parse_retention_reading(text: str) -> tuple[RetentionQualifier, int | None]:
    """One reading of a retention conflict: `up_to 30`, `exactly 0`, `none`, `until_deleted`, `unknown`."""
    qualifier, _, days = text.strip().partition(" ")
    value = RetentionQualifier(qualifier)
    if days:
        return value, int(days)
    if value in (RetentionQualifier.EXACTLY, RetentionQualifier.UP_TO):
        raise ValueError(f"retention reading {text!r} needs a day count")
    return value, None


class Conflict(Strict):
    """Sources that disagree about one fact.

    `readings` lists what the sources say; the engine judges the least private of them and of the
    recorded value (DESIGN.md: where sources conflict, the less private reading).
    """

    fact: FactName
    description: str
    resolution: str
    readings: list[str] = Field(default_factory=list)
    src: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _readings(self) -> Conflict:
        for reading in self.readings:
            if self.fact is FactName.RETENTION:
                try:
                    parse_retention_reading(reading)
                except ValueError as exc:
                    raise ValueError(f"conflict on retention: bad reading {reading!r}") from exc
            elif reading not in _READING_VALUES[self.fact]:
                raise ValueError(f"conflict on {self.fact}: {reading!r} is not a {self.fact} value")
        return self


class FeatureId(StrEnum):
    """Request features that move data (DESIGN.md, Data paths). The ids are binding."""

    STORED_RESPONSE = "stored_response"
    EXTENDED_CACHE = "extended_cache"
    SERVER_WEB_SEARCH = "server_web_search"
    SERVER_CODE_EXECUTION = "server_code_execution"
    REMOTE_MCP = "remote_mcp"


class FeatureFacts(Strict):
    """What happens to data when a request uses one feature on one channel.

    `retention_*`: how long the provider keeps what the feature stores, beyond the channel's own
    retention (`unknown` fails closed). `zdr_eligible`: whether an approved zero-data-retention
    agreement covers the feature (null: not known, so it does not). `third_party`: the feature
    sends data to someone other than the provider (a search engine, an MCP server the client
    names); null: not known, which counts as yes.
    """

    offered: bool
    retention_days: int | None = Field(default=None, ge=0)
    retention_qualifier: RetentionQualifier = RetentionQualifier.UNKNOWN
    zdr_eligible: bool | None = None
    third_party: bool | None = None
    notes: str | None = None
    confidence: Confidence | None = None
    src: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _days_match_qualifier(self) -> FeatureFacts:
        q = self.retention_qualifier
        if q is RetentionQualifier.NONE and self.retention_days not in (None, 0):
            raise ValueError("feature retention 'none' cannot carry a day count")
        if q in (RetentionQualifier.EXACTLY, RetentionQualifier.UP_TO) and self.retention_days is None:
            raise ValueError(f"feature retention '{q}' needs a day count")
        return self


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
    features: dict[FeatureId, FeatureFacts] = Field(default_factory=dict)
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
        for feature in self.features.values():
            cited.update(feature.src)
        return cited

    def fact_src(self, name: FactName) -> list[str]:
        return self._fact_models()[name].src

    def fact_confidence(self, name: FactName) -> Confidence | None:
        return self._fact_models()[name].confidence

    def _fact_models(self) -> dict[FactName, Training | Retention | Zdr | HumanReviewFact | Regions]:
        return {
            FactName.TRAINING: self.training,
            FactName.RETENTION: self.retention,
            FactName.ZDR: self.zdr,
            FactName.HUMAN_REVIEW: self.human_review,
            FactName.REGIONS: self.regions,
        }


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
