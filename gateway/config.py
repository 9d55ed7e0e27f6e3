"""The config file (`config/sluice.yaml`): its schema and its cross-check against the catalog.

What belongs here: pydantic models of the file (extra="forbid"), loading it, and `check()`,
which refuses at start-up, one clear line per problem: an unknown provider or channel (with the
closest ids), a consumer channel, an api_base off the channel's official hosts (or, self-hosted, off
the operator's own hosts: see `policies.hosts`), an unknown policy, a reroute to nowhere, an
attestation the channel cannot take, `simulate` outside a demo config. `check_file()` reports
everything at once: a YAML syntax error with its line and column, or the schema errors together with
the cross-check of every part that validated (`salvage`). Secrets appear only as names of
environment variables.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gateway.core.sensitive.detectors import DetectorId, custom
from gateway.core.sensitive.patterns import linear_problem
from gateway.core.sensitive.rules import Mode, Rule, Tightening
from gateway.names import OnViolation
from gateway.upstream.providers import ROUTES, split_model
from policies.catalog import Catalog, host_allowed
from policies.facts import Attestation, attestation_problem
from policies.hosts import public_owner, self_hosted_problem
from policies.policy import Policy, Requirement, UnknownPolicyError, policy_table, resolve
from policies.schema import AttestationFact, HumanReview, Kind, Region, TrainingDefault
from policies.tool_hosts import ToolHost


class ConfigError(ValueError):
    """The config does not check out; the message is one line per problem. `partial`: the parts of a
    file that failed schema validation that did validate, so their cross-check can be reported in
    the same run (see `salvage`)."""

    def __init__(self, message: str, *, partial: Config | None = None) -> None:
        super().__init__(message)
        self.partial = partial


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


class SensitiveRuleConfig(Strict):
    """`sensitive.rules[]` and `keys[].sensitive[]`: when one of `detectors` matches, add `require`."""

    detectors: list[DetectorId] = Field(min_length=1)
    require: PolicyNames = Field(min_length=1)
    mode: Mode | None = None  # the section's mode when unset

    def to_domain(self, mode: Mode) -> Rule:
        return Rule(frozenset(self.detectors), self.require, (self.mode or mode) is Mode.ENFORCE)


class CustomDetectorConfig(Strict):
    """The `custom` detector: the operator's regular expressions and keywords (whole words, any case)."""

    patterns: list[str] = Field(default_factory=list)
    keywords: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)


class SensitiveConfig(Strict):
    """`sensitive:` content-aware tightening (DESIGN.md, "Sensitive content"): rules only add policies."""

    mode: Mode = Mode.ENFORCE
    rules: list[SensitiveRuleConfig] = Field(default_factory=list)
    custom: CustomDetectorConfig = CustomDetectorConfig()


class KeyConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
    key_hash_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_hash: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    policy: PolicyNames = ()
    models: list[str] | None = None
    on_violation: OnViolation | None = None
    sensitive: list[SensitiveRuleConfig] = Field(default_factory=list)  # extra rules for this key
    # Limits (DESIGN.md "Several replicas"); unset: the server's default; 0: no limit.
    rpm: int | None = Field(default=None, ge=0, description="requests per minute")
    tpm: int | None = Field(default=None, ge=0, description="tokens per minute, as the upstream reports them")
    max_concurrency: int | None = Field(default=None, ge=0, description="requests in flight")

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


class ToolHostConfig(Strict):
    """`tool_hosts[]`: an MCP server host a request may name (`remote_mcp`), with the operator's facts
    about it (an attestation: shown as such; unset facts are unknown, which fails closed)."""

    host: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    evidence: str = Field(min_length=3)
    training: TrainingDefault = TrainingDefault.UNKNOWN
    retention_days: int | None = Field(default=None, ge=0)
    human_review: HumanReview = HumanReview.UNKNOWN
    regions: list[Region] = Field(default_factory=list)
    operator_owned: bool = False

    def to_domain(self) -> ToolHost:
        return ToolHost(
            host=self.host,
            evidence=self.evidence,
            training=self.training,
            retention_days=self.retention_days,
            human_review=self.human_review,
            regions=frozenset(self.regions),
            operator_owned=self.operator_owned,
        )


class Config(Strict):
    server: ServerConfig = ServerConfig()
    policies: list[PolicyConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(min_length=1)
    attestations: list[AttestationConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    sensitive: SensitiveConfig = SensitiveConfig()
    tool_hosts: list[ToolHostConfig] = Field(default_factory=list)
    demo: Literal[True] | None = None

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def tightening(self) -> Tightening:
        """The `sensitive:` rules, and each config key's own, ready to run (`check()` passed)."""
        section = self.sensitive
        detectors = dict(Tightening().detectors)
        if section.custom.patterns or section.custom.keywords:
            detectors[DetectorId.CUSTOM] = custom(section.custom.patterns, section.custom.keywords)
        per_key = {
            k.name: tuple(r.to_domain(section.mode) for r in k.sensitive) for k in self.keys if k.sensitive
        }
        return Tightening(tuple(r.to_domain(section.mode) for r in section.rules), per_key, detectors)

    def policy_table(self) -> dict[str, Policy]:
        return policy_table(p.to_domain() for p in self.policies)

    def tool_host_table(self) -> dict[str, ToolHost]:
        """The MCP server hosts requests may name, by host (`check()` refuses duplicates)."""
        return {h.host: h.to_domain() for h in self.tool_hosts}


def _yaml_problem(origin: str, exc: yaml.YAMLError) -> str:
    """`origin:LINE:COLUMN: not valid YAML: what (while ... at line L, column C)`, 1-based as editors
    count. PyYAML's own text, which quotes at most a character of the file (never a secret: the
    file holds only names of environment variables)."""
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    text = problem or type(exc).__name__
    if context:
        at = f" at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
        text += f" ({context}{at})"
    return f"{origin}{where}: not valid YAML: {text}"


def _where(loc: Sequence[int | str], raw: object) -> str:
    """A pydantic location as `check()` spells places: `models.NAME.deployments[1].timeout`."""
    parts: list[str] = []
    node = raw
    for step in loc:
        item = node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node) else None
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(step, int):
            if isinstance(name, str) and parts and parts[-1] in ("models", "keys", "policies"):
                parts.append(f".{name}")
            else:
                parts.append(f"[{step}]")
        else:
            parts.append(f".{step}" if parts else step)
        node = item if isinstance(step, int) else node.get(step) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def parse_config(text: str, *, origin: str = "config") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(origin, exc)) from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{origin}: {_where(err['loc'], raw)}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(lines), partial=salvage(raw)) from None


M = TypeVar("M", bound=BaseModel)


def _valid_part(model: type[M], item: object) -> M | None:
    """`item` as `model`, or without the fields that failed (already reported), or None."""
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        if not isinstance(item, dict):
            return None
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        trimmed = {k: v for k, v in item.items() if k not in bad}
        if trimmed == item:
            return None
        try:
            return model.model_validate(trimmed)
        except ValidationError:
            return None


def _salvage_model(item: object) -> ModelConfig | None:
    found = _valid_part(ModelConfig, item)
    if found is not None or not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return found
    # Keep the name (other parts refer to it) and every deployment that validates on its own.
    deployments = [d for d in _each(DeploymentConfig, _list(item, "deployments")) if d]
    reroute = [t for t in _list(item, "reroute_to") if isinstance(t, str)]
    return ModelConfig.model_construct(name=item["name"], deployments=deployments, reroute_to=reroute)


def _salvage_policy(item: object) -> PolicyConfig | None:
    found = _valid_part(PolicyConfig, item)
    if found is None and isinstance(item, dict) and isinstance(item.get("name"), str):
        # A stand-in, so that names referring to it are not reported as unknown as well.
        return PolicyConfig.model_construct(
            name=item["name"], description="", requires=[Requirement.API_CHANNEL], max_retention_days=None
        )
    return found


def _salvage_key(item: object) -> KeyConfig | None:
    found = _valid_part(KeyConfig, item)
    if found is not None or not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return found
    # A key whose hash is wrong still names policies and models that can be checked.
    policy = _names(item.get("policy") or ())
    models = item.get("models")
    return KeyConfig.model_construct(
        name=item["name"],
        key_hash_env=None,
        key_hash=None,
        policy=tuple(p for p in policy if isinstance(p, str)) if isinstance(policy, list | tuple) else (),
        models=[m for m in models if isinstance(m, str)] if isinstance(models, list) else None,
        on_violation=None,
        sensitive=[],
        rpm=None,
        tpm=None,
        max_concurrency=None,
    )


def _each(model: type[M], items: list[object]) -> list[M | None]:
    return [_valid_part(model, item) for item in items]


def _list(raw: dict[str, object], key: str) -> list[object]:
    value = raw.get(key)
    return value if isinstance(value, list) else []


def salvage(raw: object) -> Config | None:
    """The parts of a file that validate on their own, so that `check()` can report their problems
    in the same run as the schema errors of the rest (None when the top level is not a mapping)."""
    if not isinstance(raw, dict):
        return None
    return Config.model_construct(
        server=_valid_part(ServerConfig, raw.get("server") or {}) or ServerConfig(),
        policies=[p for p in map(_salvage_policy, _list(raw, "policies")) if p],
        models=[m for m in map(_salvage_model, _list(raw, "models")) if m],
        attestations=[a for a in _each(AttestationConfig, _list(raw, "attestations")) if a],
        keys=[k for k in map(_salvage_key, _list(raw, "keys")) if k],
        sensitive=_valid_part(SensitiveConfig, raw.get("sensitive") or {}) or SensitiveConfig(),
        tool_hosts=[t for t in _each(ToolHostConfig, _list(raw, "tool_hosts")) if t],
        demo=True if raw.get("demo") is True else None,
    )


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(text, origin=str(path))


def check_file(path: Path, catalog: Catalog, *, allow_simulate: bool | None = None) -> Config:
    """Load and check `path`; raise ConfigError listing every problem at once: YAML syntax (with line
    and column), or schema errors together with the cross-check of every part that validated.

    `allow_simulate=None` lets the file decide: a demo config (`demo: true`) may simulate."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        if exc.partial is None:
            raise
        simulate = exc.partial.demo is True if allow_simulate is None else allow_simulate
        semantic = check(exc.partial, catalog, allow_simulate=simulate)
        raise ConfigError("\n".join([*str(exc).splitlines(), *(f"{path}: {p}" for p in semantic)])) from None
    simulate = config.demo is True if allow_simulate is None else allow_simulate
    problems = check(config, catalog, allow_simulate=simulate)
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return config


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


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
        return [f"{where}: unknown provider {dep.provider!r}{_did_you_mean(dep.provider, catalog.providers)}"]
    if channel is None:
        own = [c.id for c in catalog if c.provider == dep.provider]
        if f"{dep.provider}.{dep.channel}" in own:
            hint = f"; did you mean {dep.provider}.{dep.channel}?"
        else:
            hint = _did_you_mean(dep.channel, own) or _did_you_mean(dep.channel, [c.id for c in catalog])
        return [f"{where}: unknown channel {dep.channel!r}{hint} (see `sluice catalog`)"]
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
        problems.append(
            f"{where}: simulate is for `sluice demo` only (a demo config says `demo: true`); "
            "`sluice serve` refuses it"
        )
    return problems


def _check_sensitive(config: Config, policies_ok: Callable[[str, Sequence[str]], None]) -> list[str]:
    """`sensitive:`: known policies, linear-time custom patterns, `custom` only when it has some."""
    problems: list[str] = []
    custom_ = config.sensitive.custom
    for i, pattern in enumerate(custom_.patterns):
        problem = linear_problem(pattern)
        if problem:
            problems.append(f"sensitive.custom.patterns[{i}]: {problem}")
    places = [(f"sensitive.rules[{i}]", r) for i, r in enumerate(config.sensitive.rules)]
    places += [(f"keys.{k.name}.sensitive[{i}]", r) for k in config.keys for i, r in enumerate(k.sensitive)]
    for where, rule in places:
        policies_ok(f"{where}.require", rule.require)
        if DetectorId.CUSTOM in rule.detectors and not (custom_.patterns or custom_.keywords):
            problems.append(f"{where}: detector custom needs sensitive.custom.patterns or keywords")
    return problems


def check(config: Config, catalog: Catalog, *, allow_simulate: bool = False) -> list[str]:
    """Every problem that must stop start-up, one line each (empty when the config checks out)."""
    problems: list[str] = []
    try:
        table = config.policy_table()
    except ValueError as exc:
        problems.append(f"policies: {exc}")
        table = policy_table()  # go on with the builtin ones and the first of each name
        for custom in config.policies:
            table.setdefault(custom.name, custom.to_domain())

    def policies_ok(where: str, names: Sequence[str]) -> None:
        try:
            resolve(names, table)
        except UnknownPolicyError as exc:
            hint = _did_you_mean(exc.name, table)
            problems.append(f"{where}: unknown policy {exc.name!r}{hint} (known: {', '.join(sorted(table))})")

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
    problems += _check_sensitive(config, policies_ok)
    hosts = [t.host for t in config.tool_hosts]
    for dup in sorted({h for h in hosts if hosts.count(h) > 1}):
        problems.append(f"tool_hosts: {dup!r} is listed twice")
    key_names = [k.name for k in config.keys]
    for key in config.keys:
        policies_ok(f"keys.{key.name}.policy", key.policy)
        if key_names.count(key.name) > 1:
            problems.append(f"keys: {key.name!r} is defined twice")
        for allowed in key.models or []:
            if config.model(allowed) is None:
                problems.append(f"keys.{key.name}.models: no model named {allowed!r}")
    return problems
