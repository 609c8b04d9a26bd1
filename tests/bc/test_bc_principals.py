"""Several principals per connection (`connector/bc/principals.py`, BC_EXTRA_CLIENT_IDS): each app
registration is a principal of its own at BC (own limits, own shared budget); requests spread over
them by free capacity; one whose token fails drops out while the others carry on, and comes back."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.bc.errors import TokenUnavailable
from connector.bc.principals import FIRST_DROP_SECONDS, Principals
from connector.ops.status import read_status
from connector.ops.status_page import render_status_page
from connector.runtime import get_runtime
from connector.settings import SettingsError, load_settings
from devtools.emulator.config import ClientApp
from devtools.emulator.entra import app_oid
from devtools.emulator.seed import CRONUS_UK_ID

MAIN = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
EXTRA = ("6e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f61", "7e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f62")
ITEMS = f"companies({CRONUS_UK_ID})/items"


# ---- unit: the choice --------------------------------------------------------------------------

class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def tokens(name: str) -> Callable[[bool], str]:
    return lambda force: name


def test_the_principal_with_the_most_free_capacity_is_taken_and_ties_rotate() -> None:
    pool = Principals([(n, tokens(n)) for n in ("a", "b", "c")], capacity=5)
    first = [pool.take() for _ in range(3)]
    assert sorted(p.name for p in first) == ["a", "b", "c"]  # one each before any gets a second
    pool.give_back(first[0])
    assert pool.take() is first[0]  # the one with a free slot again


def test_a_dropped_principal_is_left_out_for_its_back_off_then_taken_again() -> None:
    clock = Clock()
    pool = Principals([("a", tokens("a")), ("b", tokens("b"))], clock=clock)
    a = pool.all[0]
    assert pool.can_drop(a)
    pool.drop(a, "secret refused")
    assert [pool.take().name for _ in range(4)] == ["b"] * 4
    assert not pool.can_drop(pool.all[1])  # the last live principal never drops out
    clock.now += FIRST_DROP_SECONDS
    assert {p.name for p in pool.live()} == {"a", "b"}
    pool.drop(a, "refused again")
    assert a.down_until == clock.now + 2 * FIRST_DROP_SECONDS  # the back-off doubles
    pool.recovered(a)
    assert (a.drops, a.error) == (0, "")


def test_extra_clients_need_as_many_secrets_and_client_credentials() -> None:
    base = {"BC_TENANT": "t", "BC_CLIENT_ID": MAIN, "BC_CLIENT_SECRET": "s",
            "BC_GRANT_TYPE": "client_credentials"}
    conn = load_settings(base | {"BC_EXTRA_CLIENT_IDS": ",".join(EXTRA),
                                 "BC_EXTRA_CLIENT_SECRETS": "sx-2,sy-3"}).connection("default")
    assert [(p.name, p.client_id, p.client_secret) for p in conn.principals] == [
        ("default", MAIN, "s"), ("default.2", EXTRA[0], "sx-2"), ("default.3", EXTRA[1], "sy-3")]
    assert "sx-2" not in repr(conn)
    with pytest.raises(SettingsError, match="BC_EXTRA_CLIENT_SECRETS"):
        load_settings(base | {"BC_EXTRA_CLIENT_IDS": ",".join(EXTRA), "BC_EXTRA_CLIENT_SECRETS": "x"})
    with pytest.raises(SettingsError, match="client_credentials"):
        load_settings(base | {"BC_GRANT_TYPE": "authorization_code", "BC_EXTRA_CLIENT_IDS": EXTRA[0],
                              "BC_EXTRA_CLIENT_SECRETS": "x"})


# ---- against the emulator: three app registrations ---------------------------------------------

@pytest.fixture(scope="module")
def emulator(make_emulator: Callable[..., Any]) -> Any:
    clients = [ClientApp(MAIN, "emulator-secret", "lmints.io"),
               *(ClientApp(c, f"secret-{n}", "lmints.io") for n, c in enumerate(EXTRA))]
    return make_emulator(clients=clients, reject_over_concurrency=True)


def principals_seen(emulator: Any) -> Counter[str]:
    return Counter(r.principal for r in emulator.requests if "/companies(" in r.path)


def oid(client_id: str, emulator: Any) -> str:
    return app_oid(client_id, emulator.config.tenants["lmints.io"])


def test_requests_spread_over_every_principal_each_within_its_own_limit(
        connector_env: Callable[..., Any], emulator: Any) -> None:
    connector_env(BC_EXTRA_CLIENT_IDS=",".join(EXTRA), BC_EXTRA_CLIENT_SECRETS="secret-0,secret-1")
    bc = get_runtime().bc()
    emulator.clear_requests()
    emulator.faults.configure({"latency_seconds": 0.05})
    try:
        with ThreadPoolExecutor(15) as pool:
            list(pool.map(lambda _: bc.get(ITEMS, {"$top": "1"}), range(90)))
    finally:
        emulator.faults.clear()
    seen = principals_seen(emulator)
    assert set(seen) == {oid(c, emulator) for c in (MAIN, *EXTRA)}
    assert min(seen.values()) >= 15  # spread, not piled on one
    logged = [r for r in emulator.requests if "/companies(" in r.path]
    assert all(r.status == 200 for r in logged)  # no principal went beyond its 5 in flight
    assert max(r.in_flight for r in logged) <= 5


def test_a_principal_whose_secret_is_refused_drops_out_and_the_others_carry_on(
        connector_env: Callable[..., Any], emulator: Any) -> None:
    connector_env(BC_EXTRA_CLIENT_IDS=",".join(EXTRA), BC_EXTRA_CLIENT_SECRETS="wrong,secret-1")
    runtime = get_runtime()
    bc = runtime.bc()
    emulator.clear_requests()
    emulator.faults.configure({"latency_seconds": 0.05})
    try:
        with ThreadPoolExecutor(10) as pool:  # more than one principal's 5 at once
            assert all(pool.map(lambda _: bc.get(ITEMS, {"$top": "1"})["value"], range(60)))
    finally:
        emulator.faults.clear()
    seen = principals_seen(emulator)
    assert set(seen) == {oid(MAIN, emulator), oid(EXTRA[1], emulator)}
    dropped = next(p for p in bc.principals.all if p.name == "default.2")
    assert dropped.down_until > 0 and dropped.error
    with pytest.raises(TokenUnavailable):
        runtime.tokens.access_token("default.2")  # its refusal is remembered...
    report = read_status(runtime.settings, runtime.storage, throughput=False)  # ...and shown, a line each
    principals = {p["name"]: p for p in report["connections"][0]["principals"]}
    assert [principals[n]["token"]["state"] for n in ("default", "default.2", "default.3")] == [
        "ok", "credentials-refused", "ok"]
    assert "BC_EXTRA_CLIENT_SECRETS" in principals["default.2"]["token"]["fix"]
    page = render_status_page(report, datetime.now(UTC))
    assert "<h3>Principals</h3>" in page and EXTRA[0] in page


def test_try_acquire_takes_a_slot_only_when_one_is_free_now() -> None:
    from connector.bc.budget import LocalBudgets
    from connector.settings import BCLimits

    budget = LocalBudgets(BCLimits(max_concurrency=2, max_requests_per_window=100, window_seconds=300,
                                   max_retries=0, backoff_seconds=1, backoff_max_seconds=1,
                                   timeout_seconds=1))
    held = [budget.try_acquire("p"), budget.try_acquire("p")]
    assert all(held) and budget.try_acquire("p") is None  # both slots busy: no waiting, None
    assert budget.try_acquire("q") is not None  # another principal has its own
    budget.release(held[0])
    assert budget.try_acquire("p") is not None


def test_a_request_is_built_before_it_takes_a_slot_and_each_attempt_adds_only_its_token(
        connector_env: Callable[..., Any], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """BC's slots are for BC's time: with several principals the body and URL are prepared before a
    slot is taken (the slot would otherwise wait on them), and the principal's token added then."""
    connector_env(BC_EXTRA_CLIENT_IDS=",".join(EXTRA), BC_EXTRA_CLIENT_SECRETS="secret-0,secret-1")
    bc = get_runtime().bc()
    bc.get(ITEMS, {"$top": "1"})  # slots leased, tokens cached
    events: list[str] = []
    budget: Any = bc.budget  # the shared budget (try_acquire is not in the Budget protocol)
    prepare, try_acquire = bc.session.prepare_request, budget.try_acquire

    def build(request: Any) -> Any:
        events.append("built")
        return prepare(request)

    def slot(key: str) -> object | None:
        events.append("slot")
        return try_acquire(key)

    monkeypatch.setattr(bc.session, "prepare_request", build)
    monkeypatch.setattr(budget, "try_acquire", slot)
    emulator.clear_requests()
    created = bc.post(f"companies({CRONUS_UK_ID})/customers", {"displayName": "Built first"})
    assert created["displayName"] == "Built first"
    assert events[0] == "built" and events.count("built") == 1 and "slot" in events
    [logged] = [r for r in emulator.requests if "/customers" in r.path]
    assert logged.status == 201 and logged.principal in {oid(c, emulator) for c in (MAIN, *EXTRA)}


def test_a_request_waiting_for_a_slot_takes_the_first_that_comes_free_on_any_principal(
        connector_env: Callable[..., Any], emulator: Any) -> None:
    """One queue for all principals while this instance holds all their slots: a request is not
    tied to the principal it would have picked while another principal's slot stands free."""
    import threading

    connector_env(BC_EXTRA_CLIENT_IDS=",".join(EXTRA), BC_EXTRA_CLIENT_SECRETS="secret-0,secret-1")
    bc = get_runtime().bc()
    budget = bc.budget
    keys = {p.name: bc._budget_key(p, p.token(False)) for p in bc.principals.all}
    held = {name: [budget.acquire(key) for _ in range(5)] for name, key in keys.items()}
    assert budget.holds_all(list(keys.values()))
    busy = bc.principals.all[1:]  # by its own count, the client would pick the first principal
    for principal in busy:
        bc.principals.hold(principal)
    emulator.clear_requests()
    answers: list[Any] = []
    request = threading.Thread(target=lambda: answers.append(bc.get(ITEMS, {"$top": "1"})))
    request.start()
    request.join(timeout=1.0)
    assert request.is_alive()  # every slot is held
    budget.release(held["default.3"].pop())  # a slot of the last principal comes free
    request.join(timeout=60)
    assert answers and answers[0]["value"]  # served while the first principal's slots stay held
    assert list(principals_seen(emulator)) == [oid(EXTRA[1], emulator)]
    for principal in busy:
        bc.principals.give_back(principal)
    for tickets in held.values():
        for ticket in tickets:
            budget.release(ticket)
