"""Database keys: the admin API and the CLI, on SQLite and PostgreSQL; revocation on every replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.keys import create_key, revoke_key
from tests.conftest import AUTH, chat_body
from tests.helpers import until
from tests.storage.conftest import MASTER, app_on, asgi, dump_tables, free_port
from tests.storage.support import sluice


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_admin_api_key_lifecycle(settings: Settings) -> None:
    async with asgi(app_on(settings)) as http:
        assert (await http.get("/admin/keys")).status_code == 401
        refused = await http.get("/admin/keys", headers=AUTH)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
        assert refused.json()["error"]["code"] == "master_key_required"
        body = {
            "name": "legal",
            "policy": ["zero-retention"],
            "models": ["gpt-4o-mini", "llama-local"],
            "expires": "90d",
            "on_violation": "block",
        }
        assert (await http.post("/admin/keys", headers=AUTH, json=body)).status_code == 403
        created = await http.post("/admin/keys", headers=MASTER, json=body)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("sk-sluice-") and created.json()["status"] == "active"
        assert created.json()["expires_at"] > datetime.now(UTC).isoformat()

        served = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body("llama-local"))
        assert served.status_code == 200 and "zero-retention" in served.headers["x-privacy-policy"]
        other = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body("claude-sonnet"))
        assert other.json()["error"]["code"] == "model_not_allowed"

        listed = (await http.get("/admin/keys", headers=MASTER)).json()["data"]
        assert [(k["name"], k["status"]) for k in listed] == [("legal", "active")]
        assert key not in str(listed) and "key_hash" not in listed[0]
        assert key not in await dump_tables(settings.database_url)

        again = await http.post("/admin/keys", headers=MASTER, json=body)
        assert again.status_code == 409
        revoked = await http.delete("/admin/keys/legal", headers=MASTER)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        gone = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body("llama-local"))
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_api_key"
        assert (await http.delete("/admin/keys/legal", headers=MASTER)).status_code == 404
        reused = await http.post("/admin/keys", headers=MASTER, json={"name": "legal"})
        assert reused.status_code == 201, "a revoked key's name may be reused"


async def test_admin_api_refuses_bad_keys(settings: Settings) -> None:
    async with asgi(app_on(settings)) as http:
        clash = await http.post("/admin/keys", headers=MASTER, json={"name": "demo"})
        assert clash.status_code == 400 and "config" in clash.json()["error"]["message"]
        policy = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "policy": ["nope"]})
        assert policy.status_code == 400 and policy.json()["error"]["code"] == "unknown_policy"
        model = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "models": ["nope"]})
        assert model.status_code == 400
        expiry = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "expires": "soon"})
        assert expiry.status_code == 400 and expiry.json()["error"]["param"] == "expires"
        extra = await http.post("/admin/keys", headers=MASTER, json={"name": "x", "api_base": "http://evil"})
        assert extra.status_code == 400


async def test_an_expired_key_is_refused(settings: Settings, db: Database) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    key, _ = await create_key(db, name="old", expires_at=past + timedelta(days=1), now=past)
    fresh, _ = await create_key(db, name="fresh", expires_at=datetime.now(UTC) + timedelta(hours=1))
    async with asgi(app_on(settings)) as http:
        assert (
            await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
        ).status_code == 401
        assert (
            await http.post("/v1/chat/completions", headers=bearer(fresh), json=chat_body())
        ).status_code == 200
        listed = {
            k["name"]: k["status"] for k in (await http.get("/admin/keys", headers=MASTER)).json()["data"]
        }
    assert listed == {"old": "expired", "fresh": "active"}


async def test_cli_key_lifecycle(settings: Settings) -> None:
    url = settings.database_url
    run = await sluice(
        "keys",
        "create",
        "--name",
        "legal",
        "--policy",
        "zero-retention",
        "--models",
        "llama-local",
        "--expires",
        "30d",
        "--on-violation",
        "block",
        url=url,
    )
    assert run.exit_code == 0, run.output
    key = run.stdout.strip()
    assert key.startswith("sk-sluice-") and "shown only now" in run.stderr
    async with asgi(app_on(settings)) as http:
        ok = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body("llama-local"))
        assert ok.status_code == 200
        listed = await sluice("keys", "list", "--json", url=url)
        assert '"status": "active"' in listed.stdout and key not in listed.stdout
        assert (await sluice("keys", "revoke", "legal", url=url)).exit_code == 0

        async def refused() -> bool:
            gone = await http.post("/v1/chat/completions", headers=bearer(key), json=chat_body("llama-local"))
            return gone.status_code == 401

        # SQLite: the next request (data_version); PostgreSQL: once the notification has arrived.
        await until(refused, "the revocation to reach the gateway")
    assert (await sluice("keys", "revoke", "legal", url=url)).exit_code == 1
    assert (await sluice("keys", "list", url=url)).exit_code == 0
    refused = await sluice("keys", "create", "--name", "demo", "--policy", "nope", url=url)
    assert refused.exit_code == 2 and "config" in refused.stderr and "nope" in refused.stderr


async def test_a_name_in_both_config_and_database_stops_start_up(settings: Settings, db: Database) -> None:
    await create_key(db, name="demo")
    app = app_on(settings)
    with pytest.raises(ConfigError, match="'demo' defined both in the config file and in the database"):
        async with asgi(app):
            pass
    await revoke_key(db, "demo")
    async with asgi(app_on(settings)) as http:
        assert (await http.get("/readyz")).status_code == 200


async def test_revocation_is_seen_by_a_second_replica(
    demo_settings: Settings, pg_url: str, tmp_path: Path
) -> None:
    def replica(name: str) -> Settings:
        return Settings.model_validate(
            {
                **demo_settings.model_dump(),
                "database_url": pg_url,
                "master_key": MASTER["authorization"][7:],
                "audit_spool": tmp_path / f"{name}.spool",
            }
        )

    async with asgi(app_on(replica("a"))) as a, asgi(app_on(replica("b"))) as b:
        created = await a.post("/admin/keys", headers=MASTER, json={"name": "contractor"})
        key = created.json()["key"]
        assert (
            await b.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
        ).status_code == 200
        assert (await a.delete("/admin/keys/contractor", headers=MASTER)).status_code == 200
        assert (
            await a.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
        ).status_code == 401, "the replica that revoked refuses the key at once"

        async def refused() -> bool:
            answer = await b.post("/v1/chat/completions", headers=bearer(key), json=chat_body())
            return answer.status_code == 401

        await until(refused, "the revocation to reach the other replica (LISTEN/NOTIFY)")
        listed = (await b.get("/admin/keys", headers=MASTER)).json()["data"]
        assert [k["status"] for k in listed] == ["revoked"]


async def test_database_keys_fail_closed_when_the_database_is_down(demo_settings: Settings) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = Settings.model_validate(
        {**demo_settings.model_dump(), "database_url": dead, "master_key": MASTER["authorization"][7:]}
    )
    async with asgi(app_on(settings)) as http:
        assert (await http.get("/admin/keys", headers=MASTER)).status_code == 503
        unknown = await http.post(
            "/v1/chat/completions", headers=bearer("sk-sluice-unknown"), json=chat_body()
        )
        assert unknown.status_code == 503 and "key store" in unknown.json()["error"]["message"]
        config_key = await http.post("/v1/chat/completions", headers=AUTH, json=chat_body())
        assert config_key.status_code == 200, "config keys do not need the database"
