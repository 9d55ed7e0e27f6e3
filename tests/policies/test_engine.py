"""The evaluation engine: attestations, model overrides, staleness, routers, hosts, reasons, resolve.

DESIGN.md: effective facts = catalog entry, then model overrides, then the operator's attestations;
unknown (missing, or low-confidence-and-stale) fails closed; the baseline is always on.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from policies.badges import BadgeId, derive_badges
from policies.catalog import Catalog
from policies.engine import Check, Decision, evaluate
from policies.facts import (
    STALE_AFTER,
    Attestation,
    Origin,
    RetentionValue,
    attestation_problem,
    effective_facts,
)
from policies.policy import (
    BUILTIN_POLICIES,
    Policy,
    PolicyName,
    Requirement,
    UnknownPolicyError,
    policy_table,
    resolve,
)
from policies.schema import (
    AttestationFact,
    Confidence,
    Conflict,
    FactName,
    ModelOverride,
    Region,
    Retention,
    RetentionQualifier,
    TrainingDefault,
)
from tests.policies.support import TODAY, facts_for

OPTED_OUT = AttestationFact.TRAINING_OPTED_OUT
ZDR = AttestationFact.ZERO_DATA_RETENTION
PAID = AttestationFact.PAID_TIER
EU = AttestationFact.EU_RESIDENCY
# cohere.api shares its host with trial keys (cohere.trial): without this it fails every fact-based check.
COHERE_PAID = Attestation(provider="cohere", fact=PAID, evidence="production key")


def policies(*names: str) -> tuple[Policy, ...]:
    return resolve(names, BUILTIN_POLICIES)


def check_for(decision: Decision, requirement: Requirement) -> Check:
    (found,) = [c for c in decision.checks if c.requirement is requirement]
    return found


def badge_ids(catalog: Catalog, channel_id: str, **kwargs: object) -> list[str]:
    return [b.id for b in derive_badges(facts_for(catalog, channel_id, **kwargs))]  # type: ignore[arg-type]


# --- attestations -------------------------------------------------------------------------------


def test_training_opt_out_attestation_turns_cohere_into_a_pass(catalog: Catalog) -> None:
    evidence = "Cohere dashboard: Data Controls, training off since 2026-10-01"
    att = Attestation(provider="cohere", fact=OPTED_OUT, evidence=evidence)
    before = evaluate(
        policies(PolicyName.NO_TRAINING_ONLY), facts_for(catalog, "cohere.api", attestations=[COHERE_PAID])
    )
    assert not before.allowed
    assert "no opt-out is attested" in check_for(before, Requirement.NO_TRAINING).reason
    assert not check_for(before, Requirement.NO_TRAINING).attested

    facts = facts_for(catalog, "cohere.api", attestations=[att, COHERE_PAID])
    assert facts.training.value is TrainingDefault.NEVER
    assert facts.training.origin is Origin.ATTESTATION
    assert facts.attestations == (att, COHERE_PAID)
    after = evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts)
    assert after.allowed
    check = check_for(after, Requirement.NO_TRAINING)
    assert check.attested
    assert evidence in check.reason
    assert check.reason == f"Cohere API: the account opted out of training (attested: {evidence})"
    # The baseline check is not attested: only the fact that rests on the attestation is.
    assert not check_for(after, Requirement.API_CHANNEL).attested

    ids = [b.id for b in derive_badges(facts)]
    assert BadgeId.ATTESTED in ids
    assert BadgeId.NO_TRAINING in ids
    assert BadgeId.TRAINING_OPT_OUT not in ids


def test_zero_data_retention_attestation(catalog: Catalog) -> None:
    att = Attestation(provider="openai", fact=ZDR, evidence="ZDR agreement 2026-05, org org-123")
    facts = facts_for(catalog, "openai.api", attestations=[att])
    assert facts.retention.value.is_zero
    assert facts.retention.attested
    decision = evaluate(policies(PolicyName.ZERO_RETENTION), facts)
    assert decision.allowed
    check = check_for(decision, Requirement.ZERO_RETENTION)
    assert check.attested
    assert "zero data retention (attested: ZDR agreement 2026-05, org org-123)" in check.reason
    # Training still rests on the catalog, not on the attestation.
    assert not check_for(decision, Requirement.NO_TRAINING).attested
    ids = [b.id for b in derive_badges(facts)]
    assert ids == ["api-channel", "training-opt-in", "zdr", "human-review-flagged", "attested"]

    refused = evaluate(policies(PolicyName.ZERO_RETENTION), facts_for(catalog, "openai.api"))
    reason = check_for(refused, Requirement.ZERO_RETENTION).reason
    assert "keeps data up to 30 days" in reason
    assert "zero-data-retention: approval required" in reason
    assert "[source O5]" in reason


def test_zdr_attestation_does_not_clear_training(catalog: Catalog) -> None:
    """zero-retention is no-training-only AND zero retention: a ZDR on Cohere (opt_out) is not enough."""
    # Cohere has no known ZDR offering, so the attestation is refused outright.
    att = Attestation(provider="cohere", fact=ZDR, evidence="claimed ZDR")
    assert attestation_problem(catalog.channels["cohere.api"], att) is not None
    # OpenRouter accepts one (self-serve ZDR), but training stays unknown there.
    att = Attestation(provider="openrouter", fact=ZDR, evidence="account-wide zdr")
    decision = evaluate(
        policies(PolicyName.ZERO_RETENTION), facts_for(catalog, "openrouter.api", attestations=[att])
    )
    assert check_for(decision, Requirement.ZERO_RETENTION).passed
    assert not check_for(decision, Requirement.NO_TRAINING).passed
    assert not decision.allowed


@pytest.mark.parametrize(
    ("channel_id", "provider"), [("google.gemini_api_paid", "google"), ("mistral.api_paid", "mistral")]
)
def test_paid_tier_attestation(catalog: Catalog, channel_id: str, provider: str) -> None:
    without = facts_for(catalog, channel_id)
    assert without.missing_attestations == (PAID,)
    refused = evaluate(policies(PolicyName.NO_TRAINING_ONLY), without)
    assert "needs an operator attestation (paid_tier)" in check_for(refused, Requirement.NO_TRAINING).reason

    att = Attestation(provider=provider, fact=PAID, evidence="billing-enabled project")
    facts = facts_for(catalog, channel_id, attestations=[att])
    assert facts.missing_attestations == ()
    assert facts.attestations == (att,)
    decision = evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts)
    assert decision.allowed
    # The training fact itself comes from the catalog: the attestation only says which plan it is.
    assert not check_for(decision, Requirement.NO_TRAINING).attested
    assert "[source" in check_for(decision, Requirement.NO_TRAINING).reason


def test_eu_residency_attestation_on_self_hosted(catalog: Catalog) -> None:
    refused = evaluate(policies(PolicyName.EU_RESIDENCY), facts_for(catalog, "self_hosted.vllm"))
    assert not refused.allowed
    assert "EU residency not attested" in check_for(refused, Requirement.EU_RESIDENCY).reason

    att = Attestation(provider="self_hosted", fact=EU, evidence="GPU hosts in Frankfurt (eu-central)")
    facts = facts_for(catalog, "self_hosted.vllm", attestations=[att])
    assert facts.regions.value.processing == frozenset({Region.EU})
    assert facts.regions.value.storage == frozenset({Region.EU})
    decision = evaluate(policies(PolicyName.EU_RESIDENCY, PolicyName.SELF_HOSTED_ONLY), facts)
    assert decision.allowed
    check = check_for(decision, Requirement.EU_RESIDENCY)
    assert check.attested
    assert "processed and stored in the EU (attested: GPU hosts in Frankfurt (eu-central))" in check.reason


def test_no_human_review_attestation(catalog: Catalog) -> None:
    att = Attestation(provider="openai", fact=AttestationFact.NO_HUMAN_REVIEW, evidence="MAM approved")
    assert not evaluate(policies(PolicyName.NO_HUMAN_REVIEW), facts_for(catalog, "openai.api")).allowed
    decision = evaluate(
        policies(PolicyName.NO_HUMAN_REVIEW), facts_for(catalog, "openai.api", attestations=[att])
    )
    assert decision.allowed
    assert check_for(decision, Requirement.NO_HUMAN_REVIEW).attested


def test_attestation_scoped_to_another_channel_does_not_apply(catalog: Catalog) -> None:
    elsewhere = Attestation(provider="google", fact=PAID, evidence="paid", channel="google.vertex_ai")
    facts = facts_for(catalog, "google.gemini_api_paid", attestations=[elsewhere])
    assert facts.attestations == ()
    assert facts.missing_attestations == (PAID,)
    assert not evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts).allowed

    here = Attestation(provider="google", fact=PAID, evidence="paid", channel="google.gemini_api_paid")
    assert evaluate(
        policies(PolicyName.NO_TRAINING_ONLY),
        facts_for(catalog, "google.gemini_api_paid", attestations=[here]),
    ).allowed


def test_attestation_of_another_provider_does_not_apply(catalog: Catalog) -> None:
    att = Attestation(provider="openai", fact=OPTED_OUT, evidence="wrong provider")
    facts = facts_for(catalog, "cohere.api", attestations=[att])
    assert facts.attestations == ()
    assert not evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts).allowed
    assert BadgeId.ATTESTED not in [b.id for b in derive_badges(facts)]


def test_attestation_with_non_matching_model_globs_does_not_apply(catalog: Catalog) -> None:
    att = Attestation(
        provider="cohere", fact=OPTED_OUT, evidence="opted out for command models", models=("command-*",)
    )
    no_training = policies(PolicyName.NO_TRAINING_ONLY)
    matching = facts_for(catalog, "cohere.api", model="command-r-plus", attestations=[att, COHERE_PAID])
    assert matching.attestations == (att, COHERE_PAID)
    assert evaluate(no_training, matching).allowed
    other = facts_for(catalog, "cohere.api", model="embed-english-v3.0", attestations=[att, COHERE_PAID])
    assert other.attestations == (COHERE_PAID,)
    assert not evaluate(no_training, other).allowed


@pytest.mark.parametrize(
    ("channel_id", "provider", "fact", "expected"),
    [
        (
            "google.gemini_api_free",
            "google",
            OPTED_OUT,
            "has no training opt-out to attest (training: always)",
        ),
        ("aws.bedrock", "aws", OPTED_OUT, "has no training opt-out to attest (training: never)"),
        (
            "google.gemini_api_free",
            "google",
            ZDR,
            "offers no zero-data-retention agreement (zdr: not_available)",
        ),
        ("cohere.api", "cohere", ZDR, "offers no zero-data-retention agreement (zdr: unknown)"),
        ("google.gemini_api_free", "google", PAID, "is not a paid tier that needs attesting"),
        ("openai.api", "openai", PAID, "is not a paid tier that needs attesting"),
        (
            "openai.chatgpt",
            "openai",
            OPTED_OUT,
            "is a consumer channel; attestations do not make it routable",
        ),
        ("anthropic.claude_consumer", "anthropic", EU, "is a consumer channel"),
    ],
)
def test_attestation_problem_refuses_attestations_that_cannot_hold(
    catalog: Catalog, channel_id: str, provider: str, fact: AttestationFact, expected: str
) -> None:
    channel = catalog.channels[channel_id]
    att = Attestation(provider=provider, fact=fact, evidence="operator says so")
    problem = attestation_problem(channel, att)
    assert problem is not None
    assert expected in problem
    assert problem.startswith(channel.name)
    # And effective_facts ignores it rather than silently merging it.
    facts = facts_for(catalog, channel_id, attestations=[att])
    assert facts.attestations == ()
    assert not facts.attested


def test_training_opt_out_on_the_gemini_free_tier_is_ignored(catalog: Catalog) -> None:
    att = Attestation(provider="google", fact=OPTED_OUT, evidence="we opted out")
    facts = facts_for(catalog, "google.gemini_api_free", attestations=[att])
    assert facts.training.value is TrainingDefault.ALWAYS
    decision = evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts)
    assert not decision.allowed
    assert "we opted out" not in " ".join(decision.reasons())


@pytest.mark.parametrize(
    ("channel_id", "provider", "fact"),
    [
        ("cohere.api", "cohere", OPTED_OUT),
        ("mistral.api_free", "mistral", OPTED_OUT),
        ("openrouter.api", "openrouter", OPTED_OUT),
        ("openai.api", "openai", ZDR),
        ("anthropic.api", "anthropic", ZDR),
        ("microsoft.azure_openai", "microsoft", ZDR),
        ("google.gemini_api_paid", "google", PAID),
        ("mistral.api_paid", "mistral", PAID),
        ("self_hosted.vllm", "self_hosted", EU),
    ],
)
def test_attestation_problem_accepts_attestations_that_can_hold(
    catalog: Catalog, channel_id: str, provider: str, fact: AttestationFact
) -> None:
    assert attestation_problem(catalog.channels[channel_id], Attestation(provider, fact, "evidence")) is None


# --- model overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["claude-fable-5", "claude-fable-5-20260609", "anthropic/claude-fable-5-20260609", "claude-mythos-5"],
)
def test_anthropic_covered_models_keep_30_days_even_under_zdr(catalog: Catalog, model: str) -> None:
    zdr = Attestation(provider="anthropic", fact=ZDR, evidence="Anthropic ZDR addendum 2026-03")
    facts = facts_for(catalog, "anthropic.api", model=model, attestations=[zdr])
    assert facts.overrides
    assert facts.retention.origin is Origin.MODEL_OVERRIDE
    assert facts.retention.value.days == 30
    assert facts.retention.value.qualifier is RetentionQualifier.EXACTLY
    decision = evaluate(policies(PolicyName.ZERO_RETENTION), facts)
    assert not decision.allowed
    check = check_for(decision, Requirement.ZERO_RETENTION)
    assert "keeps data exactly 30 days" in check.reason
    assert "[source A8, A9]" in check.reason
    assert not check.attested
    assert "retention-30d" in [b.id for b in derive_badges(facts)]


def test_other_anthropic_models_reach_zero_retention_with_zdr(catalog: Catalog) -> None:
    zdr = Attestation(provider="anthropic", fact=ZDR, evidence="Anthropic ZDR addendum 2026-03")
    facts = facts_for(catalog, "anthropic.api", model="claude-sonnet-4-5", attestations=[zdr])
    assert facts.overrides == ()
    assert evaluate(policies(PolicyName.ZERO_RETENTION), facts).allowed


@pytest.mark.parametrize(
    ("model", "zero_retention", "retention_days", "review"),
    [
        # Channel retention is unknown (B1 vs B2/S7 conflict): zero-retention needs an attestation.
        ("meta.llama3-1-70b-instruct-v1:0", False, None, "unknown"),
        ("anthropic.claude-sonnet-4-5-v1:0", False, None, "unknown"),
        ("anthropic.claude-fable-5-v1:0", False, 30, "flagged_only"),
        ("bedrock/anthropic.claude-mythos-5-v1:0", False, 30, "flagged_only"),
        ("openai.gpt-oss-120b-1:0", False, 30, "unknown"),
    ],
)
def test_bedrock_model_overrides(
    catalog: Catalog, model: str, zero_retention: bool, retention_days: int | None, review: str
) -> None:
    facts = facts_for(catalog, "aws.bedrock", model=model)
    assert facts.retention.value.days == retention_days
    assert facts.human_review.value == review
    decision = evaluate(policies(PolicyName.ZERO_RETENTION), facts)
    assert decision.allowed is zero_retention
    # No training on any of them: the overrides touch retention and review only.
    assert check_for(decision, Requirement.NO_TRAINING).passed


def test_bedrock_overrides_survive_a_zdr_attestation(catalog: Catalog) -> None:
    zdr = Attestation(provider="aws", fact=ZDR, evidence="data_retention_mode none in eu-central-1")
    facts = facts_for(catalog, "aws.bedrock", model="openai.gpt-oss-120b-1:0", attestations=[zdr])
    assert facts.retention.origin is Origin.MODEL_OVERRIDE
    assert not evaluate(policies(PolicyName.ZERO_RETENTION), facts).allowed


def test_vertex_covered_models_keep_30_days(catalog: Catalog) -> None:
    facts = facts_for(catalog, "google.vertex_ai", model="claude-fable-5@20260609")
    assert facts.retention.value.days == 30
    check = check_for(evaluate(policies(PolicyName.ZERO_RETENTION), facts), Requirement.ZERO_RETENTION)
    assert not check.passed
    assert "[source A8]" in check.reason


# --- staleness ----------------------------------------------------------------------------------


def test_stale_after_180_days(catalog: Catalog) -> None:
    as_of = catalog.channels["openai.api"].as_of
    assert timedelta(days=180) == STALE_AFTER
    assert not facts_for(catalog, "openai.api", today=as_of + timedelta(days=180)).stale
    stale = facts_for(catalog, "openai.api", today=as_of + timedelta(days=181))
    assert stale.stale
    # High confidence: still reliable, only flagged.
    assert not stale.unreliable
    assert evaluate(policies(PolicyName.NO_TRAINING_ONLY), stale).allowed
    ids = [b.id for b in derive_badges(stale)]
    assert ids[-1] == BadgeId.STALE
    assert BadgeId.TRAINING_OPT_IN in ids
    assert BadgeId.STALE not in badge_ids(catalog, "openai.api")


def test_low_confidence_and_stale_fails_every_fact_based_requirement(catalog: Catalog) -> None:
    """A fact that is low-confidence (here: a conflict) and stale counts as unknown; others stand."""
    base = catalog.channels["fireworks.api"]
    shaky = base.model_copy(
        update={
            "conflicts": [
                Conflict(fact=FactName.RETENTION, description="d", resolution="r", src=["F1", "F2"])
            ]
        }
    )
    sources = catalog.sources_of("fireworks.api")
    fresh = effective_facts(shaky, model="m", sources=sources, today=TODAY)
    assert fresh.retention.confidence is Confidence.LOW
    assert fresh.training.confidence is Confidence.HIGH
    assert evaluate(policies(PolicyName.ZERO_RETENTION), fresh).allowed
    later = fresh.on(TODAY + timedelta(days=181))
    decision = evaluate(policies(PolicyName.ZERO_RETENTION), later)
    assert not decision.allowed
    (failure,) = decision.failures
    assert failure.requirement is Requirement.ZERO_RETENTION
    assert "retention fact is low-confidence" in failure.reason
    assert "(dated 2026-11-29)" in failure.reason
    # The training fact is high-confidence: stale, flagged, still judged.
    assert check_for(decision, Requirement.NO_TRAINING).passed
    assert [b.id for b in derive_badges(later)] == [
        "api-channel",
        "no-training",
        "retention-unknown",
        "stale",
        "conflicting-sources",
    ]


def test_confidence_is_per_fact_not_per_entry(catalog: Catalog) -> None:
    """Issue 12: a year on, xAI, Together and Azure OpenAI (low-confidence entries because of retention
    or ZDR conflicts) still pass no-training-only: their training facts rest on provider pages."""
    later = TODAY + timedelta(days=365)
    for channel_id in ("xai.api", "together.api", "microsoft.azure_openai"):
        assert catalog.channels[channel_id].confidence == "low"
        facts = facts_for(catalog, channel_id, today=later)
        assert facts.stale
        assert facts.training.confidence is not Confidence.LOW, channel_id
        assert evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts).allowed, channel_id


# --- routers ------------------------------------------------------------------------------------


def test_router_training_is_unknown_unless_attested(catalog: Catalog) -> None:
    channel = catalog.channels["openrouter.api"]
    assert channel.router
    assert channel.training.default is TrainingDefault.OPT_IN  # its own policy, not its upstreams'
    facts = facts_for(catalog, "openrouter.api")
    assert facts.training.value is TrainingDefault.UNKNOWN
    assert facts.retention.value.qualifier is RetentionQualifier.UNKNOWN
    decision = evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts)
    assert not decision.allowed
    assert (
        "training policy unknown; unknown fails closed" in check_for(decision, Requirement.NO_TRAINING).reason
    )

    att = Attestation(provider="openrouter", fact=OPTED_OUT, evidence="data_collection deny, account-wide")
    attested = evaluate(
        policies(PolicyName.NO_TRAINING_ONLY), facts_for(catalog, "openrouter.api", attestations=[att])
    )
    assert attested.allowed
    assert check_for(attested, Requirement.NO_TRAINING).attested


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel_id", "host", "allowed"),
    [
        ("openai.api", "api.openai.com", True),
        ("openai.api", "eu.api.openai.com", True),
        ("openai.api", "api.openai.com.attacker.example", False),
        ("openai.api", "openrouter.ai", False),
        ("microsoft.azure_openai", "contoso.openai.azure.com", True),
        ("microsoft.azure_openai", "evil.com", False),
        ("self_hosted.vllm", "10.0.0.7", True),
        ("openai.chatgpt", "chatgpt.com", False),
    ],
)
def test_api_base_host_must_be_an_official_host(
    catalog: Catalog, channel_id: str, host: str, allowed: bool
) -> None:
    facts = facts_for(catalog, channel_id, host=host)
    decision = evaluate(policies(), facts)
    assert decision.allowed is allowed
    if not allowed and catalog.channels[channel_id].kind != "consumer":
        assert decision.reasons() == [
            f"{catalog.channels[channel_id].name}: host {host} is not one of the channel's official API hosts"
        ]


def test_host_check_fails_every_policy_not_only_the_baseline(catalog: Catalog) -> None:
    facts = facts_for(catalog, "anthropic.api", host="api.anthropic.com.evil.example")
    for name in BUILTIN_POLICIES:
        assert not evaluate(policies(name), facts).allowed, name


# --- reasons and sources -------------------------------------------------------------------------


def test_reasons_cite_sources(catalog: Catalog) -> None:
    decision = evaluate(policies(PolicyName.NO_TRAINING_ONLY), facts_for(catalog, "google.gemini_api_free"))
    check = check_for(decision, Requirement.NO_TRAINING)
    assert check.sources == ("G3",)
    assert check.reason == (
        "Gemini API (free tier): inputs may be used for training, with no opt-out on this channel [source G3]"
    )
    assert decision.reasons() == [check.reason]

    review = check_for(
        evaluate(policies(PolicyName.NO_HUMAN_REVIEW), facts_for(catalog, "google.gemini_api_free")),
        Requirement.NO_HUMAN_REVIEW,
    )
    assert review.reason.endswith("human reviewers may read the data [source G3]")

    cohere = check_for(
        evaluate(
            policies(PolicyName.NO_TRAINING_ONLY),
            facts_for(catalog, "cohere.api", attestations=[COHERE_PAID]),
        ),
        Requirement.NO_TRAINING,
    )
    assert cohere.sources == ("C1",)
    assert cohere.reason.endswith("[source C1]")


def test_every_check_on_a_known_fact_cites_a_source(catalog: Catalog) -> None:
    fact_based = {Requirement.NO_TRAINING, Requirement.ZERO_RETENTION, Requirement.NO_HUMAN_REVIEW}
    for channel in catalog:
        decision = evaluate(policies(*BUILTIN_POLICIES), facts_for(catalog, channel.id))
        for check in decision.checks:
            if (
                check.requirement in fact_based
                and "unknown" not in check.reason
                and "attestation" not in check.reason
            ):
                assert check.sources, (channel.id, check)
                assert all(s in catalog.sources_of(channel.id) for s in check.sources)
                assert f"[source {', '.join(check.sources)}]" in check.reason


def test_reasons_are_deduplicated(catalog: Catalog) -> None:
    # zero-retention and no-training-only both check training: one reason line, two failed checks.
    decision = evaluate(
        policies(PolicyName.NO_TRAINING_ONLY, PolicyName.ZERO_RETENTION),
        facts_for(catalog, "cohere.api", attestations=[COHERE_PAID]),
    )
    training = [c for c in decision.failures if c.requirement is Requirement.NO_TRAINING]
    assert len(training) == 2
    assert len(decision.reasons()) == len({c.reason for c in decision.failures}) == 2


# --- determinism --------------------------------------------------------------------------------


def test_evaluate_is_deterministic_and_pure(catalog: Catalog) -> None:
    att = Attestation(provider="openai", fact=ZDR, evidence="ZDR agreement")
    chosen = policies(*BUILTIN_POLICIES)
    for channel in catalog:
        facts = facts_for(catalog, channel.id, attestations=[att])
        snapshot = repr(facts)
        dump = channel.model_dump()
        first = evaluate(chosen, facts)
        second = evaluate(iter(chosen), facts)  # any iterable
        third = evaluate(chosen, facts_for(catalog, channel.id, attestations=[att]))
        assert first == second == third
        assert hash(first) == hash(third)
        assert repr(facts) == snapshot
        assert facts == facts_for(catalog, channel.id, attestations=[att])
        assert channel.model_dump() == dump
        assert first.policies == tuple(p.name for p in chosen)
        assert len(first.checks) == sum(len(p.requires) for p in chosen)


def test_effective_facts_do_not_read_the_clock(catalog: Catalog) -> None:
    # The same "today" gives the same facts; a different "today" only changes staleness.
    a = facts_for(catalog, "openai.api", today=date(2026, 11, 29))
    b = facts_for(catalog, "openai.api", today=date(2026, 11, 29))
    c = facts_for(catalog, "openai.api", today=date(2030, 1, 1))
    assert a == b
    assert a != c
    assert a.training == c.training and a.retention == c.retention


# --- resolve and custom policies -----------------------------------------------------------------


def test_resolve_puts_the_baseline_first_and_sorts_the_rest() -> None:
    names = [
        p.name
        for p in resolve(["zero-retention", " eu-residency ", "", "api-channel-only"], BUILTIN_POLICIES)
    ]
    assert names == ["api-channel-only", "eu-residency", "zero-retention"]
    assert [p.name for p in resolve([], BUILTIN_POLICIES)] == ["api-channel-only"]
    assert [p.name for p in resolve(["no-training-only", "no-training-only"], BUILTIN_POLICIES)] == [
        "api-channel-only",
        "no-training-only",
    ]


@pytest.mark.parametrize("name", ["no-training", "zero_retention", "ZERO-RETENTION", "anything"])
def test_resolve_rejects_unknown_names(name: str) -> None:
    with pytest.raises(UnknownPolicyError) as info:
        resolve(["no-training-only", name], BUILTIN_POLICIES)
    assert info.value.name == name.strip()
    assert name in str(info.value)


def test_builtin_policies_match_design() -> None:
    assert {name: tuple(p.requires) for name, p in BUILTIN_POLICIES.items()} == {
        "api-channel-only": (Requirement.API_CHANNEL,),
        "no-training-only": (Requirement.NO_TRAINING,),
        "zero-retention": (Requirement.NO_TRAINING, Requirement.ZERO_RETENTION),
        "no-human-review": (Requirement.NO_HUMAN_REVIEW,),
        "self-hosted-only": (Requirement.SELF_HOSTED,),
        "eu-residency": (Requirement.EU_RESIDENCY,),
    }
    assert all(p.builtin for p in BUILTIN_POLICIES.values())


@pytest.mark.parametrize(
    ("channel_id", "limit", "allowed"),
    [
        ("openai.api", 30, True),  # up to 30 days
        ("openai.api", 29, False),
        ("xai.api", 30, True),  # exactly 30 days
        ("google.gemini_api_free", 30, False),  # 55 days
        ("google.gemini_api_free", 55, True),
        ("perplexity.api", 0, True),  # none
        ("google.vertex_ai", 365, False),  # unknown
        ("together.api", 365, False),  # until deleted
        ("deepseek.api", 365, False),  # as long as necessary
        ("anthropic.claude_consumer", 3650, False),  # consumer: the baseline refuses
    ],
)
def test_custom_policy_with_max_retention_days(
    catalog: Catalog, channel_id: str, limit: int, allowed: bool
) -> None:
    custom = Policy(
        name="short-retention",
        description="kept no longer than the limit",
        requires=(Requirement.MAX_RETENTION_DAYS,),
        max_retention_days=limit,
    )
    chosen = resolve(["short-retention"], policy_table([custom]))
    assert [p.name for p in chosen] == ["api-channel-only", "short-retention"]
    decision = evaluate(chosen, facts_for(catalog, channel_id))
    assert decision.allowed is allowed
    assert f"(limit {limit} days)" in check_for(decision, Requirement.MAX_RETENTION_DAYS).reason


def test_custom_policy_validation() -> None:
    with pytest.raises(ValidationError, match="max_retention_days must be set"):
        Policy(name="p", description="d", requires=(Requirement.MAX_RETENTION_DAYS,))
    with pytest.raises(ValidationError, match="max_retention_days must be set"):
        Policy(name="p", description="d", requires=(Requirement.NO_TRAINING,), max_retention_days=3)
    with pytest.raises(ValidationError):
        Policy(name="Bad Name", description="d", requires=(Requirement.NO_TRAINING,))
    with pytest.raises(ValidationError):
        Policy(name="p", description="d", requires=())
    with pytest.raises(ValidationError):
        Policy(name="p", description="d", requires=(Requirement.NO_TRAINING,), extra_field=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="already defined"):
        policy_table(
            [Policy(name="zero-retention", description="shadow", requires=(Requirement.API_CHANNEL,))]
        )


def test_custom_policy_combining_requirements(catalog: Catalog) -> None:
    strict = Policy(
        name="strict",
        description="no training, no human review",
        requires=(Requirement.NO_TRAINING, Requirement.NO_HUMAN_REVIEW),
    )
    table = policy_table([strict])
    allowed = {
        c.id for c in catalog if evaluate(resolve(["strict"], table), facts_for(catalog, c.id)).allowed
    }
    assert allowed == {"self_hosted.vllm", "self_hosted.ollama", "self_hosted.openai_compatible"}


# --- synthetic entries: rules the current catalog data does not exercise ---------------------------


def test_override_globs_also_match_the_model_without_its_route_prefix(catalog: Catalog) -> None:
    channel = catalog.channels["anthropic.api"]
    override = ModelOverride(models=["claude-fable-5*"], retention_days=30, notes="covered model", src=["A8"])
    narrow = channel.model_copy(update={"model_overrides": [override]})
    for model in ("claude-fable-5-20260609", "anthropic/claude-fable-5-20260609"):
        facts = effective_facts(narrow, model=model, sources=catalog.sources_of(channel.id), today=TODAY)
        assert facts.overrides == (override,), model
        assert facts.retention.value == RetentionValue(30, RetentionQualifier.UP_TO)
    other = effective_facts(
        narrow, model="claude-sonnet-4-5", sources=catalog.sources_of(channel.id), today=TODAY
    )
    assert other.overrides == ()


@pytest.mark.parametrize(
    ("qualifier", "allowed"),
    [
        (RetentionQualifier.UP_TO, True),
        (RetentionQualifier.EXACTLY, True),
        (RetentionQualifier.UNTIL_DELETED, False),
        (RetentionQualifier.AS_LONG_AS_NECESSARY, False),
    ],
)
def test_max_retention_counts_only_bounded_day_counts(
    catalog: Catalog, qualifier: RetentionQualifier, allowed: bool
) -> None:
    channel = catalog.channels["openai.api"]
    retention = Retention(days=7, qualifier=qualifier, src=["O5"])
    entry = channel.model_copy(update={"retention": retention})
    facts = effective_facts(entry, model="gpt-4o", sources=catalog.sources_of(channel.id), today=TODAY)
    week = Policy(
        name="max-30-days",
        description="kept at most 30 days",
        requires=(Requirement.MAX_RETENTION_DAYS,),
        max_retention_days=30,
    )
    assert evaluate([week], facts).allowed is allowed


def test_host_is_only_presumed_official_for_non_consumer_channels(catalog: Catalog) -> None:
    assert facts_for(catalog, "openai.api").host_ok
    assert facts_for(catalog, "self_hosted.vllm").host_ok
    assert not facts_for(catalog, "openai.chatgpt").host_ok
    assert not facts_for(catalog, "openai.api", host="chatgpt.com").host_ok


@pytest.mark.parametrize(
    ("channel_id", "reason"),
    [
        ("openai.api", "OpenAI API: an API channel, not self-hosted"),
        ("openai.chatgpt", "ChatGPT (Free/Plus/Pro): a consumer product, not self-hosted"),
    ],
)
def test_self_hosted_reasons_read_as_english(catalog: Catalog, channel_id: str, reason: str) -> None:
    decision = evaluate(policies("self-hosted-only"), facts_for(catalog, channel_id))
    assert check_for(decision, Requirement.SELF_HOSTED).reason == reason
