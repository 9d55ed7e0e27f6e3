"""A database key's limits: set by `sluice keys create`, changed by `sluice keys update` and
`PATCH /admin/keys/{name}`, listed, and applied by a running gateway (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from gateway.settings import Settings
from tests.conftest import chat_body
from tests.helpers import until
from tests.storage.conftest import MASTER, app_on, asgi
from tests.storage.support import sluice


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_limits_set_changed_and_applied(settings: Settings) -> None:
    url = settings.database_url
    run = await sluice("keys", "create", "--name", "interns", "--rpm", "2", "--tpm", "100000", url=url)
    assert run.exit_code == 0, run.output
    key = run.stdout.strip()
    listed = json.loads((await sluice("keys", "list", "--json", url=url)).stdout)
    assert [(k["rpm"], k["tpm"], k["max_concurrency"]) for k in listed] == [(2, 100000, None)]
    async with asgi(app_on(settings)) as http:
        codes = [
            (await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body())).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        # The admin API raises it; the gateway applies the new limit on the key's next request.
        patched = await http.patch("/admin/keys/interns", headers=MASTER, json={"rpm": 100})
        assert patched.status_code == 200 and patched.json()["rpm"] == 100

        async def served() -> bool:
            answer = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
            return answer.status_code == 200

        await until(served, "the raised limit to reach the gateway")
        assert (await http.patch("/admin/keys/interns", headers=MASTER, json={"rpm": -1})).status_code == 400
        assert (await http.patch("/admin/keys/interns", headers=MASTER, json={})).status_code == 400
        assert (await http.patch("/admin/keys/nobody", headers=MASTER, json={"rpm": 1})).status_code == 404
    updated = await sluice("keys", "update", "interns", "--max-concurrency", "3", "--default", "rpm", url=url)
    assert updated.exit_code == 0, updated.output
    assert "max_concurrency 3" in updated.stdout and "rpm" not in updated.stdout
    listed = json.loads((await sluice("keys", "list", "--json", url=url)).stdout)
    assert [(k["rpm"], k["tpm"], k["max_concurrency"]) for k in listed] == [(None, 100000, 3)]
    assert (await sluice("keys", "update", "interns", url=url)).exit_code == 2
    assert (await sluice("keys", "update", "interns", "--default", "speed", url=url)).exit_code == 2
    assert (await sluice("keys", "update", "nobody", "--rpm", "1", url=url)).exit_code == 1
