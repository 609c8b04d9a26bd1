"""BC's budget shared across instances: pure decisions (rate window, fair share, free slots), then
several `SharedBudget`s (stand-ins for instances) on one real Azurite, and the BC client through it
against the emulator refusing any request beyond the 5th in flight (`reject_over_concurrency`)."""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from connector.bc.budget import (
    BudgetTuning,
    RateWindow,
    SharedBudget,
    fair_share,
    first_in_line,
    free_slots,
    principal_of,
    slots_to_keep,
)
from connector.bc.client import BCClient
from connector.settings import BCLimits, StorageSettings
from connector.storage import Storage
from devtools.emulator.seed import CRONUS_UK_ID
from tests.waiting import wait_until

FAST = BudgetTuning(slot_ttl_seconds=2.0, renew_seconds=0.5, idle_seconds=0.3, tick_seconds=0.05,
                    fairness_seconds=0.2, poll_seconds=0.05, held_poll_seconds=0.2, want_ttl_seconds=1.0,
                    tenure_seconds=1.0, block=50, degraded_seconds=60.0)


def limits(concurrency: int = 5, per_window: int = 6000, window: float = 300.0) -> BCLimits:
    return BCLimits(max_concurrency=concurrency, max_requests_per_window=per_window,
                    window_seconds=window, max_retries=2, backoff_seconds=0.05,
                    backoff_max_seconds=0.2, timeout_seconds=30.0)


# ---- unit: pure decisions -------------------------------------------------------------------

def test_rate_window_grants_up_to_the_limit_over_the_window_and_frees_old_buckets() -> None:
    rate = RateWindow(limit=100, window_seconds=300.0, bucket_seconds=30.0)
    ring, granted = rate.charge({}, now=0.0, wanted=60)
    assert granted == 60
    ring, granted = rate.charge(ring, now=299.0, wanted=60)
    assert granted == 40  # 100 within any 300 s
    ring, granted = rate.charge(ring, now=320.0, wanted=60)
    assert granted == 0  # bucket 0 still counts (the window could start inside it)
    ring, granted = rate.charge(ring, now=330.0, wanted=60)
    assert granted == 60 and 0 not in ring


def test_fair_share_splits_the_slots_rounding_up() -> None:
    assert [fair_share(5, n) for n in (1, 2, 3, 5, 6, 40)] == [5, 3, 2, 1, 1, 1]


def test_holder_keeps_everything_until_another_instance_waits() -> None:
    held = [0.0, 0.0, 0.0, 0.0, 0.0]
    assert slots_to_keep(held, 10.0, "a", {"a"}, set(), 5, 15.0) == 5
    assert slots_to_keep(held, 10.0, "a", {"a"}, {"a"}, 5, 15.0) == 5  # only I wait
    assert slots_to_keep(held, 10.0, "a", {"a"}, {"b"}, 5, 15.0) == 3
    assert slots_to_keep(held, 10.0, "a", {"a", "c"}, {"b"}, 5, 15.0) == 2


def test_with_more_instances_than_slots_a_slot_changes_hands_after_its_tenure() -> None:
    wanting = {f"w{i}" for i in range(5)}
    assert slots_to_keep([0.0], 10.0, "a", {"a"}, wanting, 5, 15.0) == 1
    assert slots_to_keep([0.0], 20.0, "a", {"a"}, wanting, 5, 15.0) == 0


def test_free_slots_are_missing_given_back_or_expired() -> None:
    rows = {0: {"holder": "a", "expires": 100.0}, 1: {"holder": "", "expires": 0.0},
            2: {"holder": "b", "expires": 50.0}}
    assert free_slots(rows, 5, now=60.0) == [1, 2, 3, 4]


def jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


def test_principal_is_the_tenant_and_object_id_a_token_names() -> None:
    assert principal_of(jwt({"tid": "t1", "oid": "o1", "appid": "a1"})) == "t1:o1"
    assert principal_of(jwt({"tid": "t1", "appid": "a1"})) == "t1:a1"
    assert principal_of("not-a-jwt") is None


# ---- integration: several instances on one Azurite ------------------------------------------

class InFlight:
    """Counts holders of acquired tickets across budgets (what BC would see in flight)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.total = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.total += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


@pytest.fixture
def make_budget(azurite: Any) -> Iterator[Callable[..., SharedBudget]]:
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    made: list[SharedBudget] = []

    def make(lim: BCLimits | None = None, tuning: BudgetTuning = FAST,
             connection_string: str | None = None, **kw: Any) -> SharedBudget:
        storage = Storage(StorageSettings(connection_string or azurite.connection_string))
        budget = SharedBudget(storage, lim or limits(), tuning=tuning, **kw)
        made.append(budget)
        return budget

    yield make
    for budget in made:
        budget.close()


def hammer(budget: SharedBudget, counter: InFlight, requests: int, threads: int,
           hold: float = 0.01, principal: str = "t:app") -> None:
    def one(_: int) -> None:
        ticket = budget.acquire(principal)
        counter.enter()
        time.sleep(hold)
        counter.leave()
        budget.release(ticket)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(requests)))


def test_three_instances_never_hold_more_than_five_requests_in_flight_together(
        make_budget: Callable[..., SharedBudget]) -> None:
    budgets = [make_budget() for _ in range(3)]
    counter = InFlight()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda b: hammer(b, counter, 60, 8), budgets))
    assert counter.total == 180
    assert counter.most <= 5
    assert max(b.max_in_flight for b in budgets) <= 5


def test_connections_of_one_principal_share_it_and_other_principals_do_not(
        make_budget: Callable[..., SharedBudget]) -> None:
    a, b = make_budget(), make_budget()
    same = InFlight()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda x: hammer(x, same, 40, 8, principal="t:shared"), (a, b)))
    assert same.most <= 5
    tickets = [a.acquire("t:one") for _ in range(5)] + [b.acquire("t:two") for _ in range(5)]
    assert len(tickets) == 10  # each principal has its own five
    for ticket, budget in zip(tickets, [a] * 5 + [b] * 5, strict=True):
        budget.release(ticket)


def test_a_waiting_instance_gets_slots_from_a_busy_one(
        make_budget: Callable[..., SharedBudget]) -> None:
    busy, late = make_budget(), make_budget()
    counter, stop = InFlight(), threading.Event()

    def keep_busy() -> None:
        while not stop.is_set():
            hammer(busy, counter, 10, 10, hold=0.02)

    worker = threading.Thread(target=keep_busy)
    worker.start()
    try:
        wait_until(lambda: busy.max_in_flight == 5)
        late_counter = InFlight()
        hammer(late, late_counter, 20, 5)  # would wait forever if the busy instance never yielded
        assert late_counter.total == 20
    finally:
        stop.set()
        worker.join()
    assert counter.most <= 5


def test_slots_of_a_dead_instance_come_free_after_their_lease_expires(
        make_budget: Callable[..., SharedBudget]) -> None:
    dead, alive = make_budget(), make_budget()
    held = [dead.acquire("t:app") for _ in range(5)]
    assert len(held) == 5
    dead._stop.set()  # the instance dies: no renewal, no give-back
    ticket = alive.acquire("t:app")  # waits until a slot's lease expires
    alive.release(ticket)


def test_the_rate_is_split_across_slots_and_holds_across_instances(
        make_budget: Callable[..., SharedBudget]) -> None:
    small = limits(concurrency=5, per_window=20)  # 4 per slot per window
    tuning = BudgetTuning(**{**FAST.__dict__, "block": 3})
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    a, b = make_budget(small, tuning, clock=clock), make_budget(small, tuning, clock=clock)
    counter = InFlight()
    threads = [threading.Thread(target=hammer, args=(x, counter, 20, 4), daemon=True) for x in (a, b)]
    for t in threads:
        t.start()
    wait_until(lambda: counter.total >= 20)
    time.sleep(1.0)  # every waiter has asked storage again by now
    assert counter.total == 20  # the window is full for both instances together
    offset[0] = 400.0  # the window has passed
    for t in threads:
        t.join(timeout=60)
    assert counter.total == 40


def unreachable_storage() -> str:
    """A connection string of a table endpoint nobody listens on."""
    from devtools.azurite import free_port

    return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;")


def test_without_storage_the_budget_falls_back_to_the_instance_with_a_warning(
        make_budget: Callable[..., SharedBudget], caplog: pytest.LogCaptureFixture) -> None:
    budget = make_budget(connection_string=unreachable_storage())
    counter = InFlight()
    with caplog.at_level(logging.WARNING, logger="connector.bc.budget"):
        hammer(budget, counter, 30, 10)
    assert counter.total == 30 and counter.most <= 5
    assert "storage unavailable" in caplog.text


def test_a_process_exiting_after_storage_went_away_does_not_wait_on_retries(
        make_budget: Callable[..., SharedBudget], monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.data.tables import TableClient

    from connector.settings import TABLE_LEASES

    budget = make_budget()
    budget.release(budget.acquire("tenant:app"))  # holds a slot and a want row to give back at exit
    nowhere = unreachable_storage()
    monkeypatch.setattr(budget, "_table", lambda: TableClient.from_connection_string(nowhere, TABLE_LEASES))
    backoffs: list[float] = []
    monkeypatch.setattr(time, "sleep", backoffs.append)

    budget.close()  # what atexit runs (Azurite stopped, storage account unreachable)

    assert backoffs == []


# ---- integration: the BC client through two instances' budgets ------------------------------

def test_two_instances_calling_bc_together_are_never_refused_for_concurrency(
        make_budget: Callable[..., SharedBudget], make_emulator: Callable[..., Any]) -> None:
    import requests

    emu = make_emulator(reject_over_concurrency=True, latency_seconds=0.05)

    def token(_: bool) -> str:
        resp = requests.post(f"{emu.url}/lmints.io/oauth2/v2.0/token", verify=emu.ca_bundle, data={
            "grant_type": "client_credentials", "client_id": "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60",
            "client_secret": "emulator-secret",
            "scope": "https://api.businesscentral.dynamics.com/.default"}, timeout=30)
        return resp.json()["access_token"]

    bearer = token(False)
    clients = [BCClient(f"{emu.url}/v2.0/lmints.io/production/api/v2.0", lambda _: bearer,
                        budget=make_budget(), verify=emu.ca_bundle, sleep=lambda _: None)
               for _ in range(2)]
    emu.clear_requests()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: clients[n % 2].get(f"companies({CRONUS_UK_ID})/items",
                                                   {"$top": "1"}), range(80)))
    logged = [r for r in emu.requests if "/items" in r.path]
    assert len(logged) == 80
    assert {r.status for r in logged} == {200}
    assert max(r.in_flight for r in logged) <= 5


def _slots(budget: SharedBudget, principal: str) -> list[Any]:
    return budget._principals[principal].slots


def test_an_instance_holding_every_slot_waits_for_one_without_asking_storage(
        make_budget: Callable[..., SharedBudget]) -> None:
    budget = make_budget(tuning=BudgetTuning(**{**FAST.__dict__, "fairness_seconds": 3600.0}))
    held = [budget.acquire("t:app") for _ in range(5)]
    wait_until(lambda: budget._principals["t:app"].judged_at > 0)  # the first (and, here, last) check
    reads: list[object] = []
    read = budget._read
    budget._read = lambda *a: reads.append(a) or read(*a)  # type: ignore[method-assign]
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire("t:app")))
    waiter.start()
    time.sleep(20 * FAST.poll_seconds)  # long enough to have asked storage ~20 times
    assert not got
    assert reads == []  # every slot is this instance's: nothing to lease (fairness checks aside)
    wants = list(budget._table().query_entities("RowKey ge 'want-'"))
    assert wants == []  # nor does it tell other instances it wants one
    budget.release(held.pop())
    waiter.join(timeout=60)
    assert len(got) == 1
    for ticket in held + got:
        budget.release(ticket)


def test_a_request_first_in_line_takes_the_next_free_slot_before_those_already_waiting(
        make_budget: Callable[..., SharedBudget]) -> None:
    budget = make_budget(tuning=BudgetTuning(**{**FAST.__dict__, "fairness_seconds": 3600.0}))
    held = [budget.acquire("t:app") for _ in range(5)]
    order: list[str] = []
    tickets: dict[str, object] = {}

    def ask(name: str, first: bool) -> None:
        if first:
            with first_in_line():
                tickets[name] = budget.acquire("t:app")
        else:
            tickets[name] = budget.acquire("t:app")
        order.append(name)

    state = budget._principals["t:app"]
    waiting = [threading.Thread(target=ask, args=(f"write-{n}", False)) for n in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(10 * FAST.poll_seconds)  # the writes wait (and look again) before the key check asks
    check = threading.Thread(target=ask, args=("key check", True))
    check.start()
    wait_until(lambda: state.first_waiting == 1)
    assert budget.try_acquire("t:app") is None  # nor does a newcomer take what is the check's
    budget.release(held.pop())
    check.join(timeout=60)
    assert order == ["key check"]  # the slot freed went to it, though three waited longer
    assert state.first_waiting == 0
    for _ in range(3):
        budget.release(held.pop())
    for thread in waiting:
        thread.join(timeout=60)
    assert sorted(order[1:]) == ["write-0", "write-1", "write-2"]
    assert budget.max_in_flight == 5
    for ticket in held + list(tickets.values()):
        budget.release(ticket)


def test_a_slot_running_low_on_credit_is_topped_up_before_a_request_needs_it(
        make_budget: Callable[..., SharedBudget]) -> None:
    tuning = BudgetTuning(**{**FAST.__dict__, "block": 10, "renew_seconds": 3600.0,
                             "idle_seconds": 3600.0, "fairness_seconds": 3600.0})
    budget = make_budget(tuning=tuning)
    budget.release(budget.acquire("t:app"))
    [slot] = _slots(budget, "t:app")
    while slot.credit > budget.low_credit:
        budget.release(budget.acquire("t:app"))
    wait_until(lambda: slot.credit > budget.low_credit)  # no request asked: the background did
    assert len(_slots(budget, "t:app")) == 1
