"""No pattern can take more than linear time: the structural rule, and inputs built to defeat it.

The proof is structural (`gateway.core.sensitive.patterns`): no repeat inside a repeat, no
backreference, and a bounded width, so the work from one start position is bounded by a constant
of the pattern; every built-in pattern passes it, and the operator's patterns must too (config
check). The adversarial inputs then show the Python side is linear as well: the number of check
calls (Luhn, mod-97, entropy, ...) per input grows at most with its length over a constant. Their
time is measured in bench/sensitive.py, not asserted here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from gateway.core.sensitive.detectors import OVERLAP, PII, SECRETS, WINDOW, Detector, Pattern, custom
from gateway.core.sensitive.patterns import MAX_WIDTH, linear_problem
from tests.sensitive.adversarial import UNITS, build

PATTERNS = [p for d in (SECRETS, PII) for p in d.patterns]


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_every_builtin_pattern_is_linear_by_construction(pattern: Pattern) -> None:
    assert linear_problem(pattern.regex.pattern) is None


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",
        "(a|aa)*b",
        "(a*)*",
        r"(\w+\s?)+$",
        "(x{1,10}){1,10}",
        r"(a)\1",
        "[a-z]+@",
        ".*x",
        "a{1,9999}",
    ],
)
def test_the_rule_refuses_the_classic_catastrophic_patterns(pattern: str) -> None:
    assert linear_problem(pattern) is not None


def test_keywords_compile_to_a_linear_pattern() -> None:
    detector = custom([], ["bluebird", "Project X", "a+b"])
    assert all(linear_problem(p.regex.pattern) is None for p in detector.patterns)
    assert detector.found("see project x now") and detector.found("A+B") and not detector.found("bluebirds")


def counting(detector: Detector) -> tuple[Detector, list[int]]:
    """The same detector, its checks counted (one list cell per call)."""
    calls: list[int] = []

    def wrap(check: Callable[[str], bool] | None) -> Callable[[str], bool] | None:
        if check is None:
            return None

        def counted(text: str) -> bool:
            calls.append(1)
            return check(text)

        return counted

    patterns = tuple(dataclasses.replace(p, check=wrap(p.check)) for p in detector.patterns)
    return dataclasses.replace(detector, patterns=patterns), calls


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_adversarial_inputs_stay_linear(unit: str) -> None:
    """Doubling the input at most doubles the checks run (plus a constant): no quadratic rescans."""
    for detector in (SECRETS, PII):
        counted, calls = counting(detector)
        sizes = (16_384, 32_768)
        per_size = []
        for size in sizes:
            calls.clear()
            text = build(UNITS[unit], size)
            counted.found(text)
            per_size.append(len(calls))
        assert per_size[1] <= 2 * per_size[0] + 2, (detector.id, per_size)
        assert per_size[1] <= sizes[1] // 2, (detector.id, per_size)  # at most one check per 2 characters


def test_width_bound_is_what_the_rule_says() -> None:
    assert linear_problem(f"a{{1,{MAX_WIDTH}}}") is None
    assert linear_problem(f"a{{1,{MAX_WIDTH + 1}}}") is not None


@pytest.mark.parametrize("offset", [-25, -19, -1, 0, 1, 7, OVERLAP - 30])
def test_windows_find_exactly_what_one_pass_finds(offset: int) -> None:
    """A text is searched one window at a time: a form across a window's end is still found, and one
    glued to a run of its own characters is still refused (the lookbehind sees the real text)."""
    key = "AKIAIOSFODNN7EXAMPLE"
    at = WINDOW + offset
    assert SECRETS.found(build("word ", at) + key + " tail")
    assert not SECRETS.found("A" * at + key + " tail")
    assert PII.found(build("word ", at) + "4111 1111 1111 1111 tail")
    assert SECRETS.found(build("word ", 3 * WINDOW + offset) + key)
