"""Issue 12: staleness is judged on the day of the request, not once at start-up.

The router is built once; its clock moves on. A low-confidence fact (Mistral's 30-day retention rests
on a secondary source) passes a 30-day limit while fresh and fails closed once it is stale; the
badges a client sees change with it.
"""

from __future__ import annotations

from datetime import date

from gateway.config import parse_config
from gateway.deployments import build_deployments
from gateway.names import Header
from gateway.routing import Router
from gateway.settings import Settings
from policies.catalog import load_catalog
from policies.policy import resolve

CONFIG = """
policies:
  - name: max-30-days
    description: kept at most 30 days
    requires: [max_retention_days]
    max_retention_days: 30
models:
  - name: mistral
    deployments:
      - provider: mistral
        channel: mistral.api_free
        model: mistral/mistral-small-latest
        api_key_env: DAY_TEST_KEY
"""


def test_the_router_judges_on_the_day_of_the_request() -> None:
    config = parse_config(CONFIG)
    days = [date(2026, 11, 29)]
    start = days[0]
    router = Router(
        config, build_deployments(config, load_catalog(), Settings(), start), clock=lambda: days[0]
    )
    policy = resolve(["max-30-days"], config.policy_table())
    (dep,) = router.models["mistral"]

    decision, view = router.judge(policy, dep)
    assert decision.allowed
    assert decision.day == start
    assert "stale" not in view.headers[Header.BADGES]

    days[0] = date(2027, 5, 29)  # 181 days on: the secondary-sourced retention fact is stale
    decision, view = router.judge(policy, dep)
    assert not decision.allowed
    assert decision.day == date(2027, 5, 29)
    assert "retention fact is low-confidence" in decision.reasons()[0]
    assert "stale" in view.headers[Header.BADGES].split(", ")
    (today_dep,) = router.models["mistral"]
    assert "stale" in [b.id for b in today_dep.badges]
