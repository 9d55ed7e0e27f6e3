"""Which hosts a channel may be reached on: a provider's official API hosts, or the operator's own.

What belongs here: matching a host against a channel's `api_hosts`, and the self-hosted rule of
DESIGN.md (`api-channel-only`): a self-hosted channel runs on loopback, a private address
(RFC 1918, RFC 4193; link-local is not the operator's and is refused: it is where cloud metadata
services answer), a single-label or cluster-internal name (`.internal`, `.local`, `.svc`,
`.cluster.local`), or a host the operator attests as its own (`operator_host`). A public
provider's host is never self-hosted, whatever the operator attests. Pure functions, no DNS:
a name is judged by its spelling, an address by its range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from fnmatch import fnmatchcase

from policies.schema import Channel, Kind

INTERNAL_SUFFIXES = (".internal", ".local", ".svc", ".cluster.local", ".localhost")
_PRIVATE_V4 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_PRIVATE_V6 = ipaddress.IPv6Network("fc00::/7")


def normalize(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` matches one of `patterns` (globs allowed, e.g. `*.openai.azure.com`)."""
    host = normalize(host)
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)


def _address_kind(host: str) -> str | None:
    """`loopback` / `private` / `link-local` / `public` for an IP literal, None for a name."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if isinstance(addr, ipaddress.IPv4Address):
        return "private" if any(addr in net for net in _PRIVATE_V4) else "public"
    return "private" if addr in _PRIVATE_V6 else "public"


def operator_owned(host: str) -> bool:
    """Whether the spelling of `host` alone makes it the operator's: loopback, private, internal."""
    host = normalize(host)
    kind = _address_kind(host)
    if kind is not None:
        return kind in ("loopback", "private")
    if host == "localhost" or "." not in host:
        return bool(host)
    return host.endswith(INTERNAL_SUFFIXES)


def public_owner(host: str, public_hosts: Iterable[tuple[str, str]]) -> str | None:
    """The catalog channel whose official hosts include `host`, if any (such a host is never self-hosted)."""
    name = normalize(host)
    return next((cid for pattern, cid in public_hosts if fnmatchcase(name, pattern.lower())), None)


def self_hosted_problem(
    host: str | None,
    *,
    public_hosts: Iterable[tuple[str, str]] = (),
    operator_hosts: Iterable[str] = (),
) -> str | None:
    """Why `host` cannot serve a self-hosted channel, or None when it can.

    `public_hosts` holds (pattern, channel id) of every provider API channel in the catalog;
    `operator_hosts` the hosts (globs) the operator attests as its own. None as the host means
    the adapter's local default (Ollama's localhost:11434), which is loopback.
    """
    if host is None:
        return None
    name = normalize(host)
    if (owner := public_owner(name, public_hosts)) is not None:
        return f"host {name} is an official host of {owner}, a public provider: never self-hosted"
    if _address_kind(name) == "link-local":
        return f"host {name} is a link-local address (cloud metadata range), never self-hosted"
    if operator_owned(name) or matches(name, operator_hosts):
        return None
    return (
        f"host {name} is not loopback, a private address or a cluster-internal name, and no "
        "operator_host attestation names it: a self-hosted channel must run on the operator's own host"
    )


def host_allowed(channel: Channel, host: str | None) -> bool:
    """Whether `host` may serve `channel`, judged by its spelling alone.

    API channels: one of the channel's official `api_hosts`. Self-hosted channels: loopback, a
    private address or an internal name (attested operator hosts and the public-host rule need
    the config and the catalog: see `self_hosted_problem`). A consumer channel has no API host.
    """
    if channel.kind is Kind.SELF_HOSTED:
        return host is None or self_hosted_problem(host) is None
    if channel.kind is Kind.CONSUMER or not host:
        return False
    return matches(host, channel.api_hosts)
