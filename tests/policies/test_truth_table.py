"""The policy engine as a truth table: every builtin policy x every catalog channel.

The table is written out by hand from the catalog YAML facts and the rules of DESIGN.md
(Policies): unknown fails closed; the baseline `api-channel-only` is always on, so a consumer
channel fails every policy; a channel that `requires_attestation` fails every fact-based
requirement until the operator attests it; a router's training/retention/review are unknown.
The engine's one deliberate deviation is kept: `opt_in` training passes no-training-only.

Facts are evaluated as of 2026-11-29 (the catalog's as_of: nothing is stale), for a model that
matches no model override, with no api_base host and no attestations.
"""

from __future__ import annotations

import pytest

from policies.catalog import Catalog
from policies.engine import Decision, evaluate
from policies.facts import Attestation
from policies.policy import BUILTIN_POLICIES, PolicyName, Requirement, resolve
from policies.schema import AttestationFact, Kind
from tests.policies.support import facts_for

OK = True  # allowed
NO = False  # refused

COLUMNS = (
    PolicyName.API_CHANNEL_ONLY,
    PolicyName.NO_TRAINING_ONLY,
    PolicyName.ZERO_RETENTION,
    PolicyName.NO_HUMAN_REVIEW,
    PolicyName.SELF_HOSTED_ONLY,
    PolicyName.EU_RESIDENCY,
)

# fmt: off
TRUTH_TABLE: dict[str, tuple[bool, bool, bool, bool, bool, bool]] = {
    #                              api  no-tr zero  no-hr self  eu
    # consumer products: refused by the always-on baseline, whatever their facts
    "openai.chatgpt":            (NO,  NO,  NO,  NO,  NO,  NO),
    "openai.chatgpt_business":   (NO,  NO,  NO,  NO,  NO,  NO),   # opt_in, but consumer
    "anthropic.claude_consumer": (NO,  NO,  NO,  NO,  NO,  NO),
    "google.gemini_app":         (NO,  NO,  NO,  NO,  NO,  NO),
    "mistral.le_chat":           (NO,  NO,  NO,  NO,  NO,  NO),
    "meta.meta_ai":              (NO,  NO,  NO,  NO,  NO,  NO),
    "deepseek.app":              (NO,  NO,  NO,  NO,  NO,  NO),
    "github.copilot_individual": (NO,  NO,  NO,  NO,  NO,  NO),
    "github.copilot_business":   (NO,  NO,  NO,  NO,  NO,  NO),   # never, but a product
    "anthropic.claude_team":     (NO,  NO,  NO,  NO,  NO,  NO),   # never, but a product
    "mistral.le_chat_business":  (NO,  NO,  NO,  NO,  NO,  NO),   # never, but a product
    "xai.grok_app":              (NO,  NO,  NO,  NO,  NO,  NO),
    "perplexity.app":            (NO,  NO,  NO,  NO,  NO,  NO),
    "microsoft.copilot":         (NO,  NO,  NO,  NO,  NO,  NO),
    "microsoft.m365_copilot":    (NO,  NO,  NO,  NO,  NO,  NO),   # never, but a product
    # never; up_to 30 days; flagged_only; global
    "openai.api":                (OK,  OK,  NO,  NO,  NO,  NO),
    # never; up_to 30 days; flagged_only; global+us / unknown storage
    "anthropic.api":             (OK,  OK,  NO,  NO,  NO,  NO),
    # always; 55 days; human review yes; global
    "google.gemini_api_free":    (OK,  NO,  NO,  NO,  NO,  NO),
    # never, but requires a paid_tier attestation: without it every fact-based check fails
    "google.gemini_api_paid":    (OK,  NO,  NO,  NO,  NO,  NO),
    # never; retention unknown (day count unverified); review unknown; global
    "google.vertex_ai":          (OK,  OK,  NO,  NO,  NO,  NO),
    # opt_out (less private reading of a conflict); 30 days; review unknown; eu+us
    "mistral.api_free":          (OK,  NO,  NO,  NO,  NO,  NO),
    # never, but requires a paid_tier attestation
    "mistral.api_paid":          (OK,  NO,  NO,  NO,  NO,  NO),
    # everything unknown
    "meta.llama_api":            (OK,  NO,  NO,  NO,  NO,  NO),
    # never; retention unknown (conflict, less private reading); flagged_only; global
    "microsoft.azure_openai":    (OK,  OK,  NO,  NO,  NO,  NO),
    # never; retention none; review unknown; global
    "aws.bedrock":               (OK,  OK,  NO,  NO,  NO,  NO),
    # training unknown; 30 days
    "groq.api":                  (OK,  NO,  NO,  NO,  NO,  NO),
    # opt_in (passes no-training-only by the engine's choice); until_deleted
    "together.api":              (OK,  OK,  NO,  NO,  NO,  NO),
    # never; retention none (open models); review unknown
    "fireworks.api":             (OK,  OK,  OK,  NO,  NO,  NO),
    # training unknown; as long as necessary; PRC
    "deepseek.api":              (OK,  NO,  NO,  NO,  NO,  NO),
    # never; exactly 30 days
    "xai.api":                   (OK,  OK,  NO,  NO,  NO,  NO),
    # opt_out, no opt-out attested; 30 days; flagged_only; needs paid_tier (the host serves trial keys)
    "cohere.api":                (OK,  NO,  NO,  NO,  NO,  NO),
    # never; retention none; review unknown
    "perplexity.api":            (OK,  OK,  OK,  NO,  NO,  NO),
    # router: training, retention and review unknown unless attested
    "openrouter.api":            (OK,  NO,  NO,  NO,  NO,  NO),
    # everything unknown
    "ollama.cloud":              (OK,  NO,  NO,  NO,  NO,  NO),
    # never; retention none (in memory only); review unknown
    "deepinfra.api":             (OK,  OK,  OK,  NO,  NO,  NO),
    # opt_in (explicit consent); retention unknown
    "cloudflare.workers_ai":     (OK,  OK,  NO,  NO,  NO,  NO),
    # router: unknown unless attested
    "huggingface.inference_providers": (OK, NO, NO, NO, NO,  NO),
    # no data-use statement found: everything unknown
    "github.models":             (OK,  NO,  NO,  NO,  NO,  NO),
    "nebius.api":                (OK,  NO,  NO,  NO,  NO,  NO),
    "sambanova.api":             (OK,  NO,  NO,  NO,  NO,  NO),
    "cerebras.api":              (OK,  NO,  NO,  NO,  NO,  NO),
    # trial keys are outside Cohere's API data commitments: unknown
    "cohere.trial":              (OK,  NO,  NO,  NO,  NO,  NO),
    # self-hosted: never; none; no review; region "operator" (not the EU unless attested)
    "self_hosted.vllm":          (OK,  OK,  OK,  OK,  OK,  NO),
    "self_hosted.ollama":        (OK,  OK,  OK,  OK,  OK,  NO),
    "self_hosted.openai_compatible": (OK, OK, OK, OK,  OK,  NO),
}
# fmt: on

CELLS = [
    pytest.param(channel_id, policy, row[i], id=f"{policy}-{channel_id}")
    for channel_id, row in TRUTH_TABLE.items()
    for i, policy in enumerate(COLUMNS)
]


def _decide(
    catalog: Catalog, channel_id: str, policy: str, attestations: tuple[Attestation, ...] = ()
) -> Decision:
    return evaluate(
        resolve([policy], BUILTIN_POLICIES), facts_for(catalog, channel_id, attestations=attestations)
    )


def test_table_covers_every_channel_and_every_builtin_policy(catalog: Catalog) -> None:
    assert set(TRUTH_TABLE) == set(catalog.channels)
    assert set(COLUMNS) == set(BUILTIN_POLICIES)


@pytest.mark.parametrize(("channel_id", "policy", "allowed"), CELLS)
def test_truth_table(catalog: Catalog, channel_id: str, policy: str, allowed: bool) -> None:
    decision = _decide(catalog, channel_id, policy)
    assert decision.allowed is allowed, decision.reasons()
    assert decision.policies[0] == PolicyName.API_CHANNEL_ONLY
    assert set(decision.policies) == {PolicyName.API_CHANNEL_ONLY, policy}
    if allowed:
        assert decision.failures == ()
        assert decision.reasons() == []
        return
    assert decision.reasons(), "a refusal must say why"
    if catalog.channels[channel_id].kind is Kind.CONSUMER:
        # The baseline refuses it.
        assert any(c.requirement is Requirement.API_CHANNEL for c in decision.failures)
    else:
        # Refused by the named policy itself, not by the baseline.
        assert {c.policy for c in decision.failures} == {policy}


def test_column_totals(catalog: Catalog) -> None:
    """The same table summed by column, as `sluice policy explain` reports it."""
    totals = {p: sum(row[i] for row in TRUTH_TABLE.values()) for i, p in enumerate(COLUMNS)}
    assert totals == {
        PolicyName.API_CHANNEL_ONLY: 30,
        PolicyName.NO_TRAINING_ONLY: 14,
        PolicyName.ZERO_RETENTION: 6,
        PolicyName.NO_HUMAN_REVIEW: 3,
        PolicyName.SELF_HOSTED_ONLY: 3,
        PolicyName.EU_RESIDENCY: 0,
    }
    engine = {p: sum(_decide(catalog, c, p).allowed for c in catalog.channels) for p in COLUMNS}
    assert engine == totals


# --- the cases the issue names -------------------------------------------------------------------

NO_TRAINING_REFUSES = [
    "openai.chatgpt",
    "anthropic.claude_consumer",
    "google.gemini_api_free",
    "mistral.api_free",
    "deepseek.api",
    "cohere.api",
]
NO_TRAINING_ACCEPTS = [
    "openai.api",
    "anthropic.api",
    "google.vertex_ai",
    "aws.bedrock",
    "microsoft.azure_openai",
    "self_hosted.vllm",
]


@pytest.mark.parametrize("channel_id", NO_TRAINING_REFUSES)
def test_no_training_only_refuses(catalog: Catalog, channel_id: str) -> None:
    assert not _decide(catalog, channel_id, PolicyName.NO_TRAINING_ONLY).allowed


@pytest.mark.parametrize("channel_id", NO_TRAINING_ACCEPTS)
def test_no_training_only_accepts(catalog: Catalog, channel_id: str) -> None:
    assert _decide(catalog, channel_id, PolicyName.NO_TRAINING_ONLY).allowed


def test_deepseek_api_is_refused_because_training_is_unknown(catalog: Catalog) -> None:
    decision = _decide(catalog, "deepseek.api", PolicyName.NO_TRAINING_ONLY)
    (failure,) = decision.failures
    assert failure.requirement is Requirement.NO_TRAINING
    assert "unknown fails closed" in failure.reason


@pytest.mark.parametrize(
    ("channel_id", "provider"), [("google.gemini_api_paid", "google"), ("mistral.api_paid", "mistral")]
)
def test_paid_tiers_pass_no_training_only_only_with_a_paid_tier_attestation(
    catalog: Catalog, channel_id: str, provider: str
) -> None:
    without = _decide(catalog, channel_id, PolicyName.NO_TRAINING_ONLY)
    assert not without.allowed
    assert "needs an operator attestation (paid_tier)" in without.reasons()[0]
    paid = Attestation(provider=provider, fact=AttestationFact.PAID_TIER, evidence="billing account 0042")
    assert _decide(catalog, channel_id, PolicyName.NO_TRAINING_ONLY, (paid,)).allowed


def test_a_paid_tier_attestation_does_not_change_the_free_tier(catalog: Catalog) -> None:
    paid = Attestation(provider="google", fact=AttestationFact.PAID_TIER, evidence="billing account 0042")
    assert not _decide(catalog, "google.gemini_api_free", PolicyName.NO_TRAINING_ONLY, (paid,)).allowed
    paid = Attestation(provider="mistral", fact=AttestationFact.PAID_TIER, evidence="Scale plan")
    assert not _decide(catalog, "mistral.api_free", PolicyName.NO_TRAINING_ONLY, (paid,)).allowed


def test_cohere_passes_no_training_only_only_with_an_opt_out_attestation(catalog: Catalog) -> None:
    assert not _decide(catalog, "cohere.api", PolicyName.NO_TRAINING_ONLY).allowed
    opted_out = Attestation(
        provider="cohere", fact=AttestationFact.TRAINING_OPTED_OUT, evidence="Data Controls off, 2026-10"
    )
    paid = Attestation(provider="cohere", fact=AttestationFact.PAID_TIER, evidence="production key")
    assert not _decide(catalog, "cohere.api", PolicyName.NO_TRAINING_ONLY, (opted_out,)).allowed
    assert _decide(catalog, "cohere.api", PolicyName.NO_TRAINING_ONLY, (opted_out, paid)).allowed
    # The opt-out does not reach trial keys: outside the API data commitments, training is unknown.
    assert not _decide(catalog, "cohere.trial", PolicyName.NO_TRAINING_ONLY, (opted_out, paid)).allowed


def test_zero_retention_needs_a_zdr_attestation_on_the_openai_api(catalog: Catalog) -> None:
    without = _decide(catalog, "openai.api", PolicyName.ZERO_RETENTION)
    assert not without.allowed
    assert [c.requirement for c in without.failures] == [Requirement.ZERO_RETENTION]
    zdr = Attestation(
        provider="openai", fact=AttestationFact.ZERO_DATA_RETENTION, evidence="ZDR agreement 2026-05"
    )
    assert _decide(catalog, "openai.api", PolicyName.ZERO_RETENTION, (zdr,)).allowed


@pytest.mark.parametrize("channel_id", sorted(c for c, row in TRUTH_TABLE.items() if not row[0]))
def test_api_channel_only_refuses_every_consumer_channel(catalog: Catalog, channel_id: str) -> None:
    assert catalog.channels[channel_id].kind is Kind.CONSUMER
    decision = _decide(catalog, channel_id, PolicyName.API_CHANNEL_ONLY)
    (failure,) = decision.failures
    assert failure.requirement is Requirement.API_CHANNEL
    assert "a consumer product, never an API channel" in failure.reason


def test_every_consumer_channel_is_in_the_refused_rows(catalog: Catalog) -> None:
    consumers = {c.id for c in catalog if c.kind is Kind.CONSUMER}
    assert consumers == {c for c, row in TRUTH_TABLE.items() if not any(row)}
    assert len(consumers) == 15


def test_opt_in_training_passes_no_training_only(catalog: Catalog) -> None:
    """Deliberate engine choice (DESIGN.md says only `never`): opt_in is off unless the account opts in."""
    decision = _decide(catalog, "together.api", PolicyName.NO_TRAINING_ONLY)
    assert decision.allowed
    training = next(c for c in decision.checks if c.requirement is Requirement.NO_TRAINING)
    assert "unless the account opts in" in training.reason
