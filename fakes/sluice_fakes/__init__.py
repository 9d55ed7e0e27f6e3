"""The fake LLM upstream server: the stand-in for real providers (not part of the product).

What belongs here: helpers that `sluice demo`, the tests, end-to-end suites and benchmarks import
to stand in for real providers. This package is its own distribution (`fakes/pyproject.toml`), so
the `sluice` wheel ships no fault injection. `FakeUpstream` is imported lazily so
``python -m sluice_fakes.fake_upstream`` does not import its own module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice_fakes.fake_upstream import FakeUpstream, RecordedRequest

__all__ = ["FakeUpstream", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sluice_fakes import fake_upstream

        return getattr(fake_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
