"""Two real `sluice serve` processes on one PostgreSQL: a key revoked through one of them, or with
`sluice keys revoke`, gets 401 on the other's next requests (polled with a bound), pushed by
LISTEN/NOTIFY rather than looked up per request. Runs scripts/key_propagation.py, the script whose
figures docs/storage.md records, on this test's database.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "key_propagation.py"


async def test_a_revocation_reaches_the_other_serve_process(pg_url: str) -> None:
    command = [sys.executable, str(SCRIPT), "--revocations", "5", "--cli", "2", "--bound", "10"]
    command += ["--database-url", pg_url, "--json"]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["admin_api"]["n"] == 5 and result["admin_api"]["within_bound"]
    assert result["cli"]["n"] == 2 and result["cli"]["within_bound"]
    seen = result["b_metrics"]
    assert seen["sluice_key_cache_channel_up"] == 1
    # B learnt each key from its create message (or looked it up at its first use), and looked it
    # up once more after its revocation: at most two lookups per key, however many polls it took.
    assert 7 <= seen['sluice_key_cache_events_total{event="database"}'] <= 2 * 7
