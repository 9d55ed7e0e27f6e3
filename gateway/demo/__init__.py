"""What `sluice demo` ships and where it keeps its state.

What belongs here: the demo config packaged with Sluice (`demo.yaml` beside this file, read through
`importlib.resources`, so the demo runs from any folder after `pip install`; `config/demo.yaml` in
the checkout is a symbolic link to it), and the folder for the demo's database and audit spool.

The state goes to a fresh temporary folder, removed when the demo stops, rather than to the folder
the demo was started from (a surprise `sluice.db` there) or to `$XDG_STATE_HOME` (a database that
outlives the demo and collects its keys, so that a printed `sluice keys create --name ...` fails on
the second run). The demo prints the folder; `SLUICE_DATABASE_URL` and `SLUICE_AUDIT_SPOOL`, when
set, still win.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy.engine import URL

CONFIG_NAME = "demo.yaml"
DATABASE_NAME = "sluice.db"
SPOOL_NAME = "audit.spool"


@contextmanager
def demo_config() -> Iterator[Path]:
    """A file system path to the packaged demo config, valid inside the `with` block."""
    with resources.as_file(resources.files(__name__).joinpath(CONFIG_NAME)) as path:
        yield path


@contextmanager
def state_folder() -> Iterator[Path]:
    """A new private folder for one demo run (mode 0700), removed with its content afterwards."""
    with tempfile.TemporaryDirectory(prefix="sluice-demo-", ignore_cleanup_errors=True) as folder:
        yield Path(folder)


def database_url(folder: Path) -> str:
    """The SQLite URL of the demo's database in `folder`."""
    return URL.create("sqlite+aiosqlite", database=str(folder / DATABASE_NAME)).render_as_string()
