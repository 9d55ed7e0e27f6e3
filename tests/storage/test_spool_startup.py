"""Start-up refuses an audit spool it cannot write, with one clear line, before anything listens.

Without this check a spool folder the process cannot write (Docker's root-owned volume under a
non-root user) showed only during the first database outage, when records were already at risk.
The tests run as root on CI, where permission bits do not stop a write: they make the spool's
folder a regular file, or the spool itself a folder, which stops root as well.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.config import ConfigError
from gateway.settings import Settings
from gateway.storage.spool import Spool
from tests.conftest import ROOT
from tests.storage.conftest import free_port


def _blocked(tmp_path: Path) -> Path:
    """A spool path whose folder is a regular file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    return blocker / "audit.spool"


def test_a_writable_spool_has_no_problem_and_is_left_untouched(tmp_path: Path) -> None:
    spool = tmp_path / "deep" / "er" / "audit.spool"
    assert Spool(spool).problem() is None
    assert spool.parent.is_dir(), "the folder is created, as the first append would"
    assert list(spool.parent.iterdir()) == [], "the probe leaves nothing behind"
    spool.write_bytes(b'{"a": 1}\n')
    assert Spool(spool).problem() is None
    assert spool.read_bytes() == b'{"a": 1}\n'


def test_spool_problems_are_named(tmp_path: Path) -> None:
    problem = Spool(_blocked(tmp_path)).problem()
    assert problem is not None and "not-a-folder is not a folder" in problem
    below = _blocked(tmp_path).parent / "sub" / "audit.spool"
    problem = Spool(below).problem()
    assert problem is not None and "cannot create files in" in problem
    as_folder = tmp_path / "spool-is-a-folder"
    as_folder.mkdir()
    problem = Spool(as_folder).problem()
    assert problem is not None and f"cannot append to {as_folder}" in problem


def test_create_app_refuses_an_unwritable_spool(tmp_path: Path) -> None:
    settings = Settings(
        config=ROOT / "config" / "sluice.yaml",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        audit_spool=_blocked(tmp_path),
    )
    with pytest.raises(ConfigError) as raised:
        create_app(settings)
    [line] = str(raised.value).splitlines()
    assert line.startswith(f"audit spool {settings.audit_spool}: ")
    assert "SLUICE_AUDIT_SPOOL" in line


def test_sluice_serve_refuses_an_unwritable_spool_in_one_line(tmp_path: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "sluice"
    spool = _blocked(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_") and k != "PYTHONPATH"}
    env |= {
        "SLUICE_CONFIG": str(ROOT / "config" / "sluice.yaml"),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(spool),
        "SLUICE_PORT": str(free_port()),
        "NO_COLOR": "1",
    }
    # Without the check the server would start and listen: the timeout turns that into a failure.
    proc = subprocess.run(
        [str(script), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"sluice: audit spool {spool}: {spool.parent} is not a folder;")
    assert "SLUICE_AUDIT_SPOOL" in line
    assert not (tmp_path / "sluice.db").exists(), "refused before the database was touched"
