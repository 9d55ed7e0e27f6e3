"""The request's claims (`gateway.server.key_slots`, `gateway.server.bodybudget`): each is one
context manager that takes what it claims on the way in and frees it on the way out, whatever
happened in between."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.server.bodybudget import BodyBudget
from gateway.server.key_slots import KeySlots


class Boom(Exception):
    pass


def test_a_key_slot_is_held_for_the_block_and_freed_on_the_way_out() -> None:
    slots = KeySlots(limit=1)
    with pytest.raises(Boom), slots.hold("legal"):
        assert slots.held("legal") == 1
        raise Boom
    assert slots.held("legal") == 0


def test_past_the_limit_a_429_and_nothing_held() -> None:
    slots = KeySlots(limit=1)
    with slots.hold("legal"):
        with pytest.raises(RateLimited) as refused, slots.hold("legal"):
            pass
        assert refused.value.headers["retry-after"] == "1"
        assert slots.held("legal") == 1  # the refused request took nothing
        with slots.hold("other"):  # another key has its own slots
            assert slots.held("other") == 1
    assert slots.held("legal") == slots.held("other") == 0


def test_no_limit_holds_nothing() -> None:
    slots = KeySlots(limit=0)
    with slots.hold("legal"), slots.hold("legal"):
        assert slots.held("legal") == 0


def test_a_body_claim_grows_and_is_freed_on_the_way_out() -> None:
    budget = BodyBudget(limit=100)
    with pytest.raises(Boom), budget.hold() as claim:
        claim.grow(40)
        claim.grow(30)  # a claim only grows: the larger of the two is held
        assert budget.held == 40
        claim.grow(150)  # an idle process takes any one request, past the budget too
        assert budget.held == 150
        raise Boom
    assert budget.held == 0


def test_past_the_budget_a_second_body_is_refused_and_holds_nothing() -> None:
    budget = BodyBudget(limit=100)
    with budget.hold() as first:
        first.grow(80)
        with budget.hold() as second:
            second.grow(20)
            with pytest.raises(RateLimited), budget.hold() as third:
                third.grow(10)
            assert budget.held == 100
        assert budget.held == 80
    assert budget.held == 0
