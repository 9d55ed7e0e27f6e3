"""What `sluice init` writes: a starter config for the providers whose keys are set.

What belongs here: the offers (a provider's key variable, as its own docs name it, and a starter
model in litellm naming), judging each offer's channels with the policy engine (which channel
complies with the default policy as the catalog stands, and which would once the operator attests
a fact about their account), and rendering the commented YAML. No I/O and no environment: the
CLI (`gateway.cli.init`) says which keys are set and writes the file.

Providers whose endpoint needs more than a key (Azure OpenAI, Bedrock, Vertex AI) are not offered:
their deployments name an endpoint, region or project the environment cannot tell.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations
from urllib.parse import urlsplit

from gateway.upstream.providers import ROUTES, split_model
from policies.catalog import Catalog, host_allowed
from policies.engine import Decision, evaluate
from policies.facts import Attestation, attestation_problem, effective_facts
from policies.policy import BASELINE, Policy
from policies.schema import AttestationFact, Channel, Kind

WIDTH = 100


@dataclass(frozen=True)
class Offer:
    env: str  # the key variable
    provider: str  # catalog provider
    models: tuple[tuple[str, str], ...]  # (alias clients send, litellm model)


OFFERS: tuple[Offer, ...] = (
    Offer(
        "OPENAI_API_KEY",
        "openai",
        (("gpt-4o-mini", "openai/gpt-4o-mini"), ("text-embedding-3-small", "openai/text-embedding-3-small")),
    ),
    Offer("ANTHROPIC_API_KEY", "anthropic", (("claude-sonnet", "anthropic/claude-sonnet-4-5"),)),
    Offer("GEMINI_API_KEY", "google", (("gemini-flash", "gemini/gemini-2.5-flash"),)),
    Offer("MISTRAL_API_KEY", "mistral", (("mistral-large", "mistral/mistral-large-latest"),)),
    Offer(
        "TOGETHER_API_KEY",
        "together",
        (("llama-70b", "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"),),
    ),
    Offer(
        "FIREWORKS_API_KEY",
        "fireworks",
        (("llama-70b-fireworks", "fireworks_ai/accounts/fireworks/models/llama-v3p3-70b-instruct"),),
    ),
    Offer("GROQ_API_KEY", "groq", (("gpt-oss-120b", "groq/openai/gpt-oss-120b"),)),
    Offer("XAI_API_KEY", "xai", (("grok", "xai/grok-4.3"),)),
    Offer("PERPLEXITY_API_KEY", "perplexity", (("sonar", "perplexity/sonar"),)),
    Offer("DEEPSEEK_API_KEY", "deepseek", (("deepseek-chat", "deepseek/deepseek-chat"),)),
    Offer("COHERE_API_KEY", "cohere", (("command-a", "cohere_chat/command-a-03-2025"),)),
    Offer("LLAMA_API_KEY", "meta", (("llama-70b-meta", "meta_llama/Llama-3.3-70B-Instruct"),)),
    Offer(
        "OPENROUTER_API_KEY",
        "openrouter",
        (("llama-70b-openrouter", "openrouter/meta-llama/llama-3.3-70b-instruct"),),
    ),
)

# What the operator confirms by attesting a fact, and a placeholder for the evidence.
ATTESTS: dict[AttestationFact, tuple[str, str]] = {
    AttestationFact.PAID_TIER: (
        "this key's account is on the paid tier, with billing enabled, not the free tier",
        "billing enabled on <project or account id>",
    ),
    AttestationFact.TRAINING_OPTED_OUT: (
        "you turned training off for this account in the provider's settings",
        "training off in <settings page>, <date>",
    ),
    AttestationFact.ZERO_DATA_RETENTION: (
        "you have a zero-data-retention agreement with the provider",
        "ZDR agreement <date>, <org id>",
    ),
    AttestationFact.NO_HUMAN_REVIEW: (
        "your agreement excludes human review of your data",
        "<agreement>, <date>",
    ),
    AttestationFact.EU_RESIDENCY: (
        "your account processes and stores data in the EU only",
        "<EU region setting>, <project id>",
    ),
}

SELF_HOSTED = (
    "llama-local",
    "self_hosted",
    "self_hosted.ollama",
    "openai/llama3.1:8b",
    "http://127.0.0.1:11434/v1",
)


@dataclass(frozen=True)
class Verdict:
    """One channel for one model: complies as is (`needs == ()`), once `needs` are attested, or never
    (`needs is None`); `decision` is the engine's, without attestations."""

    channel: Channel
    decision: Decision
    needs: tuple[AttestationFact, ...] | None

    @property
    def complies(self) -> bool:
        return self.needs == ()


def _host(model: str) -> str | None:
    route = ROUTES.get(split_model(model)[0])
    return urlsplit(route.default_base).hostname if route and route.default_base else None


def _decide(
    catalog: Catalog,
    channel: Channel,
    model: str,
    policy: Sequence[Policy],
    today: date,
    attested: Iterable[AttestationFact] = (),
) -> Decision:
    attestations = [Attestation(channel.provider, fact, "sluice init", channel.id) for fact in attested]
    facts = effective_facts(
        channel,
        model=split_model(model)[1],
        sources=catalog.sources_of(channel.id),
        today=today,
        host=_host(model),
        attestations=attestations,
    )
    return evaluate(policy, facts)


def _attestable(channel: Channel) -> list[AttestationFact]:
    probe = "sluice init"
    return [
        fact
        for fact in AttestationFact
        if attestation_problem(channel, Attestation(channel.provider, fact, probe, channel.id)) is None
    ]


def judge(
    catalog: Catalog, provider: str, model: str, policy: Sequence[Policy], today: date
) -> list[Verdict]:
    """Every API channel of `provider` that `model`'s official host serves, best first: compliant ones,
    then those needing the fewest attestations, then the rest."""
    host = _host(model)
    verdicts = []
    for channel in catalog:
        if channel.provider != provider or channel.kind is not Kind.API or not host_allowed(channel, host):
            continue
        decision = _decide(catalog, channel, model, policy, today)
        needs: tuple[AttestationFact, ...] | None = () if decision.allowed else None
        if needs is None:
            facts = _attestable(channel)
            for size in range(1, len(facts) + 1):
                found = next(
                    (
                        c
                        for c in combinations(facts, size)
                        if _decide(catalog, channel, model, policy, today, c).allowed
                    ),
                    None,
                )
                if found is not None:
                    needs = found
                    break
        verdicts.append(Verdict(channel, decision, needs))
    # Among channels needing as many attestations, the one whose catalog entry names exactly those
    # (a paid tier that shares its host with a free one) before one that needs an account setting.
    return sorted(
        verdicts,
        key=lambda v: (
            v.needs is None,
            len(v.needs or ()),
            not set(v.needs or ()) <= set(v.channel.requires_attestation),
            v.channel.id,
        ),
    )


def _scalar(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./\-]*", value) else json.dumps(value)


def _comment(text: str, indent: str = "  ", lead: str = "# ", hang: str = "  ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent + lead, subsequent_indent=indent + lead + hang)


def _deployment(
    provider: str, channel: str, model: str, *, env: str | None = None, api_base: str | None = None
) -> str:
    fields = {"provider": provider, "channel": channel, "model": model}
    if env:
        fields["api_key_env"] = env
    if api_base:
        fields["api_base"] = api_base
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in fields.items()) + "}"


def _model_block(alias: str, deployment: str, *, commented: bool) -> list[str]:
    lines = [f"- name: {_scalar(alias)}", "  deployments:", f"    - {deployment}"]
    return [("  # " if commented else "  ") + line for line in lines]


@dataclass(frozen=True)
class Starter:
    """The rendered file and what the CLI tells the operator about it."""

    text: str
    active: tuple[str, ...]  # aliases written uncommented
    pending: tuple[str, ...]  # "alias: attest paid_tier on google.gemini_api_paid"
    refused: tuple[str, ...]  # "alias (ENV): why no channel of the provider complies"


def _why(decision: Decision) -> str:
    return "; ".join(decision.reasons()) or "complies"


def _meaning(facts: Iterable[AttestationFact]) -> str:
    return "; ".join(f"{f}: {ATTESTS[f][0]}" for f in facts)


@dataclass
class _Draft:
    """The parts of the file as they are chosen, model by model."""

    catalog: Catalog
    policy: Sequence[Policy]
    names: str
    today: date
    models: list[str] = field(default_factory=list)
    attestations: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def add(self, offer: Offer, alias: str, model: str) -> None:
        verdicts = judge(self.catalog, offer.provider, model, self.policy, self.today)
        for other in verdicts[1:]:
            unless = ""
            if other.needs:
                unless = (
                    f" (it complies once you attest {_meaning(other.needs)}; use it if your key is on it)"
                )
            self.models += _comment(f"Not {other.channel.id}: {_why(other.decision)}{unless}.")
        best = verdicts[0] if verdicts else None
        if best is None or best.needs is None:
            why = _why(best.decision) if best else "no API channel of this provider in the catalog"
            self.models += _comment(f"{alias} is not written: no channel complies with {self.names}: {why}.")
            self.refused.append(f"{alias} ({offer.env}): {why}")
            return
        deployment = _deployment(offer.provider, best.channel.id, model, env=offer.env)
        if best.complies:
            passed = "; ".join(c.reason for c in best.decision.checks if c.policy != BASELINE)
            self.models += _comment(f"{best.channel.id} complies with {self.names}: {passed}.")
            self.models += _model_block(alias, deployment, commented=False)
            self.active.append(alias)
            return
        needs = best.needs
        self.models += _comment(
            f"{best.channel.id} complies with {self.names} only once you attest {_meaning(needs)}. Without "
            f"it: {_why(best.decision)}. If that is true of your account, uncomment this model and its "
            "line under `attestations:`."
        )
        self.models += _model_block(alias, deployment, commented=True)
        self.pending.append(f"{alias}: attest {', '.join(needs)} on {best.channel.id}")
        for fact in needs:
            line = (
                f"  # {{provider: {offer.provider}, channel: {best.channel.id}, fact: {fact}, "
                f"evidence: {json.dumps(ATTESTS[fact][1])}}},"
            )
            if line not in self.attestations:
                self.attestations.append(line)

    def add_self_hosted(self) -> None:
        """The self-hosted example: commented out unless no provider model is written (a config needs one)."""
        alias, provider, channel_id, model, base = SELF_HOSTED
        channel = self.catalog.get(channel_id)
        assert channel is not None, f"the catalog has no {channel_id}"
        verdict = _decide(self.catalog, channel, model, self.policy, self.today)
        self.models += [""]
        self.models += _comment(
            "Self-hosted: a model you run (Ollama here; for vLLM: channel self_hosted.vllm, model "
            "hosted_vllm/<model>, api_base http://127.0.0.1:8000/v1). 127.0.0.1 is this machine: from the "
            "Docker image use http://host.docker.internal:11434/v1 (docker-compose.yml maps the name) or "
            f"a compose service name. Under {self.names}: {_why(verdict)}."
        )
        if not self.active:
            self.models += _comment(
                "Written because no provider model is: a config needs at least one model."
            )
        deployment = _deployment(provider, channel_id, model, api_base=base)
        self.models += _model_block(alias, deployment, commented=bool(self.active))

    def menu(self, offers: Sequence[Offer]) -> list[str]:
        """One comment line per offer whose key is not set: its channel and how it fares."""
        if not offers:
            return []
        lines = ["", "# Providers whose key is not set here (set one, then run `sluice init --force` again):"]
        for offer in offers:
            verdicts = judge(self.catalog, offer.provider, offer.models[0][1], self.policy, self.today)
            if not verdicts:
                continue
            best = verdicts[0]
            if best.complies:
                state = "complies"
            elif best.needs:
                state = f"complies once you attest {', '.join(best.needs)}"
            else:
                state = "does not comply: " + _why(best.decision)
            lines += _comment(f"{offer.env}: {best.channel.id} {state}", indent="", lead="#   ")
        return lines


def _header(names: Sequence[str], today: date) -> list[str]:
    policy = ", ".join(names)
    return [
        f"# Sluice config written by `sluice init` on {today.isoformat()}, for the provider keys set in",
        "# its environment. Check it with `sluice check --config <this file>`, run it with `sluice serve`.",
        "#",
        *_comment(
            f"Default policy: {policy} (api-channel-only is always on). Each provider is on the channel the "
            "catalog says complies with it (`sluice catalog show <channel>` has the facts and their "
            "sources); a channel that complies only once you attest a fact about your own account is "
            "written commented out, with the reason. Keys are read from the environment at start-up; "
            "a deployment whose key variable is unset is unavailable, not fatal.",
            indent="",
            hang="",
        ),
        "",
        "server:",
        f"  default_policy: [{policy}]  # for keys without a policy of their own",
        "  on_violation: block  # or `reroute`: use the first compliant model of reroute_to",
        "",
        "models:",
    ]


def _tail(attestations: Sequence[str]) -> list[str]:
    return [
        "",
        "# Facts about your own accounts that public sources cannot know; each shows as an `attested`",
        "# badge. Uncomment only what is true for you, with evidence someone can check.",
        "attestations: [",
        *attestations,
        "]",
        "",
        "# Client keys. Simplest: `sluice keys create --name <team>` (kept in the database, printed once).",
        "# Or here, as a hash from the environment: `sluice keys hash <key>` prints its value.",
        "keys: [",
        "  # {name: dev-team, key_hash_env: SLUICE_KEY_DEV, policy: [no-training-only]},",
        "]",
    ]


def render(
    catalog: Catalog,
    *,
    keys_set: Iterable[str],
    policy: Sequence[Policy],
    policy_names: Sequence[str],
    today: date,
) -> Starter:
    """The starter config for the offers whose key variable is in `keys_set`."""
    keys = set(keys_set)
    draft = _Draft(catalog, policy, ", ".join(policy_names), today)
    for offer in OFFERS:
        if offer.env in keys:
            draft.models += ["", *_comment(f"{catalog.provider_name(offer.provider)} ({offer.env} is set).")]
            for alias, model in offer.models:
                draft.add(offer, alias, model)
    draft.add_self_hosted()
    menu = draft.menu([offer for offer in OFFERS if offer.env not in keys])
    lines = [*_header(policy_names, today), *draft.models[1:], *menu, *_tail(draft.attestations)]
    return Starter("\n".join(lines) + "\n", tuple(draft.active), tuple(draft.pending), tuple(draft.refused))
