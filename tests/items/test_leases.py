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
