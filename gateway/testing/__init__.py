"""Test support shipped with the gateway: the fake LLM upstream server.

What belongs here: helpers that tests, end-to-end suites and benchmarks import to stand in for
real providers.  `FakeUpstream` is imported lazily so ``python -m gateway.testing.fake_upstream``
does not import its own module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.testing.fake_upstream import FakeUpstream, RecordedRequest

__all__ = ["FakeUpstream", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gateway.testing import fake_upstream

        return getattr(fake_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
