"""Badges: the wire vocabulary and its derivation from effective facts (DESIGN.md, badge headers)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policies.badges import VOCABULARY, Badge, BadgeId, Level, badge, derive_badges
from policies.catalog import Catalog
from policies.facts import Attestation, effective_facts
from policies.schema import AttestationFact, Region, Regions
from tests.policies.support import TODAY, facts_for

# Badge ids are on the wire (X-Privacy-Badges): renaming one breaks clients that filter on them.
WIRE_IDS = {
    "api-channel",
    "self-hosted",
    "consumer-channel",
    "no-training",
    "training-opt-in",
    "training-opt-out",
    "trains-on-data",
    "training-unknown",
    "zdr",
    "retention-unknown",
    "human-review",
    "human-review-flagged",
    "region-eu",
    "region-us",
    "attested",
    "stale",
    "conflicting-sources",
    "routed-onward",
}

EXPECTED_LEVELS = {
    "api-channel": Level.GOOD,
    "self-hosted": Level.GOOD,
    "consumer-channel": Level.BAD,
    "no-training": Level.GOOD,
    "training-opt-in": Level.CAUTION,
    "training-opt-out": Level.BAD,
    "trains-on-data": Level.BAD,
    "training-unknown": Level.BAD,
    "zdr": Level.GOOD,
    "retention-unknown": Level.BAD,
    "human-review": Level.BAD,
    "human-review-flagged": Level.CAUTION,
    "region-eu": Level.GOOD,
    "region-us": Level.CAUTION,
    "attested": Level.CAUTION,
    "stale": Level.CAUTION,
    "conflicting-sources": Level.CAUTION,
    "routed-onward": Level.BAD,
}


def ids(badges: tuple[Badge, ...]) -> list[str]:
    return [b.id for b in badges]


# --- vocabulary ---------------------------------------------------------------------------------


def test_badge_ids_are_the_wire_vocabulary() -> None:
    assert {b.value for b in BadgeId} == WIRE_IDS
    assert set(VOCABULARY) == WIRE_IDS


@pytest.mark.parametrize("badge_id", sorted(WIRE_IDS))
def test_every_badge_has_label_level_and_description(badge_id: str) -> None:
    made = badge(badge_id)
    assert made.id == badge_id
    assert made.label.strip()
    assert made.description.strip()
    assert made.description.endswith(".")
    assert made.level in (Level.GOOD, Level.CAUTION, Level.BAD)
    assert made.level is EXPECTED_LEVELS[badge_id]
    assert made.source is None
    assert made.as_dict() == {
        "id": badge_id,
        "label": made.label,
        "level": made.level.value,
        "description": made.description,
        "source": None,
    }


def test_levels_are_good_caution_bad() -> None:
    assert {level.value for level in Level} == {"good", "caution", "bad"}


def test_retention_badges_are_built_from_the_day_count() -> None:
    made = badge("retention-30d", "https://example.org/policy")
    assert made.label == "Kept up to 30 days"
    assert made.level is Level.CAUTION
    assert "30 days" in made.description
    assert made.source == "https://example.org/policy"
    assert badge("retention-1825d").label == "Kept up to 1825 days"


def test_unknown_badge_ids_are_refused() -> None:
    with pytest.raises(KeyError):
        badge("trains-sometimes")


# --- derivation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel_id", "expected"),
    [
        # opt-in data-sharing programmes: one vocabulary, opt_in (issue 12)
        ("openai.api", ["api-channel", "training-opt-in", "retention-30d", "human-review-flagged"]),
        ("anthropic.api", ["api-channel", "training-opt-in", "retention-30d", "human-review-flagged"]),
        # the Gemini API terms state 2025-05-20: older than 180 days on 2026-11-29, so stale
        (
            "google.gemini_api_free",
            ["api-channel", "trains-on-data", "retention-55d", "human-review", "stale"],
        ),
        # requires a paid_tier attestation: without it nothing about training or retention holds
        (
            "google.gemini_api_paid",
            ["api-channel", "training-unknown", "retention-unknown", "stale", "conflicting-sources"],
        ),
        ("google.vertex_ai", ["api-channel", "no-training", "retention-unknown"]),
        ("aws.bedrock", ["api-channel", "no-training", "retention-unknown", "conflicting-sources"]),
        (
            "microsoft.azure_openai",
            [
                "api-channel",
                "no-training",
                "retention-unknown",
                "human-review-flagged",
                "stale",
                "conflicting-sources",
            ],
        ),
        # needs paid_tier (its host also serves trial keys): without it nothing holds
        ("cohere.api", ["api-channel", "training-unknown", "retention-unknown", "stale"]),
        ("mistral.api_free", ["api-channel", "training-opt-out", "retention-30d", "conflicting-sources"]),
        ("together.api", ["api-channel", "training-opt-in", "retention-unknown", "conflicting-sources"]),
        ("deepseek.api", ["api-channel", "training-unknown", "retention-unknown"]),
        ("openrouter.api", ["api-channel", "training-unknown", "retention-unknown", "routed-onward"]),
        ("xai.api", ["api-channel", "training-opt-in", "retention-30d", "conflicting-sources"]),
        ("self_hosted.vllm", ["self-hosted", "no-training"]),
        ("self_hosted.ollama", ["self-hosted", "no-training"]),
        ("openai.chatgpt", ["consumer-channel", "training-opt-out", "retention-unknown", "stale"]),
        ("anthropic.claude_consumer", ["consumer-channel", "training-opt-out", "retention-1825d"]),
        # 36 months: the worst case of the adjustable auto-delete period
        ("google.gemini_app", ["consumer-channel", "training-opt-out", "retention-1095d", "human-review"]),
        # no primary source read: unknown
        ("meta.meta_ai", ["consumer-channel", "training-unknown", "retention-unknown"]),
    ],
)
def test_badges_per_channel(catalog: Catalog, channel_id: str, expected: list[str]) -> None:
    assert ids(derive_badges(facts_for(catalog, channel_id))) == expected


def test_every_channel_gets_a_kind_badge_first_and_a_training_badge_second(catalog: Catalog) -> None:
    kind_badge = {"api": "api-channel", "self_hosted": "self-hosted", "consumer": "consumer-channel"}
    for channel in catalog:
        derived = ids(derive_badges(facts_for(catalog, channel.id)))
        assert derived[0] == kind_badge[channel.kind], channel.id
        assert derived[1] in {
            "no-training",
            "training-opt-in",
            "training-opt-out",
            "trains-on-data",
            "training-unknown",
        }, channel.id
        assert len(derived) == len(set(derived)), channel.id
        assert "attested" not in derived, channel.id


def test_paid_tier_attestation_unlocks_the_paid_tier_badges(catalog: Catalog) -> None:
    paid = Attestation(provider="google", fact=AttestationFact.PAID_TIER, evidence="billing-enabled project")
    derived = ids(derive_badges(facts_for(catalog, "google.gemini_api_paid", attestations=[paid])))
    assert derived == [
        "api-channel",
        "training-opt-in",
        "retention-55d",
        "human-review-flagged",
        "attested",
        "stale",
        "conflicting-sources",
    ]


def test_region_eu_from_an_eu_residency_attestation(catalog: Catalog) -> None:
    eu = Attestation(provider="self_hosted", fact=AttestationFact.EU_RESIDENCY, evidence="hosts in Paris")
    derived = derive_badges(facts_for(catalog, "self_hosted.vllm", attestations=[eu]))
    assert ids(derived) == ["self-hosted", "no-training", "region-eu", "attested"]
    region = next(b for b in derived if b.id == "region-eu")
    assert region.level is Level.GOOD
    attested = next(b for b in derived if b.id == "attested")
    assert attested.source is None


def test_region_badges_need_a_single_region_everywhere(catalog: Catalog) -> None:
    # Mistral records EU and US (less private reading): neither region badge.
    assert not {"region-eu", "region-us"} & set(ids(derive_badges(facts_for(catalog, "mistral.api_paid"))))
    us_only = catalog.channels["openai.api"].model_copy(
        update={"regions": Regions(processing=[Region.US], storage=[Region.US], src=["O7"])}
    )
    facts = effective_facts(us_only, model="gpt-4o", sources=catalog.sources_of("openai.api"), today=TODAY)
    assert "region-us" in ids(derive_badges(facts))


def test_training_opt_out_attestation_gives_no_training_and_attested(catalog: Catalog) -> None:
    att = Attestation(provider="cohere", fact=AttestationFact.TRAINING_OPTED_OUT, evidence="opted out")
    paid = Attestation(provider="cohere", fact=AttestationFact.PAID_TIER, evidence="production key")
    derived = ids(derive_badges(facts_for(catalog, "cohere.api", attestations=[att, paid])))
    assert derived == [
        "api-channel",
        "no-training",
        "retention-30d",
        "human-review-flagged",
        "attested",
        "stale",  # retention and review still rest on sources dated 2024-09-13 and 2025-12-05
    ]


def test_stale_badge(catalog: Catalog) -> None:
    later = TODAY + timedelta(days=181)
    assert ids(derive_badges(facts_for(catalog, "openai.api", today=later))) == [
        "api-channel",
        "training-opt-in",
        "retention-30d",
        "human-review-flagged",
        "stale",
    ]
    stale = derive_badges(facts_for(catalog, "openai.api", today=later))[-1]
    assert stale.source == str(catalog.main_source("openai.api").url)


def test_model_override_badges(catalog: Catalog) -> None:
    derived = derive_badges(facts_for(catalog, "aws.bedrock", model="anthropic.claude-fable-5-v1:0"))
    assert ids(derived) == ["api-channel", "no-training", "retention-30d", "human-review-flagged"]
    retention = derived[2]
    # The override's first source (B2), not the channel's.
    assert retention.source == str(catalog.sources_of("aws.bedrock")["B2"].url)


# --- sources on badges --------------------------------------------------------------------------


def test_badges_carry_the_source_of_their_fact(catalog: Catalog) -> None:
    sources = catalog.sources_of("openai.api")
    o5 = str(sources["O5"].url)
    assert o5 == "https://developers.openai.com/api/docs/guides/your-data"
    derived = {b.id: b.source for b in derive_badges(facts_for(catalog, "openai.api"))}
    assert derived == {
        "api-channel": o5,
        "training-opt-in": o5,
        "retention-30d": o5,
        "human-review-flagged": o5,
    }

    gemini = {b.id: b.source for b in derive_badges(facts_for(catalog, "google.gemini_api_free"))}
    assert gemini == {
        "api-channel": "https://ai.google.dev/gemini-api/terms",
        "trains-on-data": "https://ai.google.dev/gemini-api/terms",
        "retention-55d": "https://ai.google.dev/gemini-api/docs/usage-policies",
        "human-review": "https://ai.google.dev/gemini-api/terms",
        "stale": "https://ai.google.dev/gemini-api/terms",
    }


def test_every_badge_with_a_source_points_at_one_of_its_channels_sources(catalog: Catalog) -> None:
    for channel in catalog:
        urls = {str(s.url) for s in catalog.sources_of(channel.id).values()}
        for made in derive_badges(facts_for(catalog, channel.id)):
            assert made.source is not None, (channel.id, made.id)
            assert made.source in urls, (channel.id, made.id)
            assert made.source.startswith("https://")
