"""The README's set-up command: every step hash-checked, and it works with an old bundled pip.

`.ci/run` runs the command verbatim on a fresh venv; these tests pin the properties that made it
work (and that a tidy-up could lose) without needing the network.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def readme_command(n: int) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"# {n}. "))
    return lines[index + 1]


def locked(lock: str) -> dict[str, tuple[Version, list[str]]]:
    entries: dict[str, tuple[Version, list[str]]] = {}
    name = ""
    for raw in (ROOT / lock).read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", raw):
            name = match.group(1).lower()
            entries[name] = (Version(match.group(2)), [])
        elif name and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", raw)):
            entries[name][1].append(digest.group(1))
    return entries


def test_every_install_step_is_hash_checked_or_builds_offline() -> None:
    steps = [step.strip() for step in readme_command(1).split("&&")]
    installs = [step for step in steps if " install " in step]
    assert installs, steps
    for step in installs:
        assert "--require-hashes" in step or {"--no-deps", "--no-build-isolation"} <= set(step.split()), step


def test_the_installer_is_replaced_before_the_main_lock() -> None:
    steps = readme_command(1)
    assert steps.startswith("python3 -m venv .venv && ")
    assert steps.index("requirements-build.lock") < steps.index("requirements.lock")
    # pip before 23.3 refuses a lock whose packages depend on extras under --require-hashes
    pip, hashes = locked("requirements-build.lock")["pip"]
    assert pip >= Version("23.3") and hashes


def test_the_locked_backend_satisfies_the_build_requirements() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    backend = locked("requirements-build.lock")
    for requirement in build["requires"]:
        name, _, spec = re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?(.*)", requirement).groups()  # type: ignore[union-attr]
        assert name.lower() in backend, f"{name} is a build requirement but not in requirements-build.lock"
        version, hashes = backend[name.lower()]
        assert version in SpecifierSet(spec) and hashes, requirement


def test_the_test_command_is_the_one_ci_runs() -> None:
    assert readme_command(2) == ".venv/bin/pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command 1" in ci and "readme_command 2" in ci
