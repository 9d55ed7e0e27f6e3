"""Helpers for the tests that start `sluice demo` as a process and run what it prints."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def clean_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without Sluice's variables or a PYTHONPATH, and with TMPDIR=`tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LITELLM", "PYTHON"))}
    return env | {"TMPDIR": str(tmp), "NO_COLOR": "1"}


def printed_command(log: Path, marker: str) -> list[str]:
    """The one command line the demo printed containing `marker`, split as a POSIX shell splits it."""
    text = log.read_text()
    found = [line for line in text.splitlines() if line.startswith("  ") and marker in line]
    assert len(found) == 1, f"one printed line with {marker!r} expected:\n{text}"
    return shlex.split(found[0])
