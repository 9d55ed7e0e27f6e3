"""Linear-time patterns: the rule every detector pattern follows, and the check that enforces it.

What belongs here: `linear_problem()`, which refuses a pattern that Python's backtracking `re`
could run in more than linear time, and `compile_linear()`. Built-in patterns and the operator's
`custom` patterns go through the same check (the latter at config load, one line per problem).

Why these rules give linear time. A backtracking engine goes super-linear in two ways: nested or
adjacent quantifiers that can split the same characters many ways (`(a+)+`, `(a|a)*`), and an
unbounded repeat retried from every start position of a long run (`\\w+@` on a megabyte of
letters is quadratic). So a pattern here:

- has no repeat inside a repeat, no backreference and no conditional (no exponential splits);
- bounds its width (every repeat has a maximum; the whole match at most `MAX_WIDTH` characters),
  so the work from one start position is bounded by a constant of the pattern, never by the input.

Built-in patterns also start with a lookbehind that refuses a start inside a run of the
characters they consume, and use possessive repeats, so a run is scanned once, not once per
position (bench/sensitive.py measures this on inputs built to defeat it).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

MAX_WIDTH = 8192
_parser: Any = importlib.import_module("re._parser")  # CPython's own pattern parser (3.11+)
_constants: Any = importlib.import_module("re._constants")
_REPEATS = {_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT}
_REFUSED = {_constants.GROUPREF: "a backreference", _constants.GROUPREF_EXISTS: "a conditional"}


def _walk(items: Any, in_repeat: bool) -> str | None:
    for op, arg in items:
        if op in _REFUSED:
            return f"{_REFUSED[op]} is not allowed"
        if op in _REPEATS and arg[1] <= 1:  # optional (`?`): tried at most twice, never repeated
            found = _walk(arg[2], in_repeat)
        elif op in _REPEATS:
            if in_repeat:
                return "a repeat inside a repeat can take exponential time (e.g. (a+)+)"
            found = _walk(arg[2], True)
        elif op is _constants.BRANCH:
            if in_repeat and len(arg[1]) > 1:
                return "an alternation inside a repeat can take exponential time (e.g. (a|ab)*)"
            found = next((p for b in arg[1] if (p := _walk(b, in_repeat))), None)
        elif op is _constants.SUBPATTERN:
            found = _walk(arg[3], in_repeat)
        elif op in (_constants.ATOMIC_GROUP,):
            found = _walk(arg, in_repeat)
        elif op in (_constants.ASSERT, _constants.ASSERT_NOT):
            found = _walk(arg[1], in_repeat)
        else:
            found = None
        if found:
            return found
    return None


def linear_problem(pattern: str) -> str | None:
    """Why `pattern` could take more than linear time (or does not compile), or None."""
    try:
        parsed = _parser.parse(pattern, 0)
    except re.error as exc:
        return f"not a valid regular expression: {exc.msg}"
    found = _walk(parsed, False)
    if found:
        return found
    if parsed.getwidth()[1] > MAX_WIDTH:
        return f"unbounded or wider than {MAX_WIDTH} characters: give every repeat a maximum, e.g. {{1,64}}"
    return None


def compile_linear(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a pattern that passed `linear_problem` (a built-in one that does not is a bug)."""
    problem = linear_problem(pattern)
    if problem:
        raise ValueError(f"pattern {pattern!r}: {problem}")
    return re.compile(pattern, flags)
