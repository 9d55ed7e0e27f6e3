"""The supply-chain check `.ci/run` runs (checklist S5): this install passes; each bad input fails."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "supply_chain.py"
FINDER = "import __editable___sluice_0_1_0_finder; __editable___sluice_0_1_0_finder.install()"
SETUPTOOLS = "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local') == 'local'"
GOOD = {"litellm": "1.110.2", "h11": "0.16.0", "starlette": "1.10.0"}
LOCK = "orjson==3.11.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via sluice\n"


@pytest.fixture(scope="module")
def chain() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supply_chain", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_with(tmp_path: Path, files: dict[str, str]) -> Path:
    site = tmp_path / "site-packages"
    site.mkdir()
    for name, text in files.items():
        (site / name).write_text(text + "\n")
    return site


def lock_with(tmp_path: Path, text: str = LOCK) -> Path:
    lock = tmp_path / "requirements.lock"
    lock.write_text(text)
    return lock


def test_this_install_passes() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "supply chain ok: litellm" in done.stdout


def test_a_clean_site_passes(chain: ModuleType, tmp_path: Path) -> None:
    site = site_with(
        tmp_path, {"distutils-precedence.pth": SETUPTOOLS, "__editable__.sluice-0.1.0.pth": FINDER}
    )
    assert chain.check(site, [lock_with(tmp_path)], installed=GOOD) == []


@pytest.mark.parametrize("version", ["1.82.7", "1.82.8"])
def test_compromised_litellm_fails(chain: ModuleType, tmp_path: Path, version: str) -> None:
    problems = chain.check(site_with(tmp_path, {}), [], installed={**GOOD, "litellm": version})
    assert any("known-compromised" in p for p in problems)


@pytest.mark.parametrize(
    ("name", "version"), [("litellm", "1.83.8"), ("h11", "0.14.0"), ("starlette", "0.39.2")]
)
def test_versions_below_an_advisory_fix_fail(
    chain: ModuleType, tmp_path: Path, name: str, version: str
) -> None:
    problems = chain.check(site_with(tmp_path, {}), [], installed={**GOOD, name: version})
    assert [p for p in problems if p.startswith(f"{name} {version} is older than")]


@pytest.mark.parametrize(
    "files",
    [
        {"litellm_init.pth": "import os; os.system('curl evil')"},  # the March 2026 payload's file name
        {"__editable__.evil-1.0.pth": "/tmp/evil"},
        {"__editable__.sluice-0.1.0.pth": "import base64; exec(base64.b64decode('cHJpbnQoMSk='))"},
        {"distutils-precedence.pth": SETUPTOOLS + "\nimport evil"},
    ],
    ids=["unknown-name", "other-editable", "editable-runs-code", "setuptools-extra-line"],
)
def test_unexpected_pth_files_fail(chain: ModuleType, tmp_path: Path, files: dict[str, str]) -> None:
    assert chain.check(site_with(tmp_path, files), [], installed=GOOD)


def test_an_unhashed_lock_entry_fails(chain: ModuleType, tmp_path: Path) -> None:
    lock = lock_with(tmp_path, LOCK + "requests==2.34.2\n    # via sluice\n")
    assert chain.check(site_with(tmp_path, {}), [lock], installed=GOOD) == [
        "requirements.lock: requests==2.34.2 has no hash"
    ]


def test_the_script_exits_1_on_a_problem(tmp_path: Path) -> None:
    site = site_with(tmp_path, {"litellm_init.pth": "import os"})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--site", str(site), "--lock", str(lock_with(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "unexpected .pth file in site-packages: litellm_init.pth" in done.stderr
