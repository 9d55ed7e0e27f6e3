"""The catalog: loading from the installed package, per-file validation, cross-file checks, hosts.

DESIGN.md, section Catalog: one file per provider, one entry per channel; every fact carries the
ids of its sources; every source has a URL; consumer channels are catalogued but never routable.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import policies
from policies.catalog import Catalog, CatalogError, host_allowed, load_catalog, parse_provider_file
from policies.schema import (
    AttestationFact,
    Channel,
    HumanReview,
    Kind,
    ProviderFile,
    Region,
    RetentionQualifier,
    TrainingDefault,
    ZdrAvailability,
)

# The channels the issues list, by hand (29 in catalog v1, 45 in v2: issue 12).
EXPECTED_CHANNELS = {
    "openai.chatgpt",
    "openai.chatgpt_business",
    "openai.api",
    "anthropic.claude_consumer",
    "anthropic.api",
    "google.gemini_app",
    "google.gemini_api_free",
    "google.gemini_api_paid",
    "google.vertex_ai",
    "mistral.le_chat",
    "mistral.api_free",
    "mistral.api_paid",
    "meta.meta_ai",
    "meta.llama_api",
    "microsoft.azure_openai",
    "aws.bedrock",
    "groq.api",
    "together.api",
    "fireworks.api",
    "deepseek.app",
    "deepseek.api",
    "xai.api",
    "cohere.api",
    "perplexity.api",
    "openrouter.api",
    "ollama.cloud",
    "self_hosted.vllm",
    "self_hosted.ollama",
    "self_hosted.openai_compatible",
    # catalog v2 (issue 12)
    "github.copilot_individual",
    "github.copilot_business",
    "github.models",
    "anthropic.claude_team",
    "mistral.le_chat_business",
    "xai.grok_app",
    "perplexity.app",
    "microsoft.copilot",
    "microsoft.m365_copilot",
    "cohere.trial",
    "deepinfra.api",
    "huggingface.inference_providers",
    "nebius.api",
    "sambanova.api",
    "cloudflare.workers_ai",
    "cerebras.api",
}

CONSUMER_CHANNELS = {
    "openai.chatgpt",
    "openai.chatgpt_business",
    "anthropic.claude_consumer",
    "google.gemini_app",
    "mistral.le_chat",
    "meta.meta_ai",
    "deepseek.app",
    "github.copilot_individual",
    "github.copilot_business",
    "anthropic.claude_team",
    "mistral.le_chat_business",
    "xai.grok_app",
    "perplexity.app",
    "microsoft.copilot",
    "microsoft.m365_copilot",
}
SELF_HOSTED_CHANNELS = {"self_hosted.vllm", "self_hosted.ollama", "self_hosted.openai_compatible"}

EXPECTED_PROVIDER_FILES = {
    "anthropic.yaml",
    "aws.yaml",
    "cohere.yaml",
    "deepseek.yaml",
    "fireworks.yaml",
    "google.yaml",
    "groq.yaml",
    "meta.yaml",
    "microsoft.yaml",
    "mistral.yaml",
    "ollama.yaml",
    "openai.yaml",
    "openrouter.yaml",
    "perplexity.yaml",
    "self_hosted.yaml",
    "together.yaml",
    "xai.yaml",
    "github.yaml",
    "deepinfra.yaml",
    "huggingface.yaml",
    "nebius.yaml",
    "sambanova.yaml",
    "cloudflare.yaml",
    "cerebras.yaml",
}


def _package_catalog_files() -> dict[str, str]:
    root = resources.files("policies").joinpath("catalog")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in root.iterdir()
        if entry.name.endswith(".yaml")
    }


# --- loading ----------------------------------------------------------------------------------


def test_catalog_loads_every_channel_the_issue_lists(catalog: Catalog) -> None:
    assert set(catalog.channels) == EXPECTED_CHANNELS
    assert len(catalog) == 45
    assert [c.id for c in catalog] == sorted(EXPECTED_CHANNELS)


def test_catalog_is_read_from_the_installed_policies_package(catalog: Catalog) -> None:
    root = resources.files("policies").joinpath("catalog")
    # The resource directory is the one next to the imported package, not some copy in the cwd.
    assert Path(str(root)).resolve() == (Path(policies.__file__).parent / "catalog").resolve()
    files = _package_catalog_files()
    assert set(files) == EXPECTED_PROVIDER_FILES
    assert {f"{p}.yaml" for p in catalog.providers} == set(files)
    for name, text in files.items():
        parsed = parse_provider_file(name, text)
        assert catalog.providers[parsed.provider] == parsed
        for channel in parsed.channels:
            assert catalog.channels[channel.id] == channel


def test_catalog_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert set(load_catalog().channels) == EXPECTED_CHANNELS


def test_every_file_validates_and_holds_its_own_provider() -> None:
    for name, text in _package_catalog_files().items():
        parsed = ProviderFile.model_validate(yaml.safe_load(text))
        assert name == f"{parsed.provider}.yaml"
        assert all(c.provider == parsed.provider for c in parsed.channels)
        assert all(c.id.startswith(parsed.provider + ".") for c in parsed.channels)


def test_channel_ids_are_unique_across_files() -> None:
    ids = [
        c.id
        for text in _package_catalog_files().values()
        for c in ProviderFile.model_validate(yaml.safe_load(text)).channels
    ]
    assert len(ids) == len(set(ids)) == 45


def test_a_channel_defined_twice_is_refused(catalog: Catalog) -> None:
    openai = catalog.providers["openai"]
    clash = openai.model_copy(update={"provider": "openai_copy"})
    with pytest.raises(CatalogError, match=r"channel id openai\.chatgpt is defined twice"):
        Catalog.from_files({"openai": openai, "openai_copy": clash})


def test_channel_kinds(catalog: Catalog) -> None:
    for channel in catalog:
        if channel.id in CONSUMER_CHANNELS:
            assert channel.kind is Kind.CONSUMER, channel.id
        elif channel.id in SELF_HOSTED_CHANNELS:
            assert channel.kind is Kind.SELF_HOSTED, channel.id
        else:
            assert channel.kind is Kind.API, channel.id


@pytest.mark.parametrize(
    ("channel_id", "product"),
    [
        ("openai.chatgpt", "ChatGPT"),
        ("anthropic.claude_consumer", "Claude"),
        ("google.gemini_app", "Gemini app"),
        ("meta.meta_ai", "Meta AI"),
        ("mistral.le_chat", "Le Chat"),
        ("deepseek.app", "DeepSeek app"),
    ],
)
def test_consumer_products_are_catalogued_as_consumer(
    catalog: Catalog, channel_id: str, product: str
) -> None:
    channel = catalog.channels[channel_id]
    assert channel.kind is Kind.CONSUMER
    assert product in channel.name


def test_every_api_channel_has_an_api_host(catalog: Catalog) -> None:
    api = [c for c in catalog if c.kind is Kind.API]
    assert len(api) == 45 - len(CONSUMER_CHANNELS) - len(SELF_HOSTED_CHANNELS)
    for channel in api:
        assert channel.api_hosts, channel.id
        assert all(h and h == h.strip().lower() and "/" not in h for h in channel.api_hosts), channel.id


def test_only_channels_sharing_a_host_with_a_free_plan_require_a_paid_tier_attestation(
    catalog: Catalog,
) -> None:
    requiring = {c.id: list(c.requires_attestation) for c in catalog if c.requires_attestation}
    assert requiring == {
        "google.gemini_api_paid": [AttestationFact.PAID_TIER],
        "mistral.api_paid": [AttestationFact.PAID_TIER],
        "cohere.api": [AttestationFact.PAID_TIER],  # the host also serves trial keys (cohere.trial)
    }
    assert set(catalog.channels["cohere.trial"].api_hosts) == set(catalog.channels["cohere.api"].api_hosts)
    free_hosts = set(catalog.channels["google.gemini_api_free"].api_hosts)
    assert free_hosts == set(catalog.channels["google.gemini_api_paid"].api_hosts)
    assert set(catalog.channels["mistral.api_free"].api_hosts) == set(
        catalog.channels["mistral.api_paid"].api_hosts
    )


def test_the_routers(catalog: Catalog) -> None:
    assert {c.id for c in catalog if c.router} == {"openrouter.api", "huggingface.inference_providers"}


# --- sources ----------------------------------------------------------------------------------


def _known_facts(channel: Channel) -> list[tuple[str, list[str]]]:
    known = []
    if channel.training.default is not TrainingDefault.UNKNOWN:
        known.append(("training", channel.training.src))
    if channel.retention.qualifier is not RetentionQualifier.UNKNOWN:
        known.append(("retention", channel.retention.src))
    if channel.zdr.availability is not ZdrAvailability.UNKNOWN:
        known.append(("zdr", channel.zdr.src))
    if channel.human_review.value is not HumanReview.UNKNOWN:
        known.append(("human_review", channel.human_review.src))
    if any(r is not Region.UNKNOWN for r in [*channel.regions.processing, *channel.regions.storage]):
        known.append(("regions", channel.regions.src))
    for override in channel.model_overrides:
        known.append((f"model_override {override.models}", override.src))
    for control in channel.training.controls:
        known.append((f"control {control.name}", control.src))
    return known


def test_every_known_fact_cites_a_defined_source(catalog: Catalog) -> None:
    checked = 0
    for channel in catalog:
        sources = catalog.sources_of(channel.id)
        assert channel.main_source in sources, channel.id
        for label, src in _known_facts(channel):
            assert src, f"{channel.id}: {label} is known but cites no source"
            for sid in src:
                assert sid in sources, f"{channel.id}: {label} cites undefined source {sid}"
            checked += 1
        assert channel.cited_sources() <= set(sources), channel.id
    assert checked > 100


def test_every_source_has_an_https_url_and_a_retrieval_date(catalog: Catalog) -> None:
    for provider in catalog.providers.values():
        assert provider.sources, provider.provider
        for sid, source in provider.sources.items():
            assert source.url.scheme == "https", f"{provider.provider}/{sid}: {source.url}"
            assert source.url.host, f"{provider.provider}/{sid}"
            # gathered for the catalog (2026-11-29) or for its v2 (2026-12-06)
            assert source.retrieved.isoformat() in ("2026-11-29", "2026-12-06"), f"{provider.provider}/{sid}"


def test_every_defined_source_is_cited(catalog: Catalog) -> None:
    """A source is cited by a fact's `src`, or in the text of a channel as `[ID]` (notes, incentives)."""
    for provider in catalog.providers.values():
        cited: set[str] = set()
        text = ""
        for channel in provider.channels:
            cited |= channel.cited_sources()
            text += json.dumps(channel.model_dump(mode="json"), ensure_ascii=False)
        for sid in provider.sources:
            assert sid in cited or f"[{sid}]" in text, f"{provider.provider}: source {sid} is never cited"


def test_citations_in_notes_name_defined_sources(catalog: Catalog) -> None:
    for provider in catalog.providers.values():
        for channel in provider.channels:
            text = json.dumps(channel.model_dump(mode="json"), ensure_ascii=False)
            for sid in re.findall(r"\[([A-Z]{1,2}\d{1,2})\]", text):
                assert sid in provider.sources, f"{channel.id} cites [{sid}], which its file does not define"


# --- schema: what a file may not say -------------------------------------------------------------


def _valid_file() -> dict[str, Any]:
    return {
        "provider": "acme",
        "name": "Acme",
        "sources": {
            "A1": {
                "url": "https://acme.example/privacy",
                "publisher": "provider_official",
                "retrieved": "2026-11-29",
            }
        },
        "channels": [
            {
                "id": "acme.api",
                "provider": "acme",
                "name": "Acme API",
                "kind": "api",
                "api_hosts": ["api.acme.example"],
                "training": {"default": "never", "src": ["A1"]},
                "retention": {"days": 30, "qualifier": "up_to", "src": ["A1"]},
                "zdr": {"availability": "unknown"},
                "human_review": {"value": "unknown"},
                "regions": {"processing": ["unknown"], "storage": ["unknown"]},
                "main_source": "A1",
                "as_of": "2026-11-29",
                "confidence": "high",
            }
        ],
    }


def _channel(data: dict[str, Any]) -> dict[str, Any]:
    channel: dict[str, Any] = data["channels"][0]
    return channel


def test_the_minimal_file_is_valid() -> None:
    parsed = ProviderFile.model_validate(_valid_file())
    assert parsed.channels[0].id == "acme.api"
    # The same through YAML and the loader's parser.
    assert parse_provider_file("acme.yaml", yaml.safe_dump(_valid_file())) == parsed


@pytest.mark.parametrize("where", ["file", "channel", "training", "source"])
def test_schema_rejects_unknown_fields(where: str) -> None:
    data = _valid_file()
    target = {
        "file": data,
        "channel": _channel(data),
        "training": _channel(data)["training"],
        "source": data["sources"]["A1"],
    }[where]
    target["trains_on_data"] = False
    with pytest.raises(ValidationError, match="trains_on_data"):
        ProviderFile.model_validate(data)
    with pytest.raises(CatalogError, match=r"catalog file acme\.yaml"):
        parse_provider_file("acme.yaml", yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("fact", "known_value"),
    [
        ("training", {"default": "never"}),
        ("retention", {"days": 30, "qualifier": "up_to"}),
        ("zdr", {"availability": "self_serve"}),
        ("human_review", {"value": "none"}),
        ("regions", {"processing": ["eu"], "storage": ["unknown"]}),
    ],
)
def test_schema_rejects_a_known_fact_without_a_source(fact: str, known_value: dict[str, Any]) -> None:
    data = _valid_file()
    _channel(data)[fact] = {**known_value, "src": []}
    with pytest.raises(ValidationError, match=f"fact {fact} is not unknown, so it must cite a source"):
        ProviderFile.model_validate(data)
    # An unknown fact may cite nothing: the minimal file has three of them.
    ok = _valid_file()
    ok_channel = _channel(ok)
    assert ok_channel["zdr"] == {"availability": "unknown"}
    ProviderFile.model_validate(ok)


def test_schema_rejects_a_citation_of_an_undefined_source() -> None:
    data = _valid_file()
    _channel(data)["training"]["src"] = ["A1", "Z9"]
    with pytest.raises(ValidationError, match=r"cites undefined sources \['Z9'\]"):
        ProviderFile.model_validate(data)
    data = _valid_file()
    _channel(data)["main_source"] = "Q7"
    with pytest.raises(ValidationError, match="Q7"):
        ProviderFile.model_validate(data)


def test_schema_rejects_an_api_channel_without_hosts() -> None:
    data = _valid_file()
    _channel(data)["api_hosts"] = []
    with pytest.raises(ValidationError, match="must list at least one api_host"):
        ProviderFile.model_validate(data)
    # A self-hosted channel needs none.
    _channel(data)["kind"] = "self_hosted"
    ProviderFile.model_validate(data)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("id",), "other.api", "must start with its provider"),
        (("id",), "acme", "String should match pattern"),
        (("kind",), "website", "Input should be"),
        (("training", "default"), "sometimes", "Input should be"),
        (("retention",), {"qualifier": "up_to", "src": ["A1"]}, "needs a day count"),
        (("retention",), {"days": 3, "qualifier": "none", "src": ["A1"]}, "cannot carry a day count"),
        (("retention",), {"days": -1, "qualifier": "up_to", "src": ["A1"]}, "greater than or equal to 0"),
        (("confidence",), "certain", "Input should be"),
    ],
)
def test_schema_rejects_malformed_channels(path: tuple[str, ...], value: Any, message: str) -> None:
    data = _valid_file()
    target = _channel(data)
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError, match=message):
        ProviderFile.model_validate(data)


def test_schema_rejects_a_channel_of_another_provider() -> None:
    data = _valid_file()
    _channel(data).update(id="other.api", provider="other")
    with pytest.raises(ValidationError, match=r"other\.api: provider must be 'acme'"):
        ProviderFile.model_validate(data)


def test_schema_rejects_a_source_without_a_url() -> None:
    data = _valid_file()
    del data["sources"]["A1"]["url"]
    with pytest.raises(ValidationError, match="url"):
        ProviderFile.model_validate(data)
    data = _valid_file()
    data["sources"]["A1"]["url"] = "not a url"
    with pytest.raises(ValidationError, match="url"):
        ProviderFile.model_validate(data)


def test_schema_rejects_a_consumer_channel_that_requires_attestation() -> None:
    data = _valid_file()
    _channel(data).update(kind="consumer", requires_attestation=["paid_tier"])
    with pytest.raises(ValidationError, match="consumer channels are never routable"):
        ProviderFile.model_validate(data)


def test_schema_models_are_frozen(catalog: Catalog) -> None:
    channel = catalog.channels["openai.api"]
    with pytest.raises(ValidationError):
        channel.kind = Kind.CONSUMER  # type: ignore[misc]
    assert copy.deepcopy(channel) == channel


def test_malformed_yaml_is_a_catalog_error_naming_the_file() -> None:
    with pytest.raises(CatalogError, match=r"catalog file broken\.yaml"):
        parse_provider_file("broken.yaml", "provider: [unclosed\n")


def test_every_catalog_file_reads_as_pyyaml_own_safe_loader_reads_it() -> None:
    # The catalog is read with libyaml's parser when PyYAML has it (faster start-up); the documents
    # must be those of the pure-Python safe loader, file by file.
    root = resources.files("policies").joinpath("catalog")
    texts = {e.name: e.read_text(encoding="utf-8") for e in root.iterdir() if e.name.endswith(".yaml")}
    assert texts
    for name, text in texts.items():
        expected = ProviderFile.model_validate(yaml.load(text, Loader=yaml.SafeLoader))
        assert parse_provider_file(name, text) == expected, name


# --- hosts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel_id", "host", "allowed"),
    [
        ("microsoft.azure_openai", "x.openai.azure.com", True),
        ("microsoft.azure_openai", "my-resource.openai.azure.com", True),
        ("microsoft.azure_openai", "X.OpenAI.Azure.com.", True),
        ("microsoft.azure_openai", "evil.com", False),
        ("microsoft.azure_openai", "x.openai.azure.com.evil.com", False),
        ("microsoft.azure_openai", "api.openai.com", False),
        ("microsoft.azure_openai", "", False),
        ("microsoft.azure_openai", None, False),
        ("openai.api", "api.openai.com", True),
        ("openai.api", "eu.api.openai.com", True),
        ("openai.api", "api.openai.com.evil.com", False),
        ("openai.api", "evilapi.openai.com", False),
        ("openai.api", "openrouter.ai", False),
        ("google.vertex_ai", "europe-west4-aiplatform.googleapis.com", True),
        ("google.vertex_ai", "aiplatform.googleapis.com", True),
        ("google.vertex_ai", "generativelanguage.googleapis.com", False),
        ("google.gemini_api_free", "generativelanguage.googleapis.com", True),
        ("aws.bedrock", "bedrock-runtime.eu-central-1.amazonaws.com", True),
        ("aws.bedrock", "bedrock-mantle.us-east-1.api.aws", True),
        ("aws.bedrock", "s3.amazonaws.com", False),
        ("anthropic.api", "api.anthropic.com", True),
        ("anthropic.api", "claude.ai", False),
        ("self_hosted.vllm", "127.0.0.1", True),
        ("self_hosted.vllm", "gpu-box.internal", True),
        ("self_hosted.vllm", "evil.com", False),
        ("self_hosted.vllm", "api.deepseek.com", False),
        ("self_hosted.vllm", "10.1.2.3", True),
        ("self_hosted.vllm", "169.254.169.254", False),
        ("self_hosted.ollama", "localhost", True),
        ("self_hosted.openai_compatible", None, True),
        ("openai.chatgpt", "chatgpt.com", False),
        ("openai.chatgpt", "api.openai.com", False),
        ("anthropic.claude_consumer", "api.anthropic.com", False),
        ("google.gemini_app", "gemini.google.com", False),
    ],
)
def test_host_allowed(catalog: Catalog, channel_id: str, host: str | None, allowed: bool) -> None:
    assert host_allowed(catalog.channels[channel_id], host) is allowed


def test_no_consumer_channel_accepts_any_host(catalog: Catalog) -> None:
    hosts = {h for c in catalog for h in c.api_hosts} | {"chatgpt.com", "claude.ai", "localhost"}
    for channel in catalog:
        if channel.kind is Kind.CONSUMER:
            assert not any(host_allowed(channel, h) for h in hosts), channel.id
