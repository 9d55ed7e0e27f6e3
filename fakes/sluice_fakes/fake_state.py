"""The fake upstream's test-facing state: recorded requests and the queue of scripted faults.

What belongs here: `RecordedRequest` (what tests assert on) and `Journal`, which holds the records
and the control-API script queue behind one lock, because a `FakeUpstream.in_thread()` fake is
read and scripted from the test thread while its event loop thread serves requests.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

from sluice_fakes.fake_directives import parse_directives


@dataclasses.dataclass(slots=True)
class RecordedRequest:
    """What the fake received; ``client_closed_at`` is set when the client left mid-response.

    ``connection`` numbers the TCP connection (1, 2, ...) so tests can see keep-alive reuse;
    ``directives`` is the fault text that applied (script, model name, body markers, in order).
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float
    wire: str | None
    directives: str
    connection: int
    client_closed_at: float | None = None
    completed: bool = False

    @property
    def client_closed_early(self) -> bool:
        return self.client_closed_at is not None and not self.completed

    def to_json(self) -> dict[str, Any]:
        value = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        value["body"] = self.body.decode("utf-8", "replace")
        value["client_closed_early"] = self.client_closed_early
        return value


class Journal:
    """Thread-safe recorded requests plus the FIFO of ``[directives, remaining]`` scripts."""

    def __init__(self, *, record: bool) -> None:
        self.record_enabled = record
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: collections.deque[list[Any]] = collections.deque()

    def add(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def snapshot(self, since: int = 0) -> list[RecordedRequest]:
        with self._lock:
            return self._requests[since:]

    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._scripts.clear()

    def script(self, directives: str, times: int) -> None:
        parse_directives(directives)  # raise DirectiveError now, not on the victim request
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._scripts.append([directives, times])

    def next_script(self) -> str:
        """The directives for the next wire request ("" when nothing is queued)."""
        with self._lock:
            if not self._scripts:
                return ""
            entry = self._scripts[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self._scripts.popleft()
            return str(entry[0])
