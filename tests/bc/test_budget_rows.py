"""Budget rows that were tampered with or written by something else (issue 20, "shared budget rows"):
a slot row whose expiry lies absurdly far ahead, whose ring is not JSON, whose holder is not text,
rows with unexpected keys — each counts as free, is overwritten, is logged once, and never reaches a
BC call. And `acquire()` has a deadline, after which the request runs on the per-process budget."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableClient, UpdateMode

from connector.bc.budget import BudgetTuning, RequestBudget, SharedBudget, read_ring, slot_number, slot_row
from connector.settings import TABLE_LEASES, StorageSettings
from connector.storage import Storage, table_key
from tests.bc.test_bc_budget import FAST, limits

PRINCIPAL = "t:poisoned"
NOW = 1_800_000_000.0


def test_only_slot_keys_below_the_slot_count_name_a_slot() -> None:
    assert [slot_number(k, 5) for k in ("slot-0", "slot-4", "slot-5", "slot-x", "slot--1", "slot-٣",
                                         "slot-", "want-a", "slot-0001")] == [0, 4, None, None, None,
                                                                               None, None, None, None]


def test_a_ring_that_is_not_counts_per_bucket_is_refused() -> None:
    assert read_ring('{"60000":12}', 1200) == {60000: 12}
    assert read_ring(None, 1200) == {}
    for bad in ("not json", "[1,2]", '{"a":1}', '{"1":-3}', '{"1":1e9}', '{"1":true}', "{", 7):
        assert read_ring(bad, 1200) is None, bad


@pytest.mark.parametrize("row", [
    {"holder": "other", "expires": "9999-12-31T23:59:59.000000Z", "ring": "{}"},  # absurd expiry
    {"holder": "other", "expires": 1e300, "ring": "{}"},  # absurd epoch of an older row
    {"holder": "other", "expires": "soon", "ring": "{}"},  # not a time
    {"holder": 42, "expires": NOW + 10, "ring": "{}"},  # holder not text
    {"holder": "other", "expires": NOW + 10, "ring": "{not json"},  # live holder, ring unusable
])
def test_a_slot_row_that_does_not_validate_is_read_as_free_or_with_an_empty_ring(row: dict[str, Any]) -> None:
    read = slot_row(row, NOW, 30.0, 1200, "bcleases/x/slot-0", lambda where, problem: None)
    assert read["ring"] == {}
    if row["ring"] == "{}":
        assert read["holder"] == "" and read["expires"] == 0.0
    else:
        assert read["holder"] == "other"


@pytest.fixture
def leases(azurite: Any) -> Iterator[tuple[Storage, TableClient]]:
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    storage = Storage(StorageSettings(azurite.connection_string))
    yield storage, storage.table(TABLE_LEASES)


def poison(table: TableClient) -> None:
    """Every slot of PRINCIPAL rewritten by hand, plus rows that are neither slots nor wants."""
    pk = table_key(f"budget:{PRINCIPAL}")
    rows = [
        {"RowKey": "slot-0", "holder": "ghost", "expires": "9999-12-31T23:59:59.000000Z", "ring": "{}"},
        {"RowKey": "slot-1", "holder": "ghost", "expires": 1e300, "ring": "{}"},
        {"RowKey": "slot-2", "holder": "ghost", "expires": "tomorrow", "ring": "<html>"},
        {"RowKey": "slot-3", "holder": "ghost", "expires": datetime(9999, 1, 1, tzinfo=UTC),
         "ring": '{"x": "y"}', "surprise": "column"},
        {"RowKey": "slot-4", "holder": 12345, "expires": 99999999999.0, "ring": "[]"},
        {"RowKey": "slot-x", "holder": "ghost", "expires": "9999-12-31T23:59:59.000000Z"},
        {"RowKey": "slot-77", "holder": "ghost"},
        {"RowKey": "want-ghost", "expires": "9999-12-31T23:59:59.000000Z"},
        {"RowKey": "garbage", "anything": "at all"},
    ]
    for row in rows:
        table.upsert_entity({"PartitionKey": pk, **row}, mode=UpdateMode.REPLACE)


def acquire_within(budget: SharedBudget, seconds: float) -> object:
    """A ticket of PRINCIPAL, waited for at most `seconds` (a bounded wait, not a timing check)."""
    got: list[object] = []
    failed: list[BaseException] = []

    def take() -> None:
        try:
            got.append(budget.acquire(PRINCIPAL))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not failed, f"acquire raised {failed[0]!r}"
    assert got, f"no ticket within {seconds}s"
    return got[0]


def test_poisoned_slot_rows_are_taken_over_repaired_and_logged_once(
        leases: tuple[Storage, TableClient], caplog: pytest.LogCaptureFixture) -> None:
    storage, table = leases
    poison(table)
    budget = SharedBudget(storage, limits(), tuning=FAST)
    try:
        with caplog.at_level(logging.WARNING):
            tickets = [acquire_within(budget, 30) for _ in range(5)]
            assert all(not isinstance(t, RequestBudget) for t in tickets)  # shared slots, no fallback
            for ticket in tickets:
                budget.release(ticket)
            budget.release(acquire_within(budget, 30))
        rows = {r["RowKey"]: r for r in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": table_key(f"budget:{PRINCIPAL}")})}
        for n in range(5):  # every slot was rewritten in the one form
            assert rows[f"slot-{n}"]["holder"] in ("", budget.instance)
            assert "surprise" not in rows[f"slot-{n}"]
            assert isinstance(rows[f"slot-{n}"]["expires"], str)
        warnings = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert len(warnings) == len(set(warnings))  # once each, though read many times
        assert any("slot-x" in w for w in warnings) and any("want-ghost" in w for w in warnings)
    finally:
        budget.close()


def test_acquire_gives_up_on_the_shared_budget_after_its_deadline(
        leases: tuple[Storage, TableClient], caplog: pytest.LogCaptureFixture) -> None:
    storage, _ = leases
    quick = BudgetTuning(**{**FAST.__dict__, "deadline_seconds": 0.5, "idle_seconds": 600.0})
    holder = SharedBudget(storage, limits(), tuning=quick)
    late = SharedBudget(storage, limits(), tuning=quick)
    try:
        held = [holder.acquire(PRINCIPAL) for _ in range(5)]  # busy for good: nothing to give back
        with caplog.at_level(logging.WARNING, logger="connector.bc.budget"):
            ticket = acquire_within(late, 30)
        assert isinstance(ticket, RequestBudget)  # the per-process budget
        assert "no slot within" in caplog.text
        late.release(ticket)
        for t in held:
            holder.release(t)
    finally:
        holder.close()
        late.close()


def test_a_failure_of_any_kind_inside_the_shared_budget_falls_back(
        leases: tuple[Storage, TableClient], monkeypatch: pytest.MonkeyPatch) -> None:
    storage, _ = leases
    budget = SharedBudget(storage, limits(), tuning=FAST)

    def broken(*_: Any) -> Any:
        raise KeyError("something nobody foresaw")

    monkeypatch.setattr(budget, "_read", broken)
    try:
        ticket = acquire_within(budget, 30)
        assert isinstance(ticket, RequestBudget)
        budget.release(ticket)
    finally:
        budget.close()



def test_a_slot_renewed_while_a_slow_read_waited_still_counts_as_held(
        leases: tuple[Storage, TableClient]) -> None:
    """A read that took its `now` before a long wait (a loaded host) must not take a live slot that
    another instance renewed meanwhile for an absurd one: two instances would then hold it."""
    storage, table = leases
    later = NOW + 40.0  # the clock when the answer arrived
    budget = SharedBudget(storage, limits(), tuning=FAST, clock=lambda: later)
    try:
        pk = table_key(f"budget:{PRINCIPAL}")
        expires = datetime.fromtimestamp(later + FAST.slot_ttl_seconds, UTC)
        table.upsert_entity({"PartitionKey": pk, "RowKey": "slot-0", "holder": "other",
                             "expires": expires.isoformat().replace("+00:00", "Z"), "ring": "{}"})
        rows, _, holders = budget._read(budget._state(PRINCIPAL), NOW)
        assert rows[0]["holder"] == "other" and "other" in holders
    finally:
        budget.close()
