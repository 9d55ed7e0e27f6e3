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
from gateway.cli import output
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
    return output.console()


def _facts(catalog: Catalog, channel: Channel) -> EffectiveFacts:
    return effective_facts(channel, model="*", sources=catalog.sources_of(channel.id), today=date.today())


def _badges(catalog: Catalog, channel: Channel) -> str:
    return " ".join(f"[{LEVEL_STYLE[b.level]}]{b.id}[/]" for b in derive_badges(_facts(catalog, channel)))


def _judging(facts: EffectiveFacts) -> tuple[str, str, str]:
    """(oldest fact date, with "stale" when some fact is; facts below high confidence; conflicts)."""
    dated = [f.dated for f in facts.judged().values() if f.dated is not None]
    oldest = min(dated).isoformat() if dated else "never stale"
    if facts.stale:
        oldest += " stale: " + ", ".join(facts.stale_facts)
    weak = [
        f"{name} {fact.confidence.value}"
        for name, fact in facts.judged().items()
        if fact.confidence != "high"
    ]
    conflicts = ", ".join(facts.conflicted_facts) or "-"
    return oldest, ", ".join(weak) or "all high", conflicts


def _judged_lines(facts: EffectiveFacts) -> str:
    oldest, weak, conflicts = _judging(facts)
    return f"oldest fact: {oldest}\nconfidence: {weak}\nconflicts: {conflicts}"


def _retention(channel: Channel) -> str:
    r = channel.retention
    if r.days is not None:
        return f"{r.qualifier.replace('_', ' ')} {r.days}d"
    return r.qualifier.replace("_", " ")


def _attestation_note(facts: str, channels: list[str]) -> str:
    return (
        f"* needs the operator's attestation {facts} ({', '.join(channels)}): the same host also "
        "serves a plan that trains, so without it the badges say unknown and every fact-based policy "
        f"fails. Attest it in your config (attestations: [{{provider, channel, fact: {facts.split(', ')[0]}, "
        "evidence}]); `sluice catalog show CHANNEL` explains."
    )


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
    # Laid out for 100 columns (gateway/cli/output.py): one cell names the channel, its kind and the
    # catalog date, then how its facts are judged (oldest fact, confidence below high, conflicts);
    # facts wrap at words; each badge keeps a line of its own.
    table = Table(title=f"Sluice privacy catalog ({len(catalog)} channels)", show_lines=True)
    table.add_column("channel", width=max((len(c.id) for c in catalog), default=10), overflow="fold")
    table.add_column("training, retention", width=12, overflow="fold")
    table.add_column("ZDR", width=11, overflow="fold")
    table.add_column("human review", width=8, overflow="fold")
    table.add_column("badges", min_width=20, overflow="fold")
    needs: dict[str, list[str]] = {}
    for channel in catalog:
        if provider and channel.provider != provider:
            continue
        mark = ""
        if channel.requires_attestation:
            mark = " *"
            needs.setdefault(", ".join(channel.requires_attestation), []).append(channel.id)
        table.add_row(
            Text(
                f"{channel.id}\n{channel.name}\n{channel.kind.value}, as of {channel.as_of.isoformat()}\n"
                + _judged_lines(_facts(catalog, channel))
            ),
            Text(f"{channel.training.default.value}{mark}\n{_retention(channel)}{mark}"),
            channel.zdr.availability.value.replace("_", " "),
            channel.human_review.value.value.replace("_", " "),
            _badges(catalog, channel).replace(" ", "\n"),
        )
    out = _console()
    out.print(table)
    for facts, channels in needs.items():
        out.print(escape(_attestation_note(facts, channels)), highlight=False)


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
    if channel.requires_attestation:
        needed = ", ".join(channel.requires_attestation)
        console.print(
            escape(
                f"requires attestation: {needed}. The facts below hold only for that plan, and the same "
                "host also serves one that trains: without the attestation in your config, the badges "
                "above say unknown and every fact-based policy fails."
            )
        )
    judged = _facts(catalog, channel)
    # Laid out for 100 columns: how a fact is judged (its date, confidence, conflict) is one cell.
    facts = Table(show_header=True)
    facts.add_column("fact", width=14, overflow="fold")
    facts.add_column("value", width=13, overflow="fold")
    facts.add_column("details", min_width=24, overflow="fold")
    facts.add_column("sources", width=7, overflow="fold")
    facts.add_column("judged", width=19, overflow="fold")

    def judging(name: FactName) -> str:
        fact = judged.judged()[name]
        dated = fact.dated.isoformat() if fact.dated else "never stale"
        if fact.stale(judged.today):
            dated += " (stale)"
        lines = [dated, f"confidence {fact.confidence.value}"]
        if fact.conflicted:
            lines.append("conflict: yes")
        if judged.is_unreliable(fact):
            lines.append("counts as unknown")
        return "\n".join(lines)

    t, r, z, h, g = channel.training, channel.retention, channel.zdr, channel.human_review, channel.regions
    controls = "; ".join(f"{c.type}: {c.name}" for c in t.controls)
    _plain_row(
        facts,
        "training",
        t.default.value,
        "; ".join(filter(None, [controls, t.incentive, t.notes])),
        ", ".join(t.src),
        judging(FactName.TRAINING),
    )
    flagged = f"flagged content: {r.flagged_days} days" if r.flagged_days is not None else None
    _plain_row(
        facts,
        "retention",
        _retention(channel),
        "; ".join(filter(None, [flagged, r.legal_hold, r.notes])),
        ", ".join(r.src),
        judging(FactName.RETENTION),
    )
    _plain_row(
        facts,
        "zero data retention",
        z.availability.value,
        "; ".join(filter(None, [z.how, *z.exclusions])),
        ", ".join(z.src),
        judging(FactName.ZDR),
    )
    _plain_row(
        facts, "human review", h.value.value, h.notes or "", ", ".join(h.src), judging(FactName.HUMAN_REVIEW)
    )
    _plain_row(
        facts,
        "regions",
        f"processing {', '.join(g.processing)}; storage {', '.join(g.storage)}",
        g.notes or "",
        ", ".join(g.src),
        judging(FactName.REGIONS),
    )
    console.print(facts)
    # Models whose facts differ, and request features: what they are named by needs a wide cell.
    extra = Table(show_header=True)
    extra.add_column("models or feature", width=30, overflow="fold")
    extra.add_column("details", min_width=30, overflow="fold")
    extra.add_column("sources", width=7, overflow="fold")
    for override in channel.model_overrides:
        kind = "routed onward" if override.routes_onward else "model override"
        _plain_row(extra, f"{kind}: {', '.join(override.models)}", override.notes, ", ".join(override.src))
    for feature_id, feature in channel.features.items():
        kept = feature.retention_qualifier.replace("_", " ")
        if feature.retention_days is not None:
            kept += f" {feature.retention_days}d"
        offered = ("offered, keeps " + kept) if feature.offered else "not offered"
        confidence = f" (confidence {feature.confidence.value})" if feature.confidence else ""
        _plain_row(
            extra,
            f"feature {feature_id.value}: {offered}{confidence}",
            feature.notes or "",
            ", ".join(feature.src),
        )
    if extra.row_count:
        console.print(extra)
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
        line = f"  {sid}: {src['url']} ({src['publisher']}{stated}, retrieved {src['retrieved']})"
        console.print(line, soft_wrap=True)  # one line each, never wrapped: URLs stay copyable


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
    table.expand = True
    table.add_column("provider", width=10, overflow="fold")
    table.add_column("channel", width=max(len(r["channel"]) for r in rows), overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("trains by default", width=9, overflow="fold")
    table.add_column("how to change it", ratio=3, overflow="fold")
    table.add_column("retention", width=10, overflow="fold")
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
    table.expand = True
    table.add_column("channel", min_width=max(len(r["channel"]) for r in results), ratio=2, overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("why", ratio=3, overflow="fold")
    for r in results:
        verdict = "[green]allowed[/]" if r["allowed"] else "[red]refused[/]"
        why = escape(output.reasons_cell(r["reasons"]))
        table.add_row(f"{r['name']}\n{r['channel']}", r["kind"], verdict, why)
    _console().print(table)
    _console().print(
        "Attestations in your config (e.g. a ZDR agreement or a paid tier) can change these results; "
        "`sluice check` evaluates your deployments."
    )
