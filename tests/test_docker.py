"""Dockerfile and docker-compose.yml, read as an operator would (no Docker engine runs here).

- The image creates the folder that compose mounts the `spool` volume on, owned by the user the
  image runs as, and SLUICE_AUDIT_SPOOL points into it (a new named volume takes that owner).
- The container's command, with `.env` copied from config/.env.example and compose's environment,
  starts and turns ready: run here as a real `sluice serve` process, with the container's paths
  mapped to this checkout (the mounted config), a temporary folder (the spool volume) and SQLite
  (standing in for the `db` service, which only this test does not have).
- `docker-compose config -q` accepts the file, where Compose is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from tests.gateway.support import free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "config" / ".env.example"


def _service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    service: dict[str, Any] = compose["services"]["sluice"]
    return service


def _final_stage() -> list[str]:
    """The Dockerfile's last stage, one instruction per line (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in _final_stage():
        if line.upper().startswith("ENV "):
            env |= dict(pair.split("=", 1) for pair in line[4:].split())
    return env


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as Compose's `env_file` reads them (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def _mounts(service: dict[str, Any]) -> list[tuple[str, PurePosixPath]]:
    """(source, target) of each `volumes:` entry in short syntax."""
    mounts = []
    for entry in service["volumes"]:
        source, target, *_ = entry.split(":")
        mounts.append((source, PurePosixPath(target)))
    return mounts


def test_the_image_creates_the_spool_folder_compose_mounts_owned_by_its_user() -> None:
    service = _service()
    spool = PurePosixPath(service["environment"]["SLUICE_AUDIT_SPOOL"])
    [(volume, folder)] = [(s, t) for s, t in _mounts(service) if t in spool.parents]
    assert not volume.startswith((".", "/")), "a named volume: Docker fills it from the image, owner included"
    stage = _final_stage()
    [user_at] = [i for i, line in enumerate(stage) if line.upper().startswith("USER ")]
    user = stage[user_at].split()[1]
    creates = re.compile(rf"install -d -o {user} -g {user}\b.* {folder}\b")
    created = [line for line in stage[:user_at] if line.upper().startswith("RUN ") and creates.search(line)]
    assert created, f"no RUN before `USER {user}` creates {folder} owned by {user}"
    assert _image_env()["SLUICE_AUDIT_SPOOL"] == str(spool), "plain `docker run` spools to the same folder"


def test_the_container_command_starts_with_the_example_env(tmp_path: Path) -> None:
    service = _service()
    image_env = _image_env()
    container_env = image_env | _dotenv(ENV_EXAMPLE) | service["environment"]
    # The container's paths, mapped to this machine.
    mounted = {str(target): source for source, target in _mounts(service) if source.startswith("./")}
    config = ROOT / mounted[container_env["SLUICE_CONFIG"]]
    assert config.is_file()
    spool_name = PurePosixPath(container_env["SLUICE_AUDIT_SPOOL"]).name
    container_env |= {
        "SLUICE_CONFIG": str(config),
        "SLUICE_AUDIT_SPOOL": str(tmp_path / "spool" / spool_name),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        "SLUICE_HOST": "127.0.0.1",
        "SLUICE_PORT": str(free_port()),
    }
    command = next(line for line in reversed(_final_stage()) if line.upper().startswith("CMD "))
    argv = yaml.safe_load(command[4:])  # the exec form is a JSON (so YAML) list
    argv[0] = str(Path(sysconfig.get_path("scripts")) / argv[0])
    shell = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    log = tmp_path / "sluice.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=shell | container_env, stdout=sink, stderr=subprocess.STDOUT, text=True
        )
        try:
            root = f"http://127.0.0.1:{container_env['SLUICE_PORT']}"
            wait_healthy(proc, root, log)
            ready = httpx.get(f"{root}/readyz", timeout=5)
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            assert ready.json()["config"]["available_deployments"] >= 1, "self-hosted ones need no key"
        finally:
            stop_process(proc)
    output = log.read_text()
    assert "invalid settings" not in output


def test_compose_accepts_the_file(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "config", project / "config")
    shutil.copy(COMPOSE, project / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, project / ".env")  # env_file: .env must exist, as the README's step makes it
    proc = subprocess.run(
        [compose, "config", "-q"], cwd=project, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
