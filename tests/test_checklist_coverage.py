"""docs/checklist.md maps every item of the security checklist to the tests that prove it.

This keeps the map honest: every one of the items (the checklist's 47, and those the attack of
issue 11 added) has a row under its own heading; every test and script it names exists (a file, and a
test function in it); an item without a test either says why it does not apply or names the script
that measures it.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "checklist.md"
HEADINGS = {
    "A": ("Auth", 7),
    "I": ("Input validation", 16),
    "S": ("SSRF / egress", 6),
    "P": ("Privacy leakage", 7),
    "Q": ("Policy bypass", 4),
    "U": ("Upstream faults", 7),
    "T": ("Streaming faults", 6),
    "L": ("Load", 6),
}
ROW = re.compile(r"^\| ([AISPQUTL]\d+) \|(.*)$")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
SCRIPT_REF = re.compile(r"`((?:scripts|bench)/[\w/]+\.py)`")


def rows() -> dict[str, tuple[str, str]]:
    """item id -> (the heading it sits under, the rest of its row)."""
    found: dict[str, tuple[str, str]] = {}
    heading = ""
    for line in MAP.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        match = ROW.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} has two rows"
            found[match.group(1)] = (heading, match.group(2))
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def test_every_item_has_a_row_under_its_heading() -> None:
    found = rows()
    expected = {f"{letter}{n}" for letter, (_, count) in HEADINGS.items() for n in range(1, count + 1)}
    assert len(expected) == 47 + 12  # S6, P6, U7; A7, I11-I16, P7, L6 (issue 11)
    assert sorted(expected - found.keys()) == []
    assert sorted(found.keys() - expected) == []
    misplaced = {item: heading for item, (heading, _) in found.items() if heading != HEADINGS[item[0]][0]}
    assert misplaced == {}


def test_every_named_test_exists() -> None:
    missing = []
    for item, (_, row) in rows().items():
        for path, name in TEST_REF.findall(row):
            if not (ROOT / path).is_file() or name not in defined_tests(path):
                missing.append(f"{item}: {path}::{name}")
        missing += [f"{item}: {path}" for path in SCRIPT_REF.findall(row) if not (ROOT / path).is_file()]
    assert missing == []


def test_an_item_without_a_test_says_why_it_does_not_apply() -> None:
    unexplained = []
    for item, (_, row) in rows().items():
        if TEST_REF.search(row) or ("Measured by a script" in row and SCRIPT_REF.search(row)):
            continue
        reason = row.split("Does not apply:", 1)
        if len(reason) != 2 or len(reason[1].strip(" |")) < 20:
            unexplained.append(item)
    assert unexplained == []
