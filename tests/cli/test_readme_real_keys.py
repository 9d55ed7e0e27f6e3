"""The README's "Run it with real keys" steps, verbatim, on the example `.env` as copied.

The block's lines up to `sluice check` run in `bash` in a fresh folder holding a copy of `config/`
(the example `.env` among it) and `.venv` pointing at this interpreter's environment, with no
provider key or `SLUICE_*` variable from the shell: what a newcomer who has not filled in `.env`
yet gets. `sluice serve` (the last line) is left out: it would not return.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Run it with real keys"


def readme_steps() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(SECTION) :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, f"no bash block under {SECTION!r}"
    lines = block.group(1).splitlines()
    last = next(i for i, line in enumerate(lines) if "sluice check" in line)
    return "\n".join(lines[: last + 1]) + "\n"


def test_the_steps_check_the_example_as_copied(tmp_path: Path) -> None:
    steps = readme_steps()
    assert steps.startswith("cp config/.env.example .env")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    assert (tmp_path / ".venv" / "bin" / "sluice").exists(), "the sluice script of this environment"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        ["bash", "-c", "set -e\n" + steps],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config/sluice.yaml: OK" in proc.stdout
    assert "invalid settings" not in proc.stderr
    assert re.search(r"\d+ deployment\(s\) unavailable", proc.stdout)
