"""The audit spool: an append-only local file that holds ledger rows while the database is away.

What belongs here: appending rows (JSON lines, metadata only, fsynced) and handing them back, in
order, for replay. Several processes of one host may share the file (`sluice serve --workers N`):
an append takes an exclusive `flock` and checks it holds the file still at the path; a replay
first *claims* the file by renaming it to `<path>.replay-<time>-<pid>` under the same lock, so no
append is lost to a replay, and replays claimed files oldest first. Replaying a claimed file twice
is harmless: the ledger skips rows it already holds (writer, seq). `problem()` is the start-up
probe that the file can be written at all.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path

from gateway.storage.chain import Row, from_json, to_json

log = logging.getLogger("sluice.audit")
CLAIM_MARK = ".replay-"


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def problem(self) -> str | None:
        """Why rows could not be spooled at this path, or None. A start-up probe, so that a folder
        this process cannot write (a root-owned volume, say) shows at once, not during the first
        database outage: it creates the folder, creates and removes a file in it (as `append` and
        `claim` do), and opens an existing spool for appending. Nothing is written to the spool."""
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            return f"{folder} is not a folder"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f".{self.path.name}.probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"cannot create files in {folder} ({exc.strerror or type(exc).__name__})"
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"cannot append to {self.path} ({exc.strerror or type(exc).__name__})"
        return None

    def _claims(self) -> list[Path]:
        prefix = self.path.name + CLAIM_MARK
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        return sorted(self.path.parent / n for n in names if n.startswith(prefix))

    def append(self, rows: Sequence[Row]) -> None:
        """Append and fsync; raises OSError when the file cannot be written."""
        if not rows:
            return
        data = b"".join(to_json(row) + b"\n" for row in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    continue  # claimed between open and lock: write to the new file
                if current != os.fstat(fd).st_ino:
                    continue
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    def pending(self) -> bool:
        """Whether any rows wait for replay (in the file or in claimed files)."""
        try:
            if self.path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
        return bool(self._claims())

    def claim(self) -> list[Path]:
        """Move the file aside for replay; every claimed file, oldest first."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return self._claims()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            if same and os.fstat(fd).st_size > 0:
                target = self.path.with_name(
                    f"{self.path.name}{CLAIM_MARK}{time.time_ns():020d}-{os.getpid()}"
                )
                os.rename(self.path, target)
        except FileNotFoundError:
            pass  # another process claimed it first
        finally:
            os.close(fd)
        return self._claims()

    @staticmethod
    def batches(claimed: Path, size: int) -> Generator[list[Row]]:
        """The rows of a claimed file in order, `size` at a time; a damaged line is logged and skipped."""
        batch: list[Row] = []
        try:
            handle = claimed.open("rb")
        except FileNotFoundError:
            return  # replayed and removed by another process
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    batch.append(from_json(line))
                except (ValueError, TypeError) as exc:
                    log.error("audit spool %s line %d is damaged (%s); skipped", claimed, number, exc)
                    continue
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    @staticmethod
    def remove(claimed: Path) -> None:
        claimed.unlink(missing_ok=True)
