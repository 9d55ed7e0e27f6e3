"""Write the corpus figures (precision and recall per detector) into docs/sensitive.md.

    .venv/bin/python scripts/sensitive_corpus.py          # rewrite the table
    .venv/bin/python scripts/sensitive_corpus.py --check  # exit 1 if the doc is out of date

The corpus is tests/sensitive/corpus.py; the table sits between the `corpus:start` and
`corpus:end` markers of the doc (tests/sensitive/test_detectors.py checks it is current).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sensitive.corpus import table  # noqa: E402 (after the path)

DOC = ROOT / "docs" / "sensitive.md"
START, END = "<!-- corpus:start -->", "<!-- corpus:end -->"


def updated(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print(f"{DOC}: the corpus table is out of date; run scripts/sensitive_corpus.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
