"""`sluice catalog ...` and `sluice policy ...`, in-process (Typer's CliRunner) and as a real process.

Rich wraps long table cells, so exact content is checked through `--json`; text output is checked
for short tokens only. In-process runs pin "today" to the catalog's as_of date so that staleness
(180 days) cannot change the results as the calendar moves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import gateway.cli.catalog as cli_catalog
from gateway.cli.main import app
from tests.policies.test_catalog import EXPECTED_CHANNELS

ALL_CHANNELS = EXPECTED_CHANNELS  # the channels the issue lists, written out once by hand

# no-training-only (with the baseline) on 2026-11-29, from the catalog facts; see
# tests/policies/test_truth_table.py for the reasoning row by row.
NO_TRAINING_ALLOWED = {
    "openai.api",
    "anthropic.api",
    "google.vertex_ai",
    "microsoft.azure_openai",
    "aws.bedrock",
    "together.api",
    "fireworks.api",
    "xai.api",
    "perplexity.api",
    "deepinfra.api",
    "cloudflare.workers_ai",
    "self_hosted.vllm",
    "self_hosted.ollama",
    "self_hosted.openai_compatible",
}

COMPARED = [
    # provider, consumer channels, then API channels (self-hosted ones are left out)
    ("OpenAI", ["openai.chatgpt", "openai.chatgpt_business"], ["openai.api"]),
    ("Anthropic", ["anthropic.claude_consumer", "anthropic.claude_team"], ["anthropic.api"]),
    (
        "Google",
        ["google.gemini_app"],
        ["google.gemini_api_free", "google.gemini_api_paid", "google.vertex_ai"],
    ),
    ("Mistral AI", ["mistral.le_chat", "mistral.le_chat_business"], ["mistral.api_free", "mistral.api_paid"]),
    ("Meta", ["meta.meta_ai"], ["meta.llama_api"]),
]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CATALOG_DAY = date(2026, 11, 29)


class _CatalogDay(date):
    @classmethod
    def today(cls) -> date:  # type: ignore[override]
        return CATALOG_DAY


class _OneYearLater(date):
    @classmethod
    def today(cls) -> date:  # type: ignore[override]
        return date(2027, 11, 29)


@pytest.fixture(autouse=True)
def _pin_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_catalog, "date", _CatalogDay)


def run(*args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(app, list(args), env={"NO_COLOR": "1", "FORCE_COLOR": None, "COLUMNS": "200"})


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return ANSI.sub("", result.stdout)


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args))


# --- sluice catalog -----------------------------------------------------------------------------


def test_catalog_lists_every_channel() -> None:
    out = ok("catalog")
    assert "Sluice privacy catalog (45 channels)" in out
    for channel_id in ALL_CHANNELS:
        assert re.search(rf"│ {re.escape(channel_id)}\s+│", out), channel_id
    assert "2026-11-29" in out


@pytest.mark.parametrize(
    "command",
    [
        ["catalog"],
        ["catalog", "compare"],
        ["catalog", "show", "openai.api"],
        ["policy", "list"],
        ["policy", "explain", "no-training-only"],
    ],
)
def test_tables_fit_a_pipe(command: list[str]) -> None:
    """Piped (CliRunner is not a terminal), every table is laid out for 100 columns, COLUMNS or not;
    only the sources' URL lines may run longer, so that they stay copyable."""
    out = ok(*command)
    table = [line for line in out.splitlines() if line[:1] in "┏┃│├┡└"]
    assert table and max(len(line) for line in table) <= 100
    assert not [line for line in table if line[-1:] not in "┓┃│┤┩┘"]  # nothing cut off at the edge


def test_catalog_says_which_channels_need_an_attestation() -> None:
    out = ok("catalog")
    rows = out.split("├")
    [paid] = [row for row in rows if "│ google.gemini_api_paid " in row]
    assert "opt_in *" in paid and "training-unknown" in paid  # the catalog's fact beside the badge
    note = " ".join(out.split("\n* ", 1)[1].split())
    assert note.startswith(
        "needs the operator's attestation paid_tier (cohere.api, google.gemini_api_paid, mistral.api_paid):"
        " the same"
        " host also serves a plan that trains, so without it the badges say unknown"
    )
    [free] = [row for row in rows if "│ google.gemini_api_free " in row]
    assert "*" not in free
    shown = " ".join(ok("catalog", "show", "google.gemini_api_paid").split())
    assert "requires attestation: paid_tier." in shown


def test_catalog_json_has_45_channels_with_badges() -> None:
    data = ok_json("catalog", "--json")
    assert data["object"] == "catalog"
    channels = data["channels"]
    assert len(channels) == 45
    assert {c["id"] for c in channels} == ALL_CHANNELS
    for channel in channels:
        assert channel["badges"], channel["id"]
        for b in channel["badges"]:
            assert set(b) == {"id", "label", "level", "description", "source"}
            assert b["level"] in {"good", "caution", "bad"}
        assert channel["stale"] is any(f["stale"] for f in channel["judged"].values())
        assert set(channel["judged"]) == {"training", "retention", "zdr", "human_review", "regions"}
        assert channel["sources"], channel["id"]
        assert all(s["url"].startswith("https://") for s in channel["sources"].values())
    by_id = {c["id"]: c for c in channels}
    assert [b["id"] for b in by_id["openai.api"]["badges"]] == [
        "api-channel",
        "training-opt-in",
        "retention-30d",
        "human-review-flagged",
    ]
    # The Gemini API terms are dated 2025-05-20: their facts are stale on any day from 2025-11-17.
    assert [b["id"] for b in by_id["google.gemini_api_free"]["badges"]] == [
        "api-channel",
        "trains-on-data",
        "retention-55d",
        "human-review",
        "stale",
    ]
    training = by_id["google.gemini_api_free"]["judged"]["training"]
    assert training == {
        "dated": "2025-05-20",
        "stale": True,
        "confidence": "high",
        "conflict": False,
        "unknown_today": False,
        "src": ["G3"],
    }
    assert by_id["together.api"]["judged"]["retention"]["conflict"] is True
    assert by_id["together.api"]["judged"]["retention"]["confidence"] == "low"
    assert by_id["self_hosted.vllm"]["judged"]["training"]["dated"] is None
    assert by_id["google.gemini_api_free"]["training"]["default"] == "always"
    assert by_id["anthropic.api"]["provider_name"] == "Anthropic"


def test_catalog_json_marks_stale_entries_a_year_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_catalog, "date", _OneYearLater)
    channels = ok_json("catalog", "--json")["channels"]
    # Facts the operator owns (self-hosted) never go stale.
    assert all(c["stale"] is (c["kind"] != "self_hosted") for c in channels)
    assert all(("stale" in [b["id"] for b in c["badges"]]) is c["stale"] for c in channels)


def test_catalog_provider_filter() -> None:
    data = ok_json("catalog", "--json", "--provider", "google")
    assert [c["id"] for c in data["channels"]] == [
        "google.gemini_api_free",
        "google.gemini_api_paid",
        "google.gemini_app",
        "google.vertex_ai",
    ]
    out = ok("catalog", "--provider", "google")
    assert "google.gemini_api_free" in out
    assert "google.vertex_ai" in out
    assert "openai.api" not in out
    assert "anthropic" not in out
    assert ok_json("catalog", "--json", "--provider", "nobody")["channels"] == []


# --- sluice catalog show ------------------------------------------------------------------------


def test_catalog_show_prints_facts_and_source_urls() -> None:
    out = ok("catalog", "show", "google.gemini_api_free")
    assert "Gemini API (free tier)" in out
    assert "google.gemini_api_free" in out
    assert "generativelanguage.googleapis.com" in out
    for token in ("G3", "G4", "G6", "always", "trains-on-data", "not_available"):
        assert token in out, token
    for url in (
        "https://ai.google.dev/gemini-api/terms",
        "https://ai.google.dev/gemini-api/docs/usage-policies",
        "https://ai.google.dev/gemini-api/docs/zdr",
    ):
        assert f": {url} (" in out, url
    # The note's bracketed citation is printed as text, not swallowed as rich markup.
    assert "[G8]" in out


def test_catalog_show_json() -> None:
    data = ok_json("catalog", "show", "google.gemini_api_free", "--json")
    assert data["id"] == "google.gemini_api_free"
    assert data["training"]["src"] == ["G3"]
    assert set(data["sources"]) == {"G3", "G4", "G6"}
    assert data["sources"]["G3"]["url"] == "https://ai.google.dev/gemini-api/terms"


def test_catalog_show_prints_conflicts_and_overrides() -> None:
    out = ok("catalog", "show", "mistral.api_free")
    assert "conflict" in out
    assert "[M1, M3]" in out
    out = ok("catalog", "show", "anthropic.api")
    assert "model override" in out
    assert "claude-fable-5*" in out


def test_catalog_show_unknown_channel_exits_2() -> None:
    result = run("catalog", "show", "google.gemini_pro_max")
    assert result.exit_code == 2
    assert "no channel 'google.gemini_pro_max'" in result.stderr
    assert result.stdout == ""


# --- sluice catalog compare ---------------------------------------------------------------------


def test_catalog_compare_json_has_the_five_providers_consumer_and_api_channels() -> None:
    rows = ok_json("catalog", "compare", "--json")
    expected = [
        (provider, channel_id, kind)
        for provider, consumer, api in COMPARED
        for channel_id, kind in [*((c, "consumer") for c in consumer), *((a, "api") for a in api)]
    ]
    assert [(r["provider"], r["channel"], r["kind"]) for r in rows] == expected
    by_channel = {r["channel"]: r for r in rows}
    assert by_channel["openai.chatgpt"]["training"] == "opt_out"
    assert by_channel["openai.api"]["training"] == "opt_in"
    assert by_channel["google.gemini_api_free"]["training"] == "always"
    assert by_channel["meta.meta_ai"]["training"] == "unknown"
    assert by_channel["meta.llama_api"]["training"] == "unknown"
    assert by_channel["google.vertex_ai"]["controls"] == "-"


def test_catalog_compare_text() -> None:
    out = ok("catalog", "compare")
    assert "Consumer products against API channels" in out
    for _, consumer, api in COMPARED:
        for channel_id in [*consumer, *api]:
            assert channel_id in out, channel_id
    for provider in ("OpenAI", "Anthropic", "Google", "Meta"):
        assert provider in out
    assert "self_hosted" not in out
    assert "Consumer apps are never routable" in out


# --- sluice policy list / explain ---------------------------------------------------------------


def test_policy_list() -> None:
    out = ok("policy", "list")
    for name in (
        "api-channel-only",
        "no-training-only",
        "zero-retention",
        "no-human-review",
        "self-hosted-only",
        "eu-residency",
    ):
        assert name in out
    data = ok_json("policy", "list", "--json")
    assert [p["name"] for p in data["data"]] == [
        "api-channel-only",
        "no-training-only",
        "zero-retention",
        "no-human-review",
        "self-hosted-only",
        "eu-residency",
    ]
    assert {p["name"]: p["requires"] for p in data["data"]}["zero-retention"] == [
        "no_training",
        "zero_retention",
    ]


def test_policy_explain_counts_and_cites_sources() -> None:
    out = ok("policy", "explain", "no-training-only")
    assert "api-channel-only, no-training-only: 14 of 45 channels allowed" in out
    assert len(re.findall(r"│ allowed\s+│", out)) == 14
    assert len(re.findall(r"│ refused\s+│", out)) == 31
    # The CLI escapes the reasons, so rich does not eat "[source G3]" as a markup tag.
    assert "[source G3]" in out
    assert "[source DI1]" in out


def test_policy_explain_json() -> None:
    data = ok_json("policy", "explain", "no-training-only", "--json")
    assert data["policy"] == ["api-channel-only", "no-training-only"]
    results = {r["channel"]: r for r in data["channels"]}
    assert set(results) == ALL_CHANNELS
    assert {c for c, r in results.items() if r["allowed"]} == NO_TRAINING_ALLOWED
    assert results["google.gemini_api_free"]["reasons"] == [
        "Gemini API (free tier): inputs may be used for training, with no opt-out on this channel [source G3]"
    ]
    assert results["openai.api"]["reasons"] == [
        "OpenAI API: provider API channel",
        "OpenAI API: not used for training unless the account opts in [source O5]",
    ]
    assert any("a consumer product" in r for r in results["openai.chatgpt"]["reasons"])


def test_policy_explain_is_evaluated_as_of_today(monkeypatch: pytest.MonkeyPatch) -> None:
    """A year on every fact is stale, but only low-confidence ones fail closed: the training facts of
    Azure, Together and xAI rest on provider pages, so their retention or ZDR conflicts (which made
    the whole entry low-confidence in catalog v1) no longer refuse them under no-training-only."""
    monkeypatch.setattr(cli_catalog, "date", _OneYearLater)
    data = ok_json("policy", "explain", "no-training-only", "--json")
    allowed = {r["channel"] for r in data["channels"] if r["allowed"]}
    # Cloudflare's training fact rests on a secondary digest only (low confidence): stale, it is unknown.
    assert allowed == NO_TRAINING_ALLOWED - {"cloudflare.workers_ai"}
    zero = ok_json("policy", "explain", "zero-retention", "--channel", "fireworks.api", "--json")
    assert zero["channels"][0]["allowed"]


def test_policy_explain_channel_filter() -> None:
    data = ok_json(
        "policy",
        "explain",
        "no-training-only",
        "--channel",
        "google.gemini_api_free",
        "--channel",
        "openai.api",
        "--json",
    )
    assert [(r["channel"], r["allowed"]) for r in data["channels"]] == [
        ("google.gemini_api_free", False),
        ("openai.api", True),
    ]
    out = ok(
        "policy",
        "explain",
        "no-training-only",
        "--channel",
        "google.gemini_api_free",
        "--channel",
        "openai.api",
    )
    assert "1 of 2 channels allowed" in out
    assert "[source G3]" in out
    assert "cohere.api" not in out


def test_policy_explain_several_policies() -> None:
    data = ok_json("policy", "explain", "zero-retention,no-training-only", "--json")
    assert data["policy"] == ["api-channel-only", "no-training-only", "zero-retention"]
    allowed = {r["channel"] for r in data["channels"] if r["allowed"]}
    assert allowed == {
        "fireworks.api",
        "perplexity.api",
        "deepinfra.api",
        "self_hosted.vllm",
        "self_hosted.ollama",
        "self_hosted.openai_compatible",
    }


def test_policy_explain_unknown_policy_exits_2() -> None:
    result = run("policy", "explain", "no-training-only,no-logs")
    assert result.exit_code == 2
    assert "unknown policy 'no-logs'" in result.stderr
    assert result.stdout == ""


def test_policy_explain_unknown_channel_exits_2() -> None:
    result = run("policy", "explain", "no-training-only", "--channel", "openai.gpt5")
    assert result.exit_code == 2
    assert "no channel 'openai.gpt5'" in result.stderr


# --- the console script, as a real process -------------------------------------------------------


def _sluice_script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / ("sluice.exe" if os.name == "nt" else "sluice")
    assert script.exists(), f"the sluice console script is not installed at {script}"
    return script


def _run_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTHONPATH")}
    env["NO_COLOR"] = "1"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_console_script_runs_the_catalog(tmp_path: Path) -> None:
    # From an unrelated directory: the catalog comes from the installed package.
    proc = _run_process([str(_sluice_script()), "catalog", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["channels"]) == 45
    assert {c["id"] for c in data["channels"]} == ALL_CHANNELS
    assert all(c["badges"] for c in data["channels"])

    proc = _run_process([str(_sluice_script()), "catalog", "show", "no.such_channel"], tmp_path)
    assert proc.returncode == 2
    assert "no channel 'no.such_channel'" in proc.stderr


def test_module_entry_point_runs_policy_commands(tmp_path: Path) -> None:
    proc = _run_process([sys.executable, "-m", "gateway.cli.main", "policy", "list", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no-training-only" in [p["name"] for p in json.loads(proc.stdout)["data"]]

    proc = _run_process(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "policy",
            "explain",
            "no-training-only",
            "--channel",
            "google.gemini_api_free",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[source G3]" in proc.stdout
    assert "refused" in proc.stdout

    proc = _run_process([sys.executable, "-m", "gateway.cli.main", "policy", "explain", "bogus"], tmp_path)
    assert proc.returncode == 2
    assert "unknown policy 'bogus'" in proc.stderr


# --- per-fact dates, confidence and conflicts (issue 12) -------------------------------------------


def _row(out: str, fact: str) -> str:
    """The lines of the facts table's row for `fact` (up to the next row's first line), joined."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {fact} "))
    rows = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("│ ") or line[2] != " ":
            break
        rows.append(line)
    return "\n".join(rows)


def test_catalog_show_gives_each_fact_its_date_confidence_and_conflict() -> None:
    out = ok("catalog", "show", "together.api")
    for column in ("judged", "confidence", "conflict"):
        assert column in out
    retention = _row(out, "retention")
    assert "2026-11-29" in retention and "confidence low" in retention and "conflict: yes" in retention
    assert "readings: until_deleted, none" in out
    gemini = ok("catalog", "show", "google.gemini_api_free")
    assert "2025-05-20 (stale)" in _row(gemini, "training")
    fireworks = ok("catalog", "show", "fireworks.api")
    assert "routed onward" in fireworks
    assert "feature stored_response" in fireworks
    vllm = ok("catalog", "show", "self_hosted.vllm")
    assert "never stale" in vllm


def test_catalog_list_shows_oldest_fact_confidence_and_conflicts() -> None:
    out = ok("catalog", "--provider", "mistral")
    for column in ("oldest fact", "confidence", "conflicts"):
        assert column in out
    [free] = [row for row in out.split("├") if "│ mistral.api_free " in row]
    cell = " ".join(line.split("│")[1].strip() for line in free.splitlines() if line.startswith("│"))
    assert "confidence: training low" in cell
    assert "conflicts: training" in cell  # the conflicting fact is named
    gemini = ok("catalog", "--provider", "google")
    assert "2025-05-20 stale" in gemini
