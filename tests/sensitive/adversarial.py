"""Inputs built to make each pattern do the most work per character (tests and bench/sensitive.py).

Each is a short unit repeated to the wanted size: runs of a pattern's own characters (which an
unanchored pattern would rescan from every position), prefixes repeated back to back (which make
every position a candidate start), and near-misses that fail only at the last character.
"""

from __future__ import annotations

UNITS: dict[str, str] = {
    "letters": "a",
    "spaces": " ",
    "newlines": "\n",
    "sk-prefix": "sk-",
    "sk-run": "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "akia": "AKIA",
    "ghp": "ghp_",
    "begin": "-----BEGIN ",
    "begin-spaces": "-----BEGIN A A A A A A A A A A A A A A A A A A A A A ",
    "eyJ": "eyJ",
    "eyJ-dot": "eyJaaaaaaaaaa.",
    "bearer": "bearer ",
    "basic": "Basic AAAA",
    "url": "://a:",
    "assignment": "password=",
    "assignment-name": "api_key_api_key_",
    "at": "@",
    "at-local": "a@",
    "at-labels": "a@a.",
    "plus": "+1 ",
    "paren": "(222) ",
    "digits": "4",
    "digit-space": "4 ",
    "digit-dash": "4-",
    "iban-head": "DE89 ",
    "caps": "AB12",
    "ssn-head": "123-45-",
    "dni-head": "X1234567",
    "nir-head": "1 84 12 ",
    "pnr-head": "850709-",
}


def build(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]
