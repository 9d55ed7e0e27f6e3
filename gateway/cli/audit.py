"""`sluice audit ...`: read the ledger: `tail`, the compliance `report`, `verify` every chain.

What belongs here: options and rendering (tables, JSON, CSV). Queries live in
`gateway.storage.report`.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.cli.db import DatabaseOpt, cli_settings, with_database
from gateway.storage.db import Database
from gateway.storage.report import Report, Verification, report, tail, verify
from gateway.storage.timespec import parse_moment

audit_app = typer.Typer(help="The audit ledger: one metadata-only record per request.", no_args_is_help=True)


def _console() -> Console:
    return Console(width=200, soft_wrap=False)


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, now=datetime.now(UTC), direction="past")
    except ValueError as exc:
        typer.echo(f"sluice: {option}: {exc}", err=True)
        raise typer.Exit(2) from None


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", min=1, max=100_000, help="how many records")] = 20,
    key: Annotated[str | None, typer.Option("--key", help="only this key's requests")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The newest records, oldest first."""

    async def job(db: Database) -> list[dict[str, Any]]:
        return await tail(db, n, key=key)

    rows = with_database(job, cli_settings(database_url=database_url))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"last {len(rows)} record(s)")
    for column in (
        "time",
        "key",
        "endpoint",
        "model",
        "decision",
        "channel",
        "status",
        "badges",
        "request id",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["time"],
            row["key_name"],
            row["endpoint"],
            row["requested_model"],
            row["decision"],
            row["channel"] or "-",
            str(row["status"]),
            ", ".join(row["badges"]),
            row["request_id"],
        )
    _console().print(table)


def _counts(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("requests", justify="right")
    for name, count in counts.items():
        table.add_row(name, str(count))
    return table


def _print_report(found: Report) -> None:
    console = _console()
    window = f"since {found.since or 'the beginning'}" + (f" until {found.until}" if found.until else "")
    who = f", key {found.key}" if found.key else ""
    console.print(f"[bold]Audit report[/] {window}{who}: {found.total} request(s)")
    share = f"{found.no_training_share:.1%}" if found.no_training_share is not None else "n/a"
    console.print(
        f"served by a channel: {found.served}; of which by no-training channels: "
        f"{found.served_no_training} ({share})"
    )
    if found.served_without_no_training:
        console.print("[yellow]served by channels without the no-training badge:[/]")
        for channel, count in found.served_without_no_training.items():
            console.print(f"  {channel}: {count}")
    for label, counts in (
        ("requests tightened by sensitive content, per detector", found.sensitive),
        ("requests that report mode would have tightened, per detector", found.sensitive_report),
        ("requests that used a data path, per feature", found.features),
    ):
        if counts:
            console.print(f"{label}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    for title, counts in (
        ("by decision", found.decisions),
        ("by provider", found.providers),
        ("by channel", found.channels),
        ("by badge", found.badges),
    ):
        console.print(_counts(title, counts))
    table = Table(title=f"{len(found.blocked)} blocked request(s)")
    for column in ("time", "key", "model", "request id", "reasons"):
        table.add_column(column, overflow="fold")
    for item in found.blocked:
        table.add_row(
            item.time, item.key_name, item.requested_model, item.request_id, Text("\n".join(item.reasons))
        )
    console.print(table)


CSV_HEADER = ("section", "name", "count", "request_id", "time", "key", "model", "reasons")


def _write_csv(found: Report) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(CSV_HEADER)
    summary = {
        "total": found.total,
        "served": found.served,
        "served_no_training": found.served_no_training,
    }
    for name, count in summary.items():
        out.writerow(("summary", name, count, "", "", "", "", ""))
    share = "" if found.no_training_share is None else f"{found.no_training_share:.6f}"
    out.writerow(("summary", "no_training_share", share, "", "", "", "", ""))
    for section, counts in (
        ("decision", found.decisions),
        ("provider", found.providers),
        ("channel", found.channels),
        ("badge", found.badges),
        ("served_without_no_training", found.served_without_no_training),
        ("sensitive", found.sensitive),
        ("sensitive_report", found.sensitive_report),
        ("feature", found.features),
    ):
        for name, count in counts.items():
            out.writerow((section, name, count, "", "", "", "", ""))
    for item in found.blocked:
        out.writerow(
            (
                "blocked",
                "",
                "",
                item.request_id,
                item.time,
                item.key_name,
                item.requested_model,
                " | ".join(item.reasons),
            )
        )


@audit_app.command("report")
def audit_report(
    since: Annotated[str, typer.Option("--since", help="30d, 12h, or an ISO date")] = "30d",
    until: Annotated[str | None, typer.Option("--until", help="end of the window (default: now)")] = None,
    key: Annotated[str | None, typer.Option("--key", help="only this key's requests")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Counts by decision, provider, channel and badge; the no-training share; every blocked request."""
    if as_json and as_csv:
        typer.echo("sluice: choose one of --json and --csv", err=True)
        raise typer.Exit(2)
    start, end = _moment(since, "--since"), _moment(until, "--until")

    async def job(db: Database) -> Report:
        return await report(db, since=start, until=end, key=key)

    found = with_database(job, cli_settings(database_url=database_url))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
    elif as_csv:
        _write_csv(found)
    else:
        _print_report(found)


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="JSON")] = False, database_url: DatabaseOpt = None
) -> None:
    """Check every writer's hash chain; report the first break of each; exit 1 on any break."""
    found: Verification = with_database(verify, cli_settings(database_url=database_url))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": found.ok,
                    "records": found.records,
                    "chains": [vars(c) for c in found.chains],
                    "breaks": [vars(b) | {"message": str(b)} for b in found.breaks],
                },
                indent=2,
            )
        )
    else:
        for chain in found.chains:
            typer.echo(
                f"chain {chain.writer}: {chain.records} record(s), head {chain.last_seq} {chain.last_hash}"
            )
        for problem in found.breaks:
            typer.echo(f"BROKEN: {problem}")
        verdict = "intact" if found.ok else f"{len(found.breaks)} broken"
        typer.echo(f"{len(found.chains)} chain(s), {found.records} record(s): {verdict}")
    if not found.ok:
        raise typer.Exit(1)
