"""Which litellm model prefixes exist, which catalog provider each reaches, and over which wire.

What belongs here: the table that ties a deployment's `model` prefix (litellm's provider
naming) to the catalog provider whose facts must describe it, the official base URL when the
prefix implies one, and whether the OpenAI-wire pass-through can serve it. A deployment whose
prefix and catalog provider disagree is refused at start-up: otherwise the badges would describe
one company while the data went to another. And which providers also speak OpenAI's Responses API.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    providers: frozenset[str]
    default_base: str | None
    openai_wire: bool
    needs_api_base: bool = False
    # The api_base Sluice hands litellm when the config gives none. Explicit, so that litellm's own
    # environment overrides (ANTHROPIC_API_BASE, GEMINI_API_BASE, ...) cannot send data elsewhere.
    litellm_base: str | None = None


def _r(
    providers: str,
    base: str | None,
    openai_wire: bool,
    needs_api_base: bool = False,
    litellm_base: str | None = None,
) -> Route:
    return Route(frozenset(providers.split()), base, openai_wire, needs_api_base, litellm_base)


# prefix -> route. `openai` with an api_base may reach any OpenAI-compatible host; the host check
# against the channel's api_hosts then decides (self-hosted channels: the operator's own hosts only).
ROUTES: dict[str, Route] = {
    "openai": _r(
        "openai groq together fireworks deepseek xai perplexity openrouter meta mistral ollama self_hosted"
        " deepinfra huggingface nebius sambanova cerebras cloudflare github",
        "https://api.openai.com/v1",
        True,
    ),
    "hosted_vllm": _r("self_hosted", None, True, needs_api_base=True),
    "ollama_chat": _r("self_hosted ollama", "http://127.0.0.1:11434", False),
    "ollama": _r("self_hosted ollama", "http://127.0.0.1:11434", False),
    "anthropic": _r(
        "anthropic", "https://api.anthropic.com", False, litellm_base="https://api.anthropic.com"
    ),
    "gemini": _r(
        "google",
        "https://generativelanguage.googleapis.com",
        False,
        litellm_base="https://generativelanguage.googleapis.com/v1beta",
    ),
    "vertex_ai": _r("google", None, False),
    "bedrock": _r("aws", None, False),
    "azure": _r("microsoft", None, False, needs_api_base=True),
    "mistral": _r("mistral", "https://api.mistral.ai/v1", False, litellm_base="https://api.mistral.ai/v1"),
    "groq": _r("groq", "https://api.groq.com/openai/v1", True),
    "together_ai": _r("together", "https://api.together.xyz/v1", True),
    "fireworks_ai": _r("fireworks", "https://api.fireworks.ai/inference/v1", True),
    "deepseek": _r("deepseek", "https://api.deepseek.com/v1", True),
    "xai": _r("xai", "https://api.x.ai/v1", True),
    "perplexity": _r("perplexity", "https://api.perplexity.ai", True),
    "openrouter": _r("openrouter", "https://openrouter.ai/api/v1", True),
    "cohere_chat": _r("cohere", "https://api.cohere.ai", False),
    "cohere": _r("cohere", "https://api.cohere.ai", False),
    "meta_llama": _r("meta", "https://api.llama.com/compat/v1", True),
}


# Catalog providers whose OpenAI-wire API also serves the Responses API (`POST /responses`), so a
# Responses request to them is passed through; to every other deployment it goes through
# litellm's Responses bridge. Self-hosted servers: vLLM, Ollama and LM Studio serve it.
RESPONSES_PROVIDERS = frozenset({"openai", "xai", "openrouter", "groq", "self_hosted"})


def speaks_responses(prefix: str, provider: str) -> bool:
    """Whether a deployment (its model prefix, its catalog provider) takes Responses requests as they are."""
    return ROUTES[prefix].openai_wire and provider in RESPONSES_PROVIDERS


def split_model(model: str) -> tuple[str, str]:
    """`"anthropic/claude-sonnet-4-5"` -> `("anthropic", "claude-sonnet-4-5")`."""
    prefix, sep, rest = model.partition("/")
    if not sep or not rest:
        return "", model
    return prefix, rest
