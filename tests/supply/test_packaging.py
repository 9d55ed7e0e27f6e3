"""pyproject.toml's `license`: an SPDX expression, which is what keeps `pip install` quiet.

From setuptools 77, `license = { text = ... }` is deprecated (a warning on every install, an error
after 2027-02-18) in favour of an SPDX expression (PEP 639), which setuptools before 77 cannot
read. The build uses the setuptools of requirements-build.lock (`--no-build-isolation`), which
tests/supply/test_setup_command.py checks against `build-system.requires`; this pins the other half.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_license_is_an_spdx_expression_and_the_build_can_read_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    requires = map(Requirement, project["build-system"]["requires"])
    [setuptools] = [r for r in requires if r.name == "setuptools"]
    assert not setuptools.specifier.contains("76.9"), setuptools  # 77 is the first that reads it
