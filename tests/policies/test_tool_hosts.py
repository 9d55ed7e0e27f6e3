"""Remote MCP to a tool host (DESIGN.md, Data paths): the channel's `remote_mcp` facts and the
operator's facts for each named host, judged together under every requirement of the policy."""

from __future__ import annotations

import pytest

from policies.catalog import Catalog
from policies.engine import Decision, evaluate
from policies.facts import Attestation
from policies.policy import BUILTIN_POLICIES, Policy, PolicyName, Requirement, resolve
from policies.schema import AttestationFact, FeatureId, HumanReview, Region, TrainingDefault
from policies.tool_hosts import ToolHost, check_tool_host
from tests.policies.support import facts_for

OWN = ToolHost(
    "mcp.internal.example",
    "our own server",
    TrainingDefault.NEVER,
    0,
    HumanReview.NONE,
    frozenset({Region.EU}),
    operator_owned=True,
)
VENDOR = ToolHost("mcp.vendor.example", "vendor terms", TrainingDefault.OPT_OUT, 30)
UNKNOWN = ToolHost("mcp.unknown.example", "listed, nothing declared")
MONTH = Policy(
    name="month",
    description="30 days",
    requires=(Requirement.MAX_RETENTION_DAYS,),
    max_retention_days=30,
)


def decide(catalog: Catalog, channel: str, policy: str, hosts: tuple[ToolHost, ...]) -> Decision:
    chosen = (
        resolve([policy], BUILTIN_POLICIES) if policy != "month" else (*resolve([], BUILTIN_POLICIES), MONTH)
    )
    return evaluate(chosen, facts_for(catalog, channel), features=[FeatureId.REMOTE_MCP], tool_hosts=hosts)


# fmt: off
TABLE = [
    # channel, policy, hosts, allowed
    ("anthropic.api", PolicyName.NO_TRAINING_ONLY, (), False),        # a third party outside the catalog
    ("anthropic.api", PolicyName.NO_TRAINING_ONLY, (OWN,), True),
    ("anthropic.api", PolicyName.NO_TRAINING_ONLY, (VENDOR,), False),  # the host trains unless opted out
    ("anthropic.api", PolicyName.NO_TRAINING_ONLY, (OWN, VENDOR), False),
    ("anthropic.api", PolicyName.NO_TRAINING_ONLY, (UNKNOWN,), False),  # unknown fails closed
    # A retention limit judges what the provider keeps for the feature too: unknown here.
    ("anthropic.api", "month", (VENDOR,), False),
    ("anthropic.api", PolicyName.ZERO_RETENTION, (OWN,), False),
    ("anthropic.api", PolicyName.NO_HUMAN_REVIEW, (OWN,), False),  # the channel reviews flagged content
    ("openai.api", PolicyName.NO_TRAINING_ONLY, (OWN,), False),  # its MCP facts: secondary and stale
    ("openai.api", PolicyName.API_CHANNEL_ONLY, (UNKNOWN,), True),
    ("google.gemini_api_paid", PolicyName.API_CHANNEL_ONLY, (OWN,), True),  # no facts: baseline only
    ("google.gemini_api_paid", PolicyName.NO_TRAINING_ONLY, (OWN,), False),
]
# fmt: on


@pytest.mark.parametrize(("channel", "policy", "hosts", "allowed"), TABLE)
def test_remote_mcp_truth_table(
    catalog: Catalog, channel: str, policy: str, hosts: tuple[ToolHost, ...], allowed: bool
) -> None:
    assert decide(catalog, channel, policy, hosts).allowed is allowed


def test_a_failing_host_is_named_with_the_operators_evidence(catalog: Catalog) -> None:
    decision = decide(catalog, "anthropic.api", PolicyName.NO_TRAINING_ONLY, (OWN, VENDOR))
    (failure,) = decision.failures
    assert failure.feature is FeatureId.REMOTE_MCP and failure.attested
    assert failure.reason == "MCP server mcp.vendor.example: training opt_out (attested: vendor terms)"


@pytest.mark.parametrize(
    ("requirement", "own", "vendor", "unknown"),
    [
        (Requirement.API_CHANNEL, True, True, True),
        (Requirement.NO_TRAINING, True, False, False),
        (Requirement.ZERO_RETENTION, True, False, False),
        (Requirement.MAX_RETENTION_DAYS, True, True, False),
        (Requirement.NO_HUMAN_REVIEW, True, False, False),
        (Requirement.EU_RESIDENCY, True, False, False),
        (Requirement.SELF_HOSTED, True, False, False),
    ],
)
def test_each_requirement_on_a_host(requirement: Requirement, own: bool, vendor: bool, unknown: bool) -> None:
    got = [check_tool_host(h, requirement, 30)[0] for h in (OWN, VENDOR, UNKNOWN)]
    assert got == [own, vendor, unknown]


def test_tool_hosts_are_ignored_without_remote_mcp(catalog: Catalog) -> None:
    facts = facts_for(catalog, "openai.api")
    decision = evaluate(
        resolve([PolicyName.NO_TRAINING_ONLY], BUILTIN_POLICIES), facts, tool_hosts=(UNKNOWN,)
    )
    assert decision.allowed and all(c.feature is None for c in decision.checks)


def test_a_zdr_agreement_does_not_cover_what_the_provider_keeps_for_mcp(catalog: Catalog) -> None:
    zdr = Attestation("anthropic", AttestationFact.ZERO_DATA_RETENTION, "ZDR addendum")
    facts = facts_for(catalog, "anthropic.api", attestations=[zdr])
    policy = resolve([PolicyName.ZERO_RETENTION], BUILTIN_POLICIES)
    assert evaluate(policy, facts).allowed
    decision = evaluate(policy, facts, features=[FeatureId.REMOTE_MCP], tool_hosts=(OWN,))
    assert not decision.allowed
    assert all(c.feature is FeatureId.REMOTE_MCP and "MCP server" not in c.reason for c in decision.failures)
