"""Issue 12 (catalog v2): the four holes fail closed; facts are judged per fact, on the day of the
request; conflicts are judged by their less private reading; request features are facts too.

Every date is pinned: TODAY is the catalog's as_of (2026-11-29).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from policies.badges import Level, derive_badges, derive_feature_badges
from policies.catalog import Catalog
from policies.engine import Decision, evaluate
from policies.facts import Attestation, effective_facts
from policies.policy import BUILTIN_POLICIES, PolicyName, Requirement, resolve
from policies.schema import (
    AttestationFact,
    Confidence,
    Conflict,
    FactName,
    FeatureId,
    Region,
    RetentionQualifier,
    TrainingDefault,
)
from tests.policies.support import TODAY, facts_for

ZERO = PolicyName.ZERO_RETENTION
NO_TRAINING = PolicyName.NO_TRAINING_ONLY


def decide(catalog: Catalog, channel_id: str, policy: str, **kwargs: object) -> Decision:
    features = kwargs.pop("features", ())
    facts = facts_for(catalog, channel_id, **kwargs)  # type: ignore[arg-type]
    return evaluate(resolve([policy], BUILTIN_POLICIES), facts, features=features)  # type: ignore[arg-type]


# --- hole 1: any host was "self-hosted" --------------------------------------------------------


def test_a_public_providers_host_is_never_self_hosted(catalog: Catalog) -> None:
    public = catalog.public_hosts()
    # ... and not even when the operator attests it as its own.
    facts = facts_for(catalog, "self_hosted.openai_compatible", host="api.deepseek.com")
    assert not facts.host_ok  # not the operator's by its spelling ...
    facts = effective_facts(
        catalog.channels["self_hosted.openai_compatible"],
        model="deepseek-chat",
        sources=catalog.sources_of("self_hosted.openai_compatible"),
        today=TODAY,
        host="api.deepseek.com",
        public_hosts=public,
        attestations=[
            Attestation("self_hosted", AttestationFact.OPERATOR_HOST, "claimed", hosts=("api.deepseek.com",))
        ],
    )
    decision = evaluate(resolve([ZERO], BUILTIN_POLICIES), facts)
    assert not decision.allowed
    (failure,) = [c for c in decision.failures if c.requirement is Requirement.API_CHANNEL]
    assert "official host of deepseek.api, a public provider: never self-hosted" in failure.reason


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1", True), ("10.0.0.5", True), ("gpu.internal", True), ("llm.example.com", False)],
)
def test_self_hosted_host_in_the_engine(catalog: Catalog, host: str, allowed: bool) -> None:
    decision = decide(catalog, "self_hosted.vllm", ZERO, host=host)
    assert decision.allowed is allowed, decision.reasons()


def test_an_operator_host_attestation_admits_its_host(catalog: Catalog) -> None:
    att = Attestation("self_hosted", AttestationFact.OPERATOR_HOST, "our DC", hosts=("llm.example.com",))
    assert decide(catalog, "self_hosted.vllm", ZERO, host="llm.example.com", attestations=[att]).allowed


# --- hole 2: Ollama -cloud models behind a local server ----------------------------------------


@pytest.mark.parametrize("model", ["ollama/gpt-oss:120b-cloud", "gemma4:cloud", "qwen3-coder:480b-cloud"])
@pytest.mark.parametrize("channel_id", ["self_hosted.ollama", "self_hosted.openai_compatible"])
def test_cloud_models_through_a_local_ollama_are_not_self_hosted(
    catalog: Catalog, channel_id: str, model: str
) -> None:
    for policy in (NO_TRAINING, ZERO, PolicyName.NO_HUMAN_REVIEW, PolicyName.SELF_HOSTED_ONLY):
        decision = decide(catalog, channel_id, policy, model=model, host="127.0.0.1")
        assert not decision.allowed, (policy, decision.reasons())
    facts = facts_for(catalog, channel_id, model=model, host="127.0.0.1")
    assert facts.training.value is TrainingDefault.UNKNOWN
    assert facts.regions.value.processing == {Region.UNKNOWN}
    # The same server with a local model stays self-hosted.
    assert decide(catalog, channel_id, ZERO, model="ollama/llama3.1:8b", host="127.0.0.1").allowed


def test_a_cloud_model_through_a_local_server_is_not_badged_self_hosted(catalog: Catalog) -> None:
    cloud = [
        b.id for b in derive_badges(facts_for(catalog, "self_hosted.ollama", model="gpt-oss:120b-cloud"))
    ]
    assert cloud == ["routed-onward", "training-unknown", "retention-unknown"]
    local = [b.id for b in derive_badges(facts_for(catalog, "self_hosted.ollama", model="llama3.1:8b"))]
    assert local == ["self-hosted", "no-training"]
    router = [
        b.id for b in derive_badges(facts_for(catalog, "fireworks.api", model="accounts/fireworks/routers/x"))
    ]
    assert router == ["api-channel", "training-unknown", "retention-unknown", "routed-onward"]


def test_a_cloud_model_can_be_attested_but_stays_off_host(catalog: Catalog) -> None:
    att = Attestation(
        "self_hosted", AttestationFact.TRAINING_OPTED_OUT, "Ollama cloud terms reviewed", models=("*-cloud",)
    )
    model = "gpt-oss:120b-cloud"
    assert decide(catalog, "self_hosted.ollama", NO_TRAINING, model=model, attestations=[att]).allowed
    assert not decide(catalog, "self_hosted.ollama", PolicyName.SELF_HOSTED_ONLY, model=model).allowed


# --- hole 3: Fireworks routers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["accounts/fireworks/routers/kimi-k2p5-turbo", "fireworks_ai/firerouter/opus"]
)
def test_fireworks_routers_take_unknown_facts(catalog: Catalog, model: str) -> None:
    decision = decide(catalog, "fireworks.api", ZERO, model=model)
    assert not decision.allowed
    assert any("handed on to an upstream" in r for r in decision.reasons())
    assert decide(catalog, "fireworks.api", ZERO, model="accounts/fireworks/models/gpt-oss-120b").allowed


# --- hole 4: Bedrock provider_data_share ---------------------------------------------------------


def test_bedrock_models_that_require_provider_data_share(catalog: Catalog) -> None:
    model = "bedrock/anthropic.claude-fable-5-v1:0"
    facts = facts_for(catalog, "aws.bedrock", model=model)
    (override,) = facts.overrides
    assert override.shares_with == "anthropic"
    assert facts.regions.value.processing == {Region.UNKNOWN}
    eu = Attestation("aws", AttestationFact.EU_RESIDENCY, "eu-north-1 only")
    zdr = Attestation("aws", AttestationFact.ZERO_DATA_RETENTION, "data_retention_mode none")
    assert not decide(catalog, "aws.bedrock", PolicyName.EU_RESIDENCY, model=model, attestations=[eu]).allowed
    assert not decide(catalog, "aws.bedrock", ZERO, model=model, attestations=[zdr]).allowed
    # Other models: the account's attestations hold.
    other = "bedrock/anthropic.claude-opus-4-8"
    assert decide(catalog, "aws.bedrock", PolicyName.EU_RESIDENCY, model=other, attestations=[eu]).allowed
    assert decide(catalog, "aws.bedrock", ZERO, model=other, attestations=[zdr]).allowed


# --- judging facts: per fact, from the source's date, on the day of the request -----------------

GEMINI_TERMS = date(2025, 5, 20)


def test_staleness_counts_from_the_sources_own_date(catalog: Catalog) -> None:
    facts = facts_for(catalog, "google.gemini_api_free")
    assert facts.training.dated == GEMINI_TERMS
    assert facts.training.stale(GEMINI_TERMS + timedelta(days=181))
    assert not facts.training.stale(GEMINI_TERMS + timedelta(days=180))
    assert FactName.TRAINING in facts.stale_facts  # on 2026-11-29 already
    openai = facts_for(catalog, "openai.api")
    assert openai.retention.dated == TODAY  # an undated source counts from the entry's as_of
    assert not openai.stale


def test_the_same_facts_judged_on_two_days(catalog: Catalog) -> None:
    """Built once (as the gateway does at start-up), judged per request day."""
    channel = catalog.channels["fireworks.api"]
    shaky = channel.model_copy(
        update={"conflicts": [Conflict(fact=FactName.RETENTION, description="d", resolution="r", src=["F1"])]}
    )
    built = effective_facts(shaky, model="m", sources=catalog.sources_of("fireworks.api"), today=TODAY)
    policy = resolve([ZERO], BUILTIN_POLICIES)
    assert evaluate(policy, built).allowed
    assert evaluate(policy, built, today=date(2027, 5, 28)).allowed
    assert not evaluate(policy, built, today=date(2027, 5, 29)).allowed  # 181 days after 2026-11-29
    assert "stale" in [b.id for b in derive_badges(built, date(2027, 5, 29))]


# Truth table pinned to 2027-05-29, the day every fact of 2026-11-29 is stale: only low-confidence
# facts fail closed (issue 12: in v1 every low-confidence entry failed, whatever the fact).
# fmt: off
PINNED = date(2027, 5, 29)
STALE_TABLE: dict[str, tuple[bool, bool]] = {
    #                                no-training  zero-retention
    "openai.api":                    (True,  False),
    "anthropic.api":                 (True,  False),
    "xai.api":                       (True,  False),   # entry low (ZDR conflict); training high
    "together.api":                  (True,  False),   # entry low (retention conflict); training high
    "microsoft.azure_openai":        (True,  False),   # entry low (retention conflict); training high
    "aws.bedrock":                   (True,  False),
    "fireworks.api":                 (True,  True),
    "perplexity.api":                (True,  True),
    "mistral.api_free":              (False, False),   # training conflict: low, stale -> unknown
    "deepseek.api":                  (False, False),
    "self_hosted.vllm":              (True,  True),    # the operator's facts never go stale
}
# fmt: on


@pytest.mark.parametrize(("channel_id", "expected"), STALE_TABLE.items())
def test_truth_table_on_a_pinned_day(catalog: Catalog, channel_id: str, expected: tuple[bool, bool]) -> None:
    got = tuple(decide(catalog, channel_id, p, today=PINNED).allowed for p in (NO_TRAINING, ZERO))
    assert got == expected


def test_self_hosted_facts_never_go_stale(catalog: Catalog) -> None:
    facts = facts_for(catalog, "self_hosted.vllm", today=TODAY + timedelta(days=3650))
    assert not facts.stale
    assert "stale" not in [b.id for b in derive_badges(facts)]


def test_confidence_per_fact_follows_its_sources(catalog: Catalog) -> None:
    gemini_paid = facts_for(catalog, "google.gemini_api_paid")
    assert gemini_paid.training.confidence is Confidence.MEDIUM  # provider pages + one forum quote
    assert facts_for(catalog, "openai.api").training.confidence is Confidence.HIGH
    assert facts_for(catalog, "mistral.api_free").training.confidence is Confidence.LOW  # conflict


def test_a_conflict_is_judged_by_its_less_private_reading(catalog: Catalog) -> None:
    channel = catalog.channels["openai.api"]
    disputed = channel.model_copy(
        update={
            "conflicts": [
                Conflict(
                    fact=FactName.TRAINING,
                    description="a second page says the API trains unless opted out",
                    resolution="less private reading",
                    readings=["opt_out"],
                    src=["O5", "O6"],
                )
            ]
        }
    )
    facts = effective_facts(disputed, model="gpt-4o", sources=catalog.sources_of("openai.api"), today=TODAY)
    assert facts.training.value is TrainingDefault.OPT_OUT
    assert facts.training.conflicted
    assert not evaluate(resolve([NO_TRAINING], BUILTIN_POLICIES), facts).allowed
    assert "conflicting-sources" in [b.id for b in derive_badges(facts)]
    together = facts_for(catalog, "together.api")
    assert together.retention.value.qualifier is RetentionQualifier.UNTIL_DELETED
    assert together.conflicted_facts == (FactName.RETENTION,)


# --- vocabulary: one word for opt-in data-sharing programmes -------------------------------------


@pytest.mark.parametrize("channel_id", ["openai.api", "anthropic.api", "xai.api", "together.api"])
def test_opt_in_programmes_share_one_vocabulary(catalog: Catalog, channel_id: str) -> None:
    assert catalog.channels[channel_id].training.default is TrainingDefault.OPT_IN
    assert decide(catalog, channel_id, NO_TRAINING).allowed
    provider = catalog.channels[channel_id].provider
    opted_in = Attestation(provider, AttestationFact.TRAINING_OPTED_IN, "joined the programme")
    refused = decide(catalog, channel_id, NO_TRAINING, attestations=[opted_in])
    assert not refused.allowed
    assert "the account opted in to training" in refused.reasons()[0]


def test_gemini_app_retention_is_the_36_month_worst_case(catalog: Catalog) -> None:
    retention = catalog.channels["google.gemini_app"].retention
    assert (retention.days, retention.qualifier) == (1095, RetentionQualifier.UP_TO)


# --- request features -----------------------------------------------------------------------------


def test_a_feature_the_catalog_has_no_facts_for_fails_closed(catalog: Catalog) -> None:
    assert decide(catalog, "openai.api", NO_TRAINING).allowed
    decision = decide(catalog, "openai.api", NO_TRAINING, features=[FeatureId.SERVER_WEB_SEARCH])
    assert not decision.allowed
    (failure,) = decision.failures
    assert failure.feature is FeatureId.SERVER_WEB_SEARCH
    assert "no facts for this feature" in failure.reason


def test_grounding_keeps_30_days_even_under_zdr(catalog: Catalog) -> None:
    paid = Attestation("google", AttestationFact.PAID_TIER, "billing on")
    zdr = Attestation("google", AttestationFact.ZERO_DATA_RETENTION, "approved project")
    atts = [paid, zdr]
    assert decide(catalog, "google.gemini_api_paid", ZERO, attestations=atts).allowed
    decision = decide(
        catalog, "google.gemini_api_paid", ZERO, attestations=atts, features=[FeatureId.SERVER_WEB_SEARCH]
    )
    assert not decision.allowed
    (failure,) = decision.failures
    assert (
        "keeps data exactly 30 days (not covered by a zero-data-retention agreement) [source G6]"
        in failure.reason
    )
    # No third party: no-training-only still holds with grounding.
    assert decide(
        catalog,
        "google.gemini_api_paid",
        NO_TRAINING,
        attestations=atts,
        features=[FeatureId.SERVER_WEB_SEARCH],
    ).allowed


# fmt: off
FEATURE_TABLE = [
    # channel, feature, policy, allowed
    ("fireworks.api", FeatureId.STORED_RESPONSE, ZERO, False),        # 30 days
    ("fireworks.api", FeatureId.STORED_RESPONSE, NO_TRAINING, True),
    ("fireworks.api", FeatureId.SERVER_WEB_SEARCH, NO_TRAINING, False),  # no facts
    ("aws.bedrock", FeatureId.STORED_RESPONSE, NO_TRAINING, True),
    ("aws.bedrock", FeatureId.STORED_RESPONSE, ZERO, False),          # retention unknown
    ("fireworks.api", FeatureId.STORED_RESPONSE, PolicyName.API_CHANNEL_ONLY, True),
    ("self_hosted.vllm", FeatureId.SERVER_WEB_SEARCH, PolicyName.SELF_HOSTED_ONLY, False),
    ("openai.api", FeatureId.STORED_RESPONSE, NO_TRAINING, True),
    ("openai.api", FeatureId.STORED_RESPONSE, ZERO, False),
    ("openai.api", FeatureId.REMOTE_MCP, NO_TRAINING, False),         # a third party's policy
    ("openai.api", FeatureId.REMOTE_MCP, PolicyName.API_CHANNEL_ONLY, True),
    # secondary sources dated 2026-04-07/09: low confidence and stale on 2026-11-29, so unknown
    ("openai.api", FeatureId.SERVER_CODE_EXECUTION, NO_TRAINING, False),
    ("openai.api", FeatureId.EXTENDED_CACHE, NO_TRAINING, False),
    ("anthropic.api", FeatureId.SERVER_WEB_SEARCH, NO_TRAINING, False),  # fetch: publishers keep URLs
    ("anthropic.api", FeatureId.REMOTE_MCP, NO_TRAINING, False),
    ("anthropic.api", FeatureId.SERVER_CODE_EXECUTION, PolicyName.NO_HUMAN_REVIEW, False),
]
# fmt: on


@pytest.mark.parametrize(("channel_id", "feature", "policy", "allowed"), FEATURE_TABLE)
def test_feature_truth_table(
    catalog: Catalog, channel_id: str, feature: FeatureId, policy: str, allowed: bool
) -> None:
    assert decide(catalog, channel_id, policy, features=[feature]).allowed is allowed


def test_a_zdr_attestation_covers_only_zdr_eligible_features(catalog: Catalog) -> None:
    zdr = Attestation("openai", AttestationFact.ZERO_DATA_RETENTION, "ZDR agreement")
    assert decide(catalog, "openai.api", ZERO, attestations=[zdr]).allowed
    for feature in (FeatureId.STORED_RESPONSE, FeatureId.SERVER_CODE_EXECUTION):
        assert not decide(catalog, "openai.api", ZERO, attestations=[zdr], features=[feature]).allowed


def test_features_of_a_routed_model_are_unknown(catalog: Catalog) -> None:
    model = "accounts/fireworks/routers/x"
    decision = decide(
        catalog, "fireworks.api", NO_TRAINING, model=model, features=[FeatureId.STORED_RESPONSE]
    )
    assert any(c.feature is FeatureId.STORED_RESPONSE and not c.passed for c in decision.checks)


def test_feature_badges_cite_their_facts(catalog: Catalog) -> None:
    fireworks = facts_for(catalog, "fireworks.api")
    (stored,) = derive_feature_badges(fireworks, [FeatureId.STORED_RESPONSE])
    assert (stored.id, stored.level) == ("stored-30d", Level.CAUTION)
    assert stored.source == str(catalog.sources_of("fireworks.api")["F1"].url)
    openai = facts_for(catalog, "openai.api")
    ids = [b.id for b in derive_feature_badges(openai, list(FeatureId))]
    assert ids == ["stored", "extended-cache", "web-search", "code-execution", "remote-mcp"]
    mcp = derive_feature_badges(openai, [FeatureId.REMOTE_MCP])[0]
    assert mcp.level is Level.BAD
    assert derive_feature_badges(openai, []) == ()
