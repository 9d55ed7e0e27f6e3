"""`sluice demo` started as a newcomer would: the console script, from an empty folder outside the
checkout, with no `SLUICE_*` variables; then every command it prints, run exactly as printed.

The demo keeps its database and spool in a temporary folder; `TMPDIR` points at a folder of this test
so that the test can see the state appear while the demo runs and vanish when it stops.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from gateway.cli.demo import Commands, try_lines
from tests.cli.support import clean_env, printed_command
from tests.conftest import DEMO_KEY
from tests.gateway.support import free_port, stop_process, wait_healthy
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    base_url: str
    log: Path
    cwd: Path  # where it was started: an empty folder outside the checkout
    tmp: Path  # its TMPDIR
    env: dict[str, str]

    def printed(self, marker: str) -> list[str]:
        return printed_command(self.log, marker)

    def run_printed(self, marker: str) -> subprocess.CompletedProcess[str]:
        argv = self.printed(marker)
        return subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )


def sluice_script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / "sluice"
    assert script.is_file(), f"the sluice console script is not installed at {script}"
    return script


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo-elsewhere")
    cwd, tmp = root / "empty", root / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = clean_env(tmp)
    port = free_port()
    log = root / "demo.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(sluice_script()), "demo", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        yield Demo(proc, f"http://127.0.0.1:{port}/v1", log, cwd, tmp, env)
    finally:
        stop_process(proc)


def test_the_demo_answers_the_openai_sdk_when_started_outside_the_checkout(demo: Demo) -> None:
    with OpenAI(base_url=demo.base_url, api_key=DEMO_KEY, max_retries=0, timeout=60) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
    assert raw.headers["x-privacy-decision"] == "allowed"
    assert raw.parse().choices[0].message.content
    assert list(demo.cwd.iterdir()) == [], "the demo writes nothing to the folder it was started from"
    (state,) = demo.tmp.glob("sluice-demo-*")
    assert (state / "sluice.db").is_file()
    printed = demo.log.read_text()
    assert f"database:    sqlite+aiosqlite:///{state}/sluice.db" in printed, "it says where its state is"
    assert f"audit spool: {state}/audit.spool" in printed


def test_the_printed_curl_command_works_as_printed(demo: Demo) -> None:
    done = demo.run_printed("curl ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200"), done.stdout
    assert "x-privacy-badges: api-channel" in done.stdout.lower()


def test_the_printed_python_one_liner_works_as_printed(demo: Demo) -> None:
    argv = demo.printed("from openai import OpenAI")
    assert Path(argv[0]).resolve() == Path(sys.executable).resolve(), "the interpreter that runs Sluice"
    done = demo.run_printed("from openai import OpenAI")
    assert done.returncode == 0, done.stderr
    badges, content = done.stdout.splitlines()[:2]
    assert badges.startswith("api-channel") and content


def test_the_printed_keys_command_makes_a_key_the_running_demo_accepts(demo: Demo) -> None:
    created = demo.run_printed(" keys create ")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk-sluice-")
    with OpenAI(base_url=demo.base_url, api_key=key, max_retries=0, timeout=60) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}]
        )
    assert raw.headers["x-privacy-decision"] == "rerouted"
    assert raw.headers["x-privacy-rerouted-from"] == "deepseek-chat"


def test_the_printed_audit_command_shows_the_demo_ledger(demo: Demo) -> None:
    body = {"model": "gemini-flash-free", "messages": [{"role": "user", "content": "Hi"}]}
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    blocked = httpx.post(f"{demo.base_url}/chat/completions", headers=auth, json=body, timeout=60)
    assert blocked.status_code == 403

    def shown() -> str | None:
        done = demo.run_printed(" audit tail")
        assert done.returncode == 0, done.stderr
        return done.stdout if "gemini-flash-free" in done.stdout else None

    assert "blocked" in wait_until(shown, "the blocked request in the ledger")


def test_a_stopped_demo_leaves_nothing_behind(demo: Demo) -> None:
    assert stop_process(demo.proc) == -signal.SIGTERM, "after a graceful shutdown, as `sluice serve`"
    assert list(demo.cwd.iterdir()) == []
    assert list(demo.tmp.glob("sluice-demo-*")) == [], "its temporary folder is removed"


def test_without_the_openai_sdk_the_demo_prints_how_to_install_it_first() -> None:
    commands = Commands(
        base="http://127.0.0.1:8080/v1",
        python="/opt/my env/bin/python",
        sluice=["/opt/my env/bin/sluice"],
        openai_installed=False,
        config=Path("/opt/my env/demo.yaml"),
        database_url="sqlite+aiosqlite:////tmp/sluice-demo-x/sluice.db",
    )
    lines = try_lines(commands)
    install = next(i for i, line in enumerate(lines) if line.endswith("-m pip install openai"))
    one_liner = next(i for i, line in enumerate(lines) if "from openai import OpenAI" in line)
    assert shlex.split(lines[install]) == ["/opt/my env/bin/python", "-m", "pip", "install", "openai"]
    assert install < one_liner and shlex.split(lines[one_liner])[0] == "/opt/my env/bin/python"
    with_sdk = try_lines(Commands(**{**vars(commands), "openai_installed": True}))
    assert not any("pip install" in line for line in with_sdk)
