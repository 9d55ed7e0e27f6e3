"""Supply-chain check, run by `.ci/run` after the install: fail on anything that should not be there.

- litellm 1.82.7 and 1.82.8 (the compromised PyPI releases of March 2026, which shipped a
  credential-stealing `litellm_init.pth`);
- installed versions below the fix of an advisory listed in the security checklist;
- any `*.pth` file in site-packages other than setuptools' own and the editable installs of Sluice
  and its fake upstream, or an
  allowed name whose content runs code it should not (a `.pth` line starting with `import` runs at
  every Python start);
- a lock file entry without a hash.

Vulnerability databases (osv.dev, PyPI's JSON API) are out of reach from this project's machines,
so known advisories are listed here with their sources instead of looked up.

    .venv/bin/python scripts/supply_chain.py [--site DIR] [--lock FILE ...]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from packaging.version import InvalidVersion, Version

COMPROMISED = {"litellm": {"1.82.7", "1.82.8"}}  # litellm issue #24521
# package -> (first fixed version, advisory); from shared/reference/security-checklist.md
FLOORS = {
    "litellm": ("1.83.9", "PYSEC-2026-4070: user_config smuggles api_base (<= 1.83.8)"),
    "h11": ("0.16.0", "CVE-2025-43859: request smuggling through chunked encoding"),
    "starlette": ("0.40.0", "CVE-2024-47874: multipart form DoS"),
}
EDITABLE = re.compile(r"__editable__\.sluice(?:_fakes)?-[0-9][0-9A-Za-z.+-]*\.pth")
SETUPTOOLS_PTH = "distutils-precedence.pth"
SETUPTOOLS_LINE = "import os; var = 'SETUPTOOLS_USE_DISTUTILS'"
# setuptools' editable install: a path, or an import of its own finder for this package, nothing else
EDITABLE_FINDER = re.compile(r"import (__editable___sluice_[0-9A-Za-z_]+_finder); \1\.install\(\)")


def version_problems(installed: Callable[[str], str | None]) -> list[str]:
    problems: list[str] = []
    for name, bad in COMPROMISED.items():
        found = installed(name)
        if found in bad:
            problems.append(f"{name} {found} is a known-compromised release")
    for name, (fixed, advisory) in FLOORS.items():
        found = installed(name)
        if found is None:
            continue
        try:
            too_old = Version(found) < Version(fixed)
        except InvalidVersion:
            problems.append(f"{name} has an unreadable version {found!r}")
            continue
        if too_old:
            problems.append(f"{name} {found} is older than {fixed}, which fixes {advisory}")
    return problems


def pth_problems(site: Path) -> list[str]:
    problems: list[str] = []
    for path in sorted(site.glob("*.pth")):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if path.name == SETUPTOOLS_PTH:
            if any(not line.startswith(SETUPTOOLS_LINE) for line in lines):
                problems.append(f"{path.name} does not hold setuptools' single line")
        elif EDITABLE.fullmatch(path.name):
            if any(line.startswith("import") and not EDITABLE_FINDER.fullmatch(line) for line in lines):
                problems.append(f"{path.name} runs code other than setuptools' editable finder")
        else:
            problems.append(f"unexpected .pth file in site-packages: {path.name}")
    return problems


def lock_problems(locks: Iterable[Path]) -> list[str]:
    """Every `name==version` entry of a `uv pip compile --generate-hashes` file carries a hash."""
    problems: list[str] = []
    for lock in locks:
        entry: str | None = None
        hashed = False
        for raw in [*lock.read_text().splitlines(), ""]:
            line = raw.strip()
            if line and not raw[0].isspace() and not line.startswith("#"):
                if entry is not None and not hashed:
                    problems.append(f"{lock.name}: {entry} has no hash")
                entry, hashed = line.split()[0], False
            elif line.startswith("--hash=sha256:"):
                hashed = True
            elif not line and entry is not None:
                if not hashed:
                    problems.append(f"{lock.name}: {entry} has no hash")
                entry = None
    return problems


def pinned_hashes(lock: Path, name: str) -> tuple[str | None, list[str]]:
    """The version and hashes the lock pins for `name` (for the record in CI's output)."""
    version: str | None = None
    hashes: list[str] = []
    for raw in lock.read_text().splitlines():
        line = raw.strip()
        if not raw[:1].isspace():
            if version is not None:
                break
            if line.lower().startswith(f"{name}=="):
                version = line.split("==", 1)[1].split()[0]
        elif version is not None and line.startswith("--hash=sha256:"):
            hashes.append(line.removeprefix("--hash=").rstrip(" \\"))
    return version, hashes


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check(site: Path, locks: Iterable[Path], installed: Mapping[str, str] | None = None) -> list[str]:
    lookup = installed.get if installed is not None else _installed
    return [*version_problems(lookup), *pth_problems(site), *lock_problems(locks)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument(
        "--lock", type=Path, action="append", default=None, help="lock files (default: requirements*.lock)"
    )
    args = parser.parse_args(argv)
    locks = args.lock or sorted(Path(__file__).resolve().parent.parent.glob("requirements*.lock"))
    problems = check(args.site, locks)
    for problem in problems:
        print(f"supply chain: {problem}", file=sys.stderr)
    if problems:
        return 1
    version, hashes = next(
        (pinned for lock in locks if (pinned := pinned_hashes(lock, "litellm"))[0] is not None), (None, [])
    )
    pth = sorted(p.name for p in args.site.glob("*.pth"))
    print(f"supply chain ok: litellm {_installed('litellm')} (locked {version}, {len(hashes)} wheel hashes)")
    print(f"  .pth files: {pth}; lock files: {[lock.name for lock in locks]}, every entry hashed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
