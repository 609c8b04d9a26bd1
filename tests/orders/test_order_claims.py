"""Claims in `bcorders` (Azurite): one owner per key, abandoned claims taken over, results repeated."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.orders.claims import CLAIM_TTL, Claim, ClaimBusy, ClaimState, ClaimStep, HeldClaim, OrderClaims
from connector.settings import TABLE_ORDERS

COMPANY = "8a6b2c1d-3e4f-4a5b-9c6d-7e8f9a0b1c2d"


@pytest.fixture
def claims(runtime: Any) -> OrderClaims:
    return OrderClaims(runtime.storage.table(TABLE_ORDERS), "default", COMPANY)


def test_only_one_of_many_concurrent_deliveries_gets_the_claim(runtime: Any) -> None:
    claims = OrderClaims(runtime.storage.table(TABLE_ORDERS), "default", COMPANY, wait_seconds=0.5)

    def attempt(n: int) -> str:
        try:
            return type(claims.acquire("WEB-1", f"message-{n}")).__name__
        except ClaimBusy:
            return "busy"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))

    assert sorted(outcomes) == ["HeldClaim"] + ["busy"] * 7


def test_waiting_delivery_sees_the_order_the_owner_created(claims: OrderClaims) -> None:
    held = claims.acquire("web-2", "first")
    assert isinstance(held, HeldClaim)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(claims.acquire, "WEB-2", "second")  # keys are upper-cased like BC's
        claims.finish(held, "web-2", "first", ClaimState.CREATED, {"id": "order-id", "number": "S-1"})
        found = waiting.result(timeout=10)

    assert found == Claim("first", ClaimState.CREATED, found.claimed_at, "order-id", "S-1")
    again = claims.acquire("web-2", "first")
    assert isinstance(again, Claim) and again.state is ClaimState.CREATED


def test_claim_abandoned_longer_than_its_ttl_is_taken_over(claims: OrderClaims) -> None:
    row_key = OrderClaims.row_key("WEB-3", "gone")
    old = datetime.now(UTC) - CLAIM_TTL - timedelta(minutes=1)
    claims.table.create_entity({"PartitionKey": claims.partition, "RowKey": row_key, "owner": "gone",
                                "state": "creating", "claimedAt": old})

    held = claims.acquire("WEB-3", "next")

    assert isinstance(held, HeldClaim) and held.step is ClaimStep.TAKE_OVER
    claim, _ = claims.read(row_key)
    assert (claim.owner, claim.state) == ("next", ClaimState.CREATING)


def test_released_claim_lets_the_next_delivery_try(claims: OrderClaims) -> None:
    held = claims.acquire(None, "message-a")
    assert isinstance(held, HeldClaim)
    claims.release(held)

    assert claims.read(OrderClaims.row_key(None, "message-a")) is None
