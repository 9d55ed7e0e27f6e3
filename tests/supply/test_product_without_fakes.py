"""The product ships no test fakes: the fake upstream is its own distribution (`fakes/`).

`sluice demo` is the one place the product reaches for it, lazily, and says how to install it
when it is missing; nothing else under `gateway/` or `policies/` imports it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports_of_fakes(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of every import of `sluice_fakes` in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(name.split(".")[0] == "sluice_fakes" for name in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_the_wheel_packages_exclude_the_fakes() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["gateway*", "policies*"]
    assert not (ROOT / "gateway" / "testing").exists()
    fakes = tomllib.loads((ROOT / "fakes" / "pyproject.toml").read_text())
    assert fakes["project"]["name"] != config["project"]["name"]


def test_only_the_demo_imports_the_fakes_and_only_lazily() -> None:
    users = {}
    for package in ("gateway", "policies"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if found := _imports_of_fakes(path):
                users[path.relative_to(ROOT).as_posix()] = found
    assert set(users) == {"gateway/cli/demo.py"}
    assert all(not at_top for _, at_top in users["gateway/cli/demo.py"])
