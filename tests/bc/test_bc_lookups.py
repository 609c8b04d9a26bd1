"""Batched key look-ups (`connector/bc/lookups.py`) against the emulator: deliveries that check keys
at the same moment share one GET with an OR filter, chunked to a safe URL length, with BC's quote
escaping; each waiter gets its own answer or the batch's error."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import pytest

from connector.bc import budget as budget_module
from connector.bc.budget import RequestBudget
from connector.bc.client import BCClient, RetryPolicy
from connector.bc.errors import BCError
from connector.bc.lookups import KeyLookups, encoded_length, key_filter, odata_string
from devtools.emulator.seed import CRONUS_UK_ID
from tests.orders.support import EmulatorBC

SELECT = "id,number,externalDocumentNumber"


def test_key_filter_ors_one_field_and_doubles_quotes() -> None:
    assert odata_string("O'Brien") == "'O''Brien'"
    assert key_filter("externalDocumentNumber", ["A", "B'1"]) == (
        "externalDocumentNumber eq 'A' or externalDocumentNumber eq 'B''1'")
    assert encoded_length("f", ["a b"]) == len("%24filter=f+eq+%27a+b%27")


@pytest.fixture
def client(runtime: Any, emulator: Any) -> Iterator[BCClient]:
    emulator.faults.clear()
    emulator.clear_requests()
    conn = runtime.settings.connection("default")
    yield BCClient(conn.api_base, lambda force: runtime.tokens.access_token("default", force_refresh=force),
                   budget=RequestBudget(5, 6000, 300.0),
                   retry=RetryPolicy(max_retries=0), verify=emulator.ca_bundle, connection="default")
    emulator.faults.clear()


def make_order(emulator: Any, key: str) -> dict[str, Any]:
    return EmulatorBC(emulator).create_order({"customerNumber": "GL00000008", "externalDocumentNumber": key})


def order_gets(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if r.method == "GET" and r.path.endswith("/salesOrders")]


def test_announced_lookups_share_one_get_and_each_gets_its_own_answer(client: BCClient,
                                                                      emulator: Any) -> None:
    run = uuid.uuid4().hex[:6].upper()
    keys = [f"L-{run}-{n}" for n in range(12)] + [f"L-{run}-O'NEIL"]
    existing = {k: make_order(emulator, k) for k in keys[::3]}
    emulator.clear_requests()
    lookup = KeyLookups(linger=30.0).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                         SELECT)
    tickets = [lookup.coming() for _ in keys]  # every delivery claims first, then looks up
    with ThreadPoolExecutor(len(keys)) as pool:
        answers = list(pool.map(lambda i: lookup.find(keys[i], tickets[i]),
                                range(len(keys))))
    for key, answer in zip(keys, answers, strict=True):
        assert (answer or {}).get("id") == (existing[key]["id"] if key in existing else None), key
    gets = order_gets(emulator)
    assert len(gets) == 1 and lookup.gets == 1
    query = parse_qs(gets[0].query)
    assert query["$select"] == [SELECT]
    assert f"externalDocumentNumber eq 'L-{run}-O''NEIL'" in query["$filter"][0]


class RecordingBudget(RequestBudget):
    """A per-process budget that notes, for each slot asked for, whether it was first in line."""

    def __init__(self) -> None:
        super().__init__(5, 6000, 300.0)
        self.asked: list[bool] = []

    def acquire(self, principal: str = "") -> RequestBudget:
        self.asked.append(budget_module._FIRST.get())
        return super().acquire(principal)


def test_the_batched_get_asks_for_its_slot_first_in_line_and_other_requests_do_not(
        runtime: Any, emulator: Any) -> None:
    budget = RecordingBudget()
    conn = runtime.settings.connection("default")
    client = BCClient(conn.api_base,
                      lambda force: runtime.tokens.access_token("default", force_refresh=force),
                      budget=budget, retry=RetryPolicy(max_retries=0), verify=emulator.ca_bundle,
                      connection="default")
    lookup = KeyLookups(linger=0.01).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                         SELECT)
    assert lookup.find(f"L-{uuid.uuid4().hex[:6].upper()}") is None
    client.get(f"companies({CRONUS_UK_ID})/salesOrders", params={"$top": "1"})
    assert budget.asked == [True, False]  # the orders waiting on a key check let it pass


def test_a_lone_lookup_does_not_wait_and_a_cancelled_ticket_releases_the_batch(client: BCClient,
                                                                                emulator: Any) -> None:
    lookup = KeyLookups(linger=30.0).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                         SELECT)
    assert lookup.find("NOBODY-" + uuid.uuid4().hex) is None  # nobody announced: no waiting
    waiting = lookup.coming()
    other = lookup.coming()
    answered = threading.Event()

    def find() -> None:
        lookup.find("NOBODY-" + uuid.uuid4().hex, waiting)
        answered.set()

    thread = threading.Thread(target=find)
    thread.start()
    assert not answered.wait(0.3)  # the batch waits for the other announced delivery...
    other.cancel()  # ...which needs no look-up after all (e.g. its claim was already settled)
    assert answered.wait(30)
    thread.join()


def test_batches_are_cut_to_a_safe_url_length(client: BCClient, emulator: Any) -> None:
    keys = [f"LONG-{n:03d}-" + "X" * 28 for n in range(60)]
    lookup = KeyLookups(linger=30.0).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                         SELECT)
    tickets = [lookup.coming() for _ in keys]
    with ThreadPoolExecutor(len(keys)) as pool:
        assert list(pool.map(lambda i: lookup.find(keys[i], tickets[i]), range(len(keys)))) == [None] * 60
    gets = order_gets(emulator)
    assert 2 <= len(gets) <= 4
    assert all(len(g.query) <= 1800 + len("&%24select=") + len(SELECT) + 10 for g in gets)
    asked = [k for g in gets for k in parse_qs(g.query)["$filter"][0].split("'")[1::2]]
    assert sorted(asked) == sorted(keys)


def test_every_waiter_of_a_failed_batch_raises_its_error(client: BCClient, emulator: Any) -> None:
    emulator.faults.add_rule(action="error_before", method="GET", path_regex="/salesOrders$", status=503)
    lookup = KeyLookups(linger=30.0).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                         SELECT)
    tickets = [lookup.coming() for _ in range(4)]
    errors: list[BaseException] = []

    def find(i: int) -> None:
        try:
            lookup.find(f"E-{i}", tickets[i])
        except BCError as exc:
            errors.append(exc)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(find, range(4)))
    assert len(errors) == 4 and {e.status for e in errors} == {503}
    assert len(order_gets(emulator)) == 1


def test_keys_arriving_while_a_get_is_at_bc_wait_for_it_and_share_the_next(client: BCClient,
                                                                             emulator: Any) -> None:
    lookup = KeyLookups(linger=1.0).get(client, CRONUS_UK_ID, "salesOrders", "externalDocumentNumber",
                                        SELECT)
    emulator.faults.configure({"latency_seconds": 0.5})
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(lookup.find, "FIRST-" + uuid.uuid4().hex)
        while lookup.gets == 0:
            threading.Event().wait(0.01)  # the first GET is on its way to BC (0.5 s there)
        later = [pool.submit(lookup.find, f"LATER-{n}-" + uuid.uuid4().hex) for n in range(5)]
        assert first.result() is None and [f.result() for f in later] == [None] * 5
    assert len(order_gets(emulator)) == lookup.gets == 2
