"""gateway/cli/starter.py: the channel `sluice init` writes for each provider is the policy engine's
choice, and what it writes commented out complies once the operator uncomments it.

On the catalog's own date, so that staleness (180 days, low-confidence entries) cannot change the
choices as the calendar moves. Each rendered file is checked and judged by the gateway's own
code (`check`, `build_deployments`, `PolicyRouter.judge`), as `sluice check` and `sluice serve` would.
"""

from __future__ import annotations

import re
from datetime import date

from gateway.cli.starter import OFFERS, Starter, render
from gateway.config import Config, check, parse_config
from gateway.core.deployments import build_deployments
from gateway.core.routing import PolicyRouter
from gateway.settings import Settings
from policies.catalog import load_catalog
from policies.policy import BUILTIN_POLICIES, resolve

CATALOG_DAY = date(2026, 11, 29)
CATALOG = load_catalog()


def starter(*keys: str, policy: tuple[str, ...] = ("no-training-only",)) -> Starter:
    return render(
        CATALOG,
        keys_set=keys,
        policy=resolve(policy, BUILTIN_POLICIES),
        policy_names=policy,
        today=CATALOG_DAY,
    )


def load(text: str) -> Config:
    config = parse_config(text, origin="starter")
    assert check(config, CATALOG) == []
    return config


def verdicts(config: Config) -> dict[str, bool]:
    """alias -> whether its deployment complies with the config's default policy."""
    router = PolicyRouter(config, build_deployments(config, CATALOG, Settings(), CATALOG_DAY))
    policy = resolve(config.server.default_policy, config.policy_table())
    return {dep.alias: router.judge(policy, dep)[0].allowed for dep in router.all_deployments()}


def uncomment(text: str, *, attestations: bool = True) -> str:
    """What the operator does when a comment says "uncomment this model and its attestation"."""
    text = re.sub(r"^  # (- name: |  deployments:|    - \{)", r"  \1", text, flags=re.MULTILINE)
    if attestations:
        text = re.sub(r"^  # (\{provider: .*fact: )", r"  \1", text, flags=re.MULTILINE)
    return text


def test_gemini_goes_on_the_paid_tier_commented_out_until_it_is_attested() -> None:
    result = starter("GEMINI_API_KEY")
    assert result.active == ()
    assert result.pending == ("gemini-flash: attest paid_tier on google.gemini_api_paid",)
    assert (
        "# Not google.gemini_api_free: Gemini API (free tier): inputs may be used for training" in result.text
    )
    assert "  # {provider: google, channel: google.gemini_api_paid, fact: paid_tier," in result.text
    # As written: only the self-hosted model (a config needs one).
    assert verdicts(load(result.text)) == {"llama-local": True}
    # The model alone does not comply: the paid tier is not attested.
    assert verdicts(load(uncomment(result.text, attestations=False)))["gemini-flash"] is False
    # The model and its attestation, as the comment says: it complies.
    assert verdicts(load(uncomment(result.text)))["gemini-flash"] is True


def test_the_policy_decides_the_choice() -> None:
    plain = starter("OPENAI_API_KEY")
    assert plain.active == ("gpt-4o-mini", "text-embedding-3-small")
    strict = starter("OPENAI_API_KEY", policy=("zero-retention",))
    assert strict.active == ()
    assert strict.pending == (
        "gpt-4o-mini: attest zero_data_retention on openai.api",
        "text-embedding-3-small: attest zero_data_retention on openai.api",
    )
    assert "default_policy: [zero-retention]" in strict.text
    assert verdicts(load(uncomment(strict.text))) == {
        "gpt-4o-mini": True,
        "text-embedding-3-small": True,
        "llama-local": True,
    }
    local = starter("OPENAI_API_KEY", "ANTHROPIC_API_KEY", policy=("self-hosted-only",))
    assert local.active == ()
    assert [line.split(" ")[0] for line in local.refused] == [
        "gpt-4o-mini",
        "text-embedding-3-small",
        "claude-sonnet",
    ]
    assert verdicts(load(local.text)) == {"llama-local": True}


def test_a_provider_nothing_complies_with_is_explained_not_written() -> None:
    result = starter("DEEPSEEK_API_KEY")
    assert result.active == () and result.pending == ()
    [refused] = result.refused
    assert refused.startswith("deepseek-chat (DEEPSEEK_API_KEY): DeepSeek API: training policy unknown")
    assert "# deepseek-chat is not written: no channel complies with no-training-only" in result.text
    assert "deepseek/deepseek-chat" not in result.text


def test_every_offer_with_every_key_checks_and_complies_once_uncommented() -> None:
    result = starter(*(offer.env for offer in OFFERS))
    written = verdicts(load(result.text))
    assert set(written) == set(result.active)
    assert all(written.values())
    assert "llama-local" not in written, "the self-hosted example stays commented out"
    everything = verdicts(load(uncomment(result.text)))
    pending = {line.split(":")[0] for line in result.pending}
    assert set(everything) == set(result.active) | pending | {"llama-local"}
    assert all(everything.values()), everything
