"""Loading the catalog from the installed package.

What belongs here: reading `policies/catalog/*.yaml` through importlib.resources (so it works
from a wheel, not only from a source tree), validating each file, the cross-file checks
(unique channel ids). Host rules live in `policies.hosts` (re-exported: `host_allowed`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

import yaml
from pydantic import ValidationError

from policies.hosts import host_allowed
from policies.schema import Channel, Kind, ProviderFile, Source

__all__ = ["Catalog", "CatalogError", "host_allowed", "load_catalog", "parse_provider_file"]

# libyaml's parser when PyYAML has it (its wheels do), else PyYAML's own: the same safe constructors,
# so the same documents, in a tenth of the time. Every start-up reads all of the catalog (the CLI's
# check, then the app), and the pure-Python parser took ~0.12 s of CPU each time.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
    """The catalog does not load: a file is malformed or two channels share an id."""


@dataclass(frozen=True)
class Catalog:
    """The validated catalog: providers, channels by id, and each channel's sources."""

    providers: Mapping[str, ProviderFile]
    channels: Mapping[str, Channel]
    _sources: Mapping[str, Mapping[str, Source]] = field(repr=False)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self.channels.values())

    def __len__(self) -> int:
        return len(self.channels)

    def get(self, channel_id: str) -> Channel | None:
        return self.channels.get(channel_id)

    def sources_of(self, channel_id: str) -> Mapping[str, Source]:
        """The sources a channel may cite (those of its provider's file)."""
        return self._sources[channel_id]

    def main_source(self, channel_id: str) -> Source:
        return self._sources[channel_id][self.channels[channel_id].main_source]

    def public_hosts(self) -> tuple[tuple[str, str], ...]:
        """(host pattern, channel id) of every provider API channel: hosts that are never self-hosted."""
        return tuple(
            (host, channel.id) for channel in self for host in channel.api_hosts if channel.kind is Kind.API
        )

    def provider_name(self, provider: str) -> str:
        found = self.providers.get(provider)
        return found.name if found else provider

    @classmethod
    def from_files(cls, files: Mapping[str, ProviderFile]) -> Catalog:
        channels: dict[str, Channel] = {}
        sources: dict[str, Mapping[str, Source]] = {}
        for file in files.values():
            for channel in file.channels:
                if channel.id in channels:
                    raise CatalogError(f"channel id {channel.id} is defined twice")
                channels[channel.id] = channel
                sources[channel.id] = MappingProxyType(dict(file.sources))
        return cls(
            providers=MappingProxyType(dict(files)),
            channels=MappingProxyType(dict(sorted(channels.items()))),
            _sources=MappingProxyType(sources),
        )


def parse_provider_file(name: str, text: str) -> ProviderFile:
    try:
        return ProviderFile.model_validate(yaml.load(text, Loader=_LOADER))  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise CatalogError(f"catalog file {name}: {' '.join(first[:3])}") from exc


def load_catalog() -> Catalog:
    """Load and validate every catalog file shipped with the `policies` package."""
    files: dict[str, ProviderFile] = {}
    root = resources.files("policies").joinpath("catalog")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        parsed = parse_provider_file(entry.name, entry.read_text(encoding="utf-8"))
        if entry.name != f"{parsed.provider}.yaml":
            raise CatalogError(f"catalog file {entry.name} holds provider {parsed.provider!r}")
        files[parsed.provider] = parsed
    if not files:
        raise CatalogError("the catalog is empty: no policies/catalog/*.yaml in the installed package")
    return Catalog.from_files(files)
