"""`sluice catalog ...` and `sluice policy ...`: the catalog and policies, readable in a terminal.

What belongs here: rendering only. Facts come from `policies`, JSON from `gateway.catalog_view`.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gateway.catalog_view import catalog_json, channel_json, policies_json
from policies.badges import Level, derive_badges
from policies.catalog import Catalog, load_catalog
from policies.engine import evaluate
from policies.facts import EffectiveFacts, effective_facts
from policies.policy import BUILTIN_POLICIES, UnknownPolicyError, resolve
from policies.schema import Channel, FactName, Kind

catalog_app = typer.Typer(help="The privacy catalog: every channel's data policy, with sources.")
policy_app = typer.Typer(help="Policies: which channels each one allows, and why.")

COMPARE_PROVIDERS = ("openai", "anthropic", "google", "mistral", "meta")
LEVEL_STYLE = {Level.GOOD: "green", Level.CAUTION: "yellow", Level.BAD: "red"}


def _console() -> Console:
    return Console(width=200, soft_wrap=False)


def _facts(catalog: Catalog, channel: Channel) -> EffectiveFacts:
    return effective_facts(channel, model="*", sources=catalog.sources_of(channel.id), today=date.today())


def _badges(catalog: Catalog, channel: Channel) -> str:
    return " ".join(f"[{LEVEL_STYLE[b.level]}]{b.id}[/]" for b in derive_badges(_facts(catalog, channel)))


def _judging(facts: EffectiveFacts) -> tuple[str, str, str]:
    """(oldest fact date, with "stale" when some fact is; facts below high confidence; conflicts)."""
    dated = [f.dated for f in facts.judged().values() if f.dated is not None]
    oldest = min(dated).isoformat() if dated else "never stale"
    if facts.stale:
        oldest += " [yellow]stale[/]: " + ", ".join(facts.stale_facts)
    weak = [
        f"{name} {fact.confidence.value}"
        for name, fact in facts.judged().items()
        if fact.confidence != "high"
    ]
    conflicts = ", ".join(facts.conflicted_facts) or "-"
    return oldest, ", ".join(weak) or "all high", conflicts


def _retention(channel: Channel) -> str:
    r = channel.retention
    if r.days is not None:
        return f"{r.qualifier.replace('_', ' ')} {r.days}d"
    return r.qualifier.replace("_", " ")


def _plain_row(table: Table, *cells: str) -> None:
    """A table row whose text is shown as is (catalog notes cite sources in square brackets)."""
    table.add_row(*(Text(cell) for cell in cells))


def _channel_or_exit(catalog: Catalog, channel_id: str) -> Channel:
    channel = catalog.get(channel_id)
    if channel is None:
        typer.echo(f"no channel {channel_id!r}; `sluice catalog` lists them", err=True)
        raise typer.Exit(2)
    return channel


@catalog_app.callback(invoke_without_command=True)
def catalog_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    provider: Annotated[str | None, typer.Option(help="only this provider's channels")] = None,
) -> None:
    """Every channel with kind, training, retention, ZDR, human review, badges and as-of date."""
    if ctx.invoked_subcommand is not None:
        return
    catalog = load_catalog()
    if as_json:
        typer.echo(json.dumps(catalog_json(catalog, date.today(), provider=provider), indent=2))
        return
    table = Table(title=f"Sluice privacy catalog ({len(catalog)} channels)", show_lines=False)
    for column in (
        "channel",
        "name",
        "kind",
        "training",
        "retention",
        "ZDR",
        "human review",
        "badges",
        "as of",
        "oldest fact",
        "confidence",
        "conflicts",
    ):
        # Channel ids stay whole (people copy them into configs); the other columns fold.
        table.add_column(column, overflow="fold", no_wrap=column == "channel")
    for channel in catalog:
        if provider and channel.provider != provider:
            continue
        table.add_row(
            channel.id,
            channel.name,
            channel.kind.value,
            channel.training.default.value,
            _retention(channel),
            channel.zdr.availability.value,
            channel.human_review.value.value,
            _badges(catalog, channel),
            channel.as_of.isoformat(),
            *_judging(_facts(catalog, channel)),
        )
    _console().print(table)


@catalog_app.command("show")
def catalog_show(
    channel_id: Annotated[str, typer.Argument(help="a channel id, e.g. anthropic.api")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """All facts of one channel, each with its sources."""
    catalog = load_catalog()
    channel = _channel_or_exit(catalog, channel_id)
    data = channel_json(catalog, channel, date.today())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = _console()
    console.print(
        f"[bold]{channel.name}[/] ({channel.id}) - {channel.kind.value}, as of {channel.as_of}, "
        f"entry confidence {channel.confidence.value}; each fact judged on {date.today()} by its own "
        "date, confidence and conflicts"
    )
    if channel.plans:
        console.print(f"plans: {', '.join(channel.plans)}")
    if channel.api_hosts:
        console.print(f"api hosts: {', '.join(channel.api_hosts)}")
    console.print(f"badges: {_badges(catalog, channel)}")
    judged = _facts(catalog, channel)
    facts = Table(show_header=True)
    for column in ("fact", "value", "details", "sources", "dated", "confidence", "conflict"):
        facts.add_column(column, overflow="fold")

    def judging(name: FactName) -> tuple[str, str, str]:
        fact = judged.judged()[name]
        dated = fact.dated.isoformat() if fact.dated else "never stale"
        if fact.stale(judged.today):
            dated += " (stale)"
        if judged.is_unreliable(fact):
            dated += ", counts as unknown"
        return dated, fact.confidence.value, "yes" if fact.conflicted else "-"

    t, r, z, h, g = channel.training, channel.retention, channel.zdr, channel.human_review, channel.regions
    controls = "; ".join(f"{c.type}: {c.name}" for c in t.controls)
    _plain_row(
        facts,
        "training",
        t.default.value,
        "; ".join(filter(None, [controls, t.incentive, t.notes])),
        ", ".join(t.src),
        *judging(FactName.TRAINING),
    )
    flagged = f"flagged content: {r.flagged_days} days" if r.flagged_days is not None else None
    _plain_row(
        facts,
        "retention",
        _retention(channel),
        "; ".join(filter(None, [flagged, r.legal_hold, r.notes])),
        ", ".join(r.src),
        *judging(FactName.RETENTION),
    )
    _plain_row(
        facts,
        "zero data retention",
        z.availability.value,
        "; ".join(filter(None, [z.how, *z.exclusions])),
        ", ".join(z.src),
        *judging(FactName.ZDR),
    )
    _plain_row(
        facts, "human review", h.value.value, h.notes or "", ", ".join(h.src), *judging(FactName.HUMAN_REVIEW)
    )
    _plain_row(
        facts,
        "regions",
        f"processing {', '.join(g.processing)}; storage {', '.join(g.storage)}",
        g.notes or "",
        ", ".join(g.src),
        *judging(FactName.REGIONS),
    )
    for override in channel.model_overrides:
        kind = "routed onward" if override.routes_onward else "model override"
        _plain_row(
            facts, kind, ", ".join(override.models), override.notes, ", ".join(override.src), "", "", ""
        )
    for feature_id, feature in channel.features.items():
        kept = feature.retention_qualifier.replace("_", " ")
        if feature.retention_days is not None:
            kept += f" {feature.retention_days}d"
        _plain_row(
            facts,
            f"feature {feature_id.value}",
            ("offered, keeps " + kept) if feature.offered else "not offered",
            feature.notes or "",
            ", ".join(feature.src),
            "",
            feature.confidence.value if feature.confidence else "",
            "",
        )
    console.print(facts)
    for conflict in channel.conflicts:
        console.print(
            "[yellow]conflict[/] "
            + escape(f"({conflict.fact}): {conflict.description} -> {conflict.resolution} ")
            + escape(f"readings: {', '.join(conflict.readings)}; " if conflict.readings else "")
            + escape(f"[{', '.join(conflict.src)}]")
        )
    if channel.notes:
        console.print(f"notes: {escape(channel.notes)}")
    console.print("[bold]sources[/]")
    for sid, src in data["sources"].items():
        stated = f", dated {src['date_stated']}" if src.get("date_stated") else ""
        console.print(f"  {sid}: {src['url']} ({src['publisher']}{stated}, retrieved {src['retrieved']})")


@catalog_app.command("compare")
def catalog_compare(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The five best-known providers, consumer product against API channel, side by side."""
    catalog = load_catalog()
    rows = []
    for provider in COMPARE_PROVIDERS:
        for channel in sorted(
            (c for c in catalog if c.provider == provider), key=lambda c: c.kind != Kind.CONSUMER
        ):
            if channel.kind is Kind.SELF_HOSTED:
                continue
            opt_out = "; ".join(c.name for c in channel.training.controls) or "-"
            rows.append(
                {
                    "provider": catalog.provider_name(provider),
                    "channel": channel.id,
                    "name": channel.name,
                    "kind": channel.kind.value,
                    "training": channel.training.default.value,
                    "controls": opt_out,
                    "retention": _retention(channel),
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Consumer products against API channels", show_lines=True)
    for column in ("provider", "channel", "kind", "trains by default", "how to change it", "retention"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "red" if row["training"] in ("always", "opt_out", "unknown") else "green"
        table.add_row(
            row["provider"],
            f"{row['name']}\n{row['channel']}",
            row["kind"],
            f"[{style}]{row['training']}[/]",
            row["controls"],
            row["retention"],
        )
    console = _console()
    console.print(table)
    console.print(
        "Consumer apps are never routable. Where the API is not enough: the Gemini API free tier and "
        "Mistral's free API plan train on what you send; only their paid tiers do not."
    )


@policy_app.command("list")
def policy_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The builtin policies and what each requires."""
    if as_json:
        typer.echo(json.dumps(policies_json(BUILTIN_POLICIES.values()), indent=2))
        return
    table = Table(title="Policies (api-channel-only is always on)")
    for column in ("policy", "requires", "description"):
        table.add_column(column, overflow="fold")
    for policy in BUILTIN_POLICIES.values():
        table.add_row(policy.name, ", ".join(policy.requires), policy.description)
    _console().print(table)


@policy_app.command("explain")
def policy_explain(
    policy: Annotated[str, typer.Argument(help="a policy name, or several separated by commas")],
    channel: Annotated[list[str] | None, typer.Option("--channel", help="only these channels")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Which channels pass or fail a policy, and why, with sources."""
    catalog = load_catalog()
    try:
        chosen = resolve(policy.split(","), BUILTIN_POLICIES)
    except UnknownPolicyError as exc:
        typer.echo(f"unknown policy {exc.name!r}; `sluice policy list` shows them", err=True)
        raise typer.Exit(2) from None
    channels = [_channel_or_exit(catalog, c) for c in channel] if channel else list(catalog)
    results: list[dict[str, Any]] = []
    for ch in channels:
        facts = effective_facts(ch, model="*", sources=catalog.sources_of(ch.id), today=date.today())
        decision = evaluate(chosen, facts)
        results.append(
            {
                "channel": ch.id,
                "name": ch.name,
                "kind": ch.kind.value,
                "allowed": decision.allowed,
                "reasons": decision.reasons()
                if not decision.allowed
                else [c.reason for c in decision.checks],
            }
        )
    if as_json:
        typer.echo(json.dumps({"policy": [p.name for p in chosen], "channels": results}, indent=2))
        return
    allowed = sum(r["allowed"] for r in results)
    table = Table(title=f"{', '.join(p.name for p in chosen)}: {allowed} of {len(results)} channels allowed")
    for column in ("channel", "kind", "result", "why"):
        table.add_column(column, overflow="fold")
    for r in results:
        verdict = "[green]allowed[/]" if r["allowed"] else "[red]refused[/]"
        table.add_row(f"{r['name']}\n{r['channel']}", r["kind"], verdict, escape("\n".join(r["reasons"])))
    _console().print(table)
    Console().print(
        "Attestations in your config (e.g. a ZDR agreement or a paid tier) can change these results; "
        "`sluice check` evaluates your deployments."
    )
