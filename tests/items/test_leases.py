"""Leases against real Azurite: one holder at a time, expiry, take-over, safe release."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from connector.leases import Lease, lease_is_free
from connector.settings import load_storage_settings
from connector.storage import Storage
from tests.conftest import clear_storage


@pytest.fixture
def storage(azurite: Any) -> Storage:
    clear_storage(azurite.connection_string)
    env = {"AzureWebJobsStorage": azurite.connection_string, "BC_TENANT": "t", "BC_CLIENT_ID": "c",
           "BC_CLIENT_SECRET": "s"}
    return Storage(load_storage_settings(env))


def test_a_lease_is_free_when_expired_or_held_by_the_asker():
    row = {"holder": "a", "expires": 100.0}
    assert lease_is_free(row, "a", 50.0)
    assert not lease_is_free(row, "b", 99.9)
    assert lease_is_free(row, "b", 100.0)


def test_only_one_of_two_runners_gets_the_lease(storage: Storage):
    first, second = Lease(storage, "items:x", 60), Lease(storage, "items:x", 60)
    assert first.acquire()
    assert not second.acquire()
    assert first.renew()
    assert not second.renew()


def test_an_expired_lease_is_taken_over_and_the_old_holder_loses_it(storage: Storage):
    old, new = Lease(storage, "renewal", 0.2), Lease(storage, "renewal", 60)
    assert old.acquire()
    time.sleep(0.3)
    assert new.acquire()
    assert not old.renew()
    old.release()  # must not delete the new holder's row
    assert not Lease(storage, "renewal", 60).acquire()


def test_a_released_lease_can_be_taken_at_once(storage: Storage):
    with Lease(storage, "items:y", 60) as acquired:
        assert acquired
        with Lease(storage, "items:y", 60) as again:
            assert not again
    assert Lease(storage, "items:y", 60).acquire()


def test_concurrent_acquires_have_exactly_one_winner(storage: Storage):
    leases = [Lease(storage, "race", 60) for _ in range(8)]
    results: list[bool] = []
    start = threading.Barrier(len(leases))

    def run(lease: Lease) -> None:
        start.wait()
        results.append(lease.acquire())

    threads = [threading.Thread(target=run, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.parametrize("row", [
    {"holder": "ghost", "expires": "9999-12-31T23:59:59.000000Z"},  # absurdly far ahead
    {"holder": "ghost", "expires": 1e300},  # the same in an older row's epoch seconds
    {"holder": "ghost", "expires": "whenever"},  # not a time
    {"holder": True, "expires": 0},  # not text
    {"holder": 7, "expires": "9999-12-31T23:59:59.000000Z", "unexpected": "column"},
])
def test_a_lease_row_that_does_not_validate_counts_as_expired_and_is_repaired(
        storage: Storage, row: dict[str, Any], caplog: pytest.LogCaptureFixture):
    from azure.data.tables import UpdateMode

    from connector.settings import TABLE_LEASES
    from connector.storage import read_entity

    table = storage.table(TABLE_LEASES)
    table.upsert_entity({"PartitionKey": "items:poisoned", "RowKey": "lease", **row}, mode=UpdateMode.REPLACE)
    lease = Lease(storage, "items:poisoned", 60)
    with caplog.at_level("WARNING"):
        assert lease.acquire()
    assert "ignored" in caplog.text
    repaired, _ = read_entity(table, "items:poisoned", "lease")
    assert repaired["holder"] == lease.holder and "unexpected" not in repaired
    assert not Lease(storage, "items:poisoned", 60).acquire()  # a valid lease again


def test_a_lease_held_in_a_with_block_is_renewed_by_its_heartbeat(storage: Storage):
    with Lease(storage, "items:long-run", ttl_seconds=0.6) as acquired:
        assert acquired
        time.sleep(1.5)  # longer than the TTL: only the heartbeat keeps it
        assert not Lease(storage, "items:long-run", 60).acquire()
    assert Lease(storage, "items:long-run", 60).acquire()


def test_a_dead_owners_lease_is_free_after_its_short_life(storage: Storage):
    from connector.leases import LEASE_SECONDS

    dead = Lease(storage, "items:dead")
    assert dead.acquire()  # and then its process is killed: no heartbeat, no release
    later = Lease(storage, "items:dead", clock=lambda: time.time() + LEASE_SECONDS + 1)
    assert later.acquire()
    assert LEASE_SECONDS <= 90


def test_the_item_pull_and_sweep_leases_are_short_so_a_killed_run_blocks_the_next_for_about_a_minute(
        runtime: Any, monkeypatch: pytest.MonkeyPatch):
    from connector.items import pull
    from connector.rows import read_time
    from connector.settings import TABLE_LEASES
    from connector.storage import table_key
    from connector.webhooks import sweep

    lives: dict[str, float] = {}

    def lease_life(name: str) -> None:
        row = runtime.storage.table(TABLE_LEASES).get_entity(table_key(name), "lease")
        lives[name] = read_time(row["expires"]) - read_time(row["acquired"])

    def pull_pass(self: Any) -> bool:
        lease_life(self._lease.name)
        return True

    def sweep_run(self: Any) -> list[Any]:
        lease_life(self.lease.name)
        return []

    monkeypatch.setattr(pull.ItemPull, "_run_pass", pull_pass)
    monkeypatch.setattr(sweep.SweepRun, "run", sweep_run)
    runtime.item_pull.pull_company("default")
    sweep.sweep(runtime)
    assert len(lives) == 2 and max(lives.values()) <= 90  # today: 720 s (the run's budget + 2 min)
