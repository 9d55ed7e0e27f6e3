"""The codes of `/admin/keys` refusals come from what was refused, never from the wording of a message."""

from __future__ import annotations

from gateway.settings import Settings
from tests.storage.conftest import MASTER, app_on, asgi


async def test_a_refusal_is_unknown_policy_only_for_an_unknown_policy(settings: Settings) -> None:
    async with asgi(app_on(settings)) as http:
        # Names and models that merely contain the word are no policy problem.
        model = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "models": ["policy-x"]})
        assert model.status_code == 400 and model.json()["error"]["code"] == "invalid_value"
        name = await http.post("/admin/keys", headers=MASTER, json={"name": "policy bot"})
        assert name.status_code == 400 and name.json()["error"]["code"] == "invalid_value"
        policy = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "policy": ["nope"]})
        assert policy.status_code == 400 and policy.json()["error"]["code"] == "unknown_policy"


async def test_a_taken_name_is_a_409(settings: Settings) -> None:
    async with asgi(app_on(settings)) as http:
        assert (await http.post("/admin/keys", headers=MASTER, json={"name": "legal"})).status_code == 201
        again = await http.post("/admin/keys", headers=MASTER, json={"name": "legal"})
        assert again.status_code == 409 and again.json()["error"]["param"] == "name"
