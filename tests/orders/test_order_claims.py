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


def test_a_claim_row_written_before_snake_case_columns_is_still_read(claims: OrderClaims) -> None:
    row_key = OrderClaims.row_key("WEB-OLD", "first")
    at = datetime.now(UTC) - timedelta(minutes=1)
    claims.table.create_entity({"PartitionKey": claims.partition, "RowKey": row_key, "owner": "first",
                                "state": "created", "claimedAt": at, "salesOrderId": "order-id",
                                "number": "S-9", "externalDocumentNumber": "WEB-OLD", "ambiguousPosts": 0})
    found = claims.acquire("WEB-OLD", "second")
    assert isinstance(found, Claim)
    assert (found.owner, found.state, found.order) == ("first", ClaimState.CREATED,
                                                       {"id": "order-id", "number": "S-9"})


def test_new_claim_rows_have_snake_case_columns_and_iso_text_times(claims: OrderClaims) -> None:
    held = claims.acquire("WEB-NEW", "first")
    assert isinstance(held, HeldClaim)
    row = claims.table.get_entity(claims.partition, held.row_key)
    assert {"owner", "state", "claimed_at", "sales_order_id", "external_document_number",
            "ambiguous_posts"} <= set(row)
    assert isinstance(row["claimed_at"], str) and row["claimed_at"].endswith("Z")
    assert not any(c.isupper() for name in row if name not in ("PartitionKey", "RowKey") for c in name)


@pytest.mark.parametrize("poison", [
    {"owner": "ghost", "state": "creating", "claimed_at": "9999-12-31T23:59:59.000000Z"},  # never old
    {"owner": "ghost", "state": "creating", "claimedAt": datetime(9999, 1, 1, tzinfo=UTC)},
    {"owner": "ghost", "state": "whatever", "claimed_at": "2026-01-01T00:00:00.000000Z"},
    {"owner": 17, "state": "creating", "claimed_at": "not a time"},
    {"unexpected": "keys only"},
])
def test_a_claim_row_that_does_not_validate_is_taken_over_not_waited_on(
        claims: OrderClaims, poison: dict[str, Any]) -> None:
    row_key = OrderClaims.row_key("WEB-POISON", "x")
    claims.table.create_entity({"PartitionKey": claims.partition, "RowKey": row_key, **poison})
    claims.wait_seconds = 0.5

    held = claims.acquire("WEB-POISON", "next")  # today: ClaimBusy (or a KeyError/ValueError)

    assert isinstance(held, HeldClaim) and held.step is ClaimStep.TAKE_OVER
    claim, _ = claims.read(row_key)
    assert (claim.owner, claim.state) == ("next", ClaimState.CREATING)
