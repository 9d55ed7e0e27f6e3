"""The demo config is package data: in the built wheel, and one file with `config/demo.yaml`.

The wheel is built as `pip install <checkout>` builds it (`pip wheel --no-deps --no-build-isolation`,
with the setuptools of requirements-build.lock, from a copy of the sources so that nothing is written
into the checkout) and installed with pip into a fresh virtual environment of its own, console
script included. Its dependencies come from this environment's site-packages, less the editable
install of the checkout, through links in a folder that a `.pth` line adds. The tests check that
the checkout stays out.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from gateway.config import load_config
from gateway.demo import demo_config
from tests.cli.support import clean_env, printed_command
from tests.conftest import DEMO_KEY
from tests.gateway.support import free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("__editable__", "sluice-")


def test_config_demo_yaml_is_the_packaged_file() -> None:
    with demo_config() as packaged:
        assert (ROOT / "config" / "demo.yaml").resolve() == packaged.resolve(), "a link, not a copy"
        assert load_config(packaged).demo


def _run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


IGNORED = ("__pycache__", "*.pyc")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment with Sluice installed from its wheel (not editable); its interpreter."""
    setuptools = pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    if tuple(int(part) for part in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip(f"setuptools {setuptools.__version__} cannot build wheels (requirements-build.lock)")
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns(*IGNORED)
    for package in ("gateway", "policies"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    shutil.copytree(ROOT / "fakes", source / "fakes", ignore=shutil.ignore_patterns(*IGNORED, "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root)]
    _run([*build, str(source)])
    _run([*build, str(source / "fakes")])
    (wheel,) = root.glob("sluice-*.whl")
    (fakes,) = root.glob("sluice_fakes-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel), str(fakes)])
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    )
    deps = root / "deps"
    deps.mkdir()
    for folder in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
        for entry in Path(folder).iterdir():
            if not entry.name.startswith(LEFT_OUT) and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    (site / "sluice-deps.pth").write_text(f"{deps}\n")
    shutil.rmtree(source)
    yield python


def test_the_wheel_carries_the_demo_config_and_no_test_fakes(installed: Path) -> None:
    (wheel,) = installed.parents[2].glob("sluice-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "gateway/demo/demo.yaml" in names
    assert not [name for name in names if name.startswith(("sluice_fakes/", "gateway/testing/"))]


def test_the_installed_package_reads_its_demo_config(installed: Path) -> None:
    code = (
        "import importlib.resources as r, gateway; print(gateway.__file__); "
        "print(r.files('gateway.demo').joinpath('demo.yaml').is_file())"
    )
    where, found = _run([str(installed), "-c", code], cwd=installed.parent).stdout.split()
    assert Path(where).is_relative_to(installed.parent.parent), "the built copy, not the checkout"
    assert found == "True"


@pytest.mark.e2e
def test_the_installed_demo_runs_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    """Also: a database named by SLUICE_DATABASE_URL wins over the demo's own and is not printed; the
    printed Python one-liner and `keys create` work as printed."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    chosen = tmp_path / "chosen.db"
    env = clean_env(tmp_path) | {"SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{chosen}"}
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(installed.parent / "sluice"), "demo", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=DEMO_KEY, max_retries=0) as client:
            answer = client.chat.completions.create(
                model="claude-sonnet", messages=[{"role": "user", "content": "Hello"}]
            )
        assert answer.choices[0].message.content
        # what the demo prints, without the log lines (which name the database, passwords masked)
        printed = "\n".join(line for line in log.read_text().splitlines() if not line.startswith("20"))
        assert f"config:      {installed.parent.parent}" in printed, "the packaged config"
        assert "database:    the one SLUICE_DATABASE_URL names" in printed and str(chosen) not in printed
        assert chosen.is_file()
        sdk = _run(printed_command(log, "from openai import OpenAI"), cwd=cwd, env=env)
        assert sdk.stdout.startswith("api-channel"), "openai comes with litellm: no install hint needed"
        assert "pip install openai" not in printed
        keys = printed_command(log, " keys create ")
        assert keys[0] == str(installed.parent / "sluice"), "the console script of this installation"
        created = _run(keys, cwd=cwd, env=env)
        assert created.stdout.startswith("sk-sluice-")
    finally:
        stop_process(proc)
    assert list(cwd.iterdir()) == []
    assert not list(tmp_path.glob("sluice-demo-*"))
