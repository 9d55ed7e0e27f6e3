"""The config file (`config/sluice.yaml`): its schema and its cross-check against the catalog.

What belongs here: pydantic models of the file (extra="forbid"), loading it, and `check()`,
which refuses at start-up, one clear line per problem: an unknown provider or channel, a
consumer channel, an api_base off the channel's official hosts (or, self-hosted, off the
operator's own hosts: see `policies.hosts`), an unknown policy, a reroute to
nowhere, an attestation the channel cannot take, `simulate` outside the demo. Secrets appear
only as names of environment variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gateway.names import OnViolation
from gateway.upstream.providers import ROUTES, split_model
from policies.catalog import Catalog, host_allowed
from policies.facts import Attestation, attestation_problem
from policies.hosts import public_owner, self_hosted_problem
from policies.policy import Policy, Requirement, UnknownPolicyError, policy_table, resolve
from policies.schema import AttestationFact, Kind


class ConfigError(ValueError):
    """The config does not check out; the message is one line per problem."""


def _names(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


PolicyNames = Annotated[tuple[str, ...], BeforeValidator(_names)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    default_policy: PolicyNames = ("no-training-only",)
    on_violation: OnViolation = OnViolation.BLOCK


class DeploymentConfig(Strict):
    provider: str
    channel: str
    model: str = Field(min_length=3, pattern=r"^[A-Za-z0-9_\-]+/[^\s]+$")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_base: str | None = None
    api_version: str | None = None
    vertex_project: str | None = None
    vertex_location: str | None = None
    aws_region_name: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    simulate: bool = False

    @property
    def prefix(self) -> str:
        return split_model(self.model)[0]

    @property
    def upstream_model(self) -> str:
        return split_model(self.model)[1]


class ModelConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-/]{0,127}$")
    deployments: list[DeploymentConfig] = Field(min_length=1)
    reroute_to: list[str] = Field(default_factory=list)
    description: str | None = None


class AttestationConfig(Strict):
    provider: str
    fact: AttestationFact
    evidence: str = Field(min_length=3)
    channel: str | None = None
    models: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)

    def to_domain(self) -> Attestation:
        return Attestation(
            self.provider, self.fact, self.evidence, self.channel, tuple(self.models), tuple(self.hosts)
        )


class KeyConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
    key_hash_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_hash: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    policy: PolicyNames = ()
    models: list[str] | None = None
    on_violation: OnViolation | None = None

    @model_validator(mode="after")
    def _one_hash(self) -> KeyConfig:
        if (self.key_hash_env is None) == (self.key_hash is None):
            raise ValueError("give exactly one of key_hash_env (an environment variable) or key_hash")
        return self


class PolicyConfig(Strict):
    name: str
    description: str
    requires: list[Requirement] = Field(min_length=1)
    max_retention_days: int | None = Field(default=None, ge=0)

    def to_domain(self) -> Policy:
        return Policy(
            name=self.name,
            description=self.description,
            requires=tuple(self.requires),
            max_retention_days=self.max_retention_days,
        )


class Config(Strict):
    server: ServerConfig = ServerConfig()
    policies: list[PolicyConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(min_length=1)
    attestations: list[AttestationConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    demo: Literal[True] | None = None

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def policy_table(self) -> dict[str, Policy]:
        return policy_table(p.to_domain() for p in self.policies)


def parse_config(text: str, *, origin: str = "config") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({type(exc).__name__})") from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{origin}: {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(text, origin=str(path))


def _operator_hosts(config: Config) -> list[str]:
    return [h for a in config.attestations if a.fact is AttestationFact.OPERATOR_HOST for h in a.hosts]


def _check_deployment(
    where: str,
    dep: DeploymentConfig,
    catalog: Catalog,
    allow_simulate: bool,
    operator_hosts: Sequence[str] = (),
) -> list[str]:
    problems: list[str] = []
    channel = catalog.get(dep.channel)
    if dep.provider not in catalog.providers:
        return [f"{where}: unknown provider {dep.provider!r}"]
    if channel is None:
        return [f"{where}: unknown channel {dep.channel!r} (see `sluice catalog`)"]
    if channel.provider != dep.provider:
        problems.append(
            f"{where}: channel {dep.channel} belongs to provider {channel.provider}, not {dep.provider}"
        )
    if channel.kind is Kind.CONSUMER:
        problems.append(f"{where}: {dep.channel} is a consumer channel ({channel.name}); never routable")
    route = ROUTES.get(dep.prefix)
    if route is None:
        problems.append(f"{where}: unsupported model prefix {dep.prefix!r} in {dep.model!r}")
    elif dep.provider not in route.providers:
        problems.append(f"{where}: model prefix {dep.prefix!r} does not reach provider {dep.provider!r}")
    elif route.needs_api_base and not dep.api_base:
        problems.append(f"{where}: model prefix {dep.prefix!r} needs api_base")
    local_default = dep.prefix in ("ollama", "ollama_chat")
    if channel.kind is Kind.SELF_HOSTED and not dep.api_base and not dep.simulate and not local_default:
        problems.append(f"{where}: a self-hosted deployment needs api_base")
    if dep.api_base:
        parts = urlsplit(dep.api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{where}: api_base {dep.api_base!r} is not an http(s) URL")
        elif channel.kind is Kind.SELF_HOSTED:
            problem = self_hosted_problem(
                parts.hostname, public_hosts=catalog.public_hosts(), operator_hosts=operator_hosts
            )
            if problem:
                problems.append(f"{where}: api_base: {problem}")
        elif not host_allowed(channel, parts.hostname):
            problems.append(
                f"{where}: api_base host {parts.hostname} is not an official host of {channel.name} "
                f"({', '.join(channel.api_hosts)})"
            )
        elif channel.kind is Kind.API and parts.scheme != "https":
            problems.append(f"{where}: api_base for an API channel must use https")
    elif route is not None and route.default_base and channel.kind is Kind.API:
        host = urlsplit(route.default_base).hostname
        if not host_allowed(channel, host):
            problems.append(f"{where}: {dep.prefix}/ reaches {host}, not an official host of {channel.name}")
    if dep.simulate and not allow_simulate:
        problems.append(f"{where}: simulate is for `sluice demo` only; `sluice serve` refuses it")
    return problems


def check(config: Config, catalog: Catalog, *, allow_simulate: bool = False) -> list[str]:
    """Every problem that must stop start-up, one line each (empty when the config checks out)."""
    problems: list[str] = []
    try:
        table = config.policy_table()
    except ValueError as exc:
        return [f"policies: {exc}"]

    def policies_ok(where: str, names: Sequence[str]) -> None:
        try:
            resolve(names, table)
        except UnknownPolicyError as exc:
            problems.append(f"{where}: unknown policy {exc.name!r} (known: {', '.join(sorted(table))})")

    policies_ok("server.default_policy", config.server.default_policy)
    names = [m.name for m in config.models]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"models: {dup!r} is defined twice")
    for model in config.models:
        for i, dep in enumerate(model.deployments):
            problems += _check_deployment(
                f"models.{model.name}.deployments[{i}]", dep, catalog, allow_simulate, _operator_hosts(config)
            )
        for target in model.reroute_to:
            if target == model.name or config.model(target) is None:
                problems.append(f"models.{model.name}.reroute_to: no other model named {target!r}")
    for i, att in enumerate(config.attestations):
        where = f"attestations[{i}]"
        matching = [c for c in catalog if c.provider == att.provider and att.channel in (None, c.id)]
        if not matching:
            problems.append(f"{where}: no channel {att.channel or '*'} of provider {att.provider!r}")
            continue
        if att.channel is not None or att.fact is AttestationFact.OPERATOR_HOST:
            problem = attestation_problem(matching[0], att.to_domain())
            if problem:
                problems.append(f"{where}: {problem}")
        for host in att.hosts:
            if (owner := public_owner(host, catalog.public_hosts())) is not None:
                problems.append(f"{where}: host {host} is an official host of {owner}; never the operator's")
    key_names = [k.name for k in config.keys]
    for key in config.keys:
        policies_ok(f"keys.{key.name}.policy", key.policy)
        if key_names.count(key.name) > 1:
            problems.append(f"keys: {key.name!r} is defined twice")
        for allowed in key.models or []:
            if config.model(allowed) is None:
                problems.append(f"keys.{key.name}.models: no model named {allowed!r}")
    return problems
