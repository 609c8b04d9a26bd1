"""Schedule Pull Items end to end: the real app in the local host, the BC emulator, Azurite."""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import pytest
import requests

from connector.item_pull import CursorTable, ItemsCursor, PullInterrupted
from connector.leases import Lease
from connector.runtime import get_runtime
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID

pytestmark = pytest.mark.e2e

SEED_ITEMS = 20


@pytest.fixture
def host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    """The local host with small pages and no overlap (timers fire only when a test fires them)."""

    def start(**overrides: str) -> Any:
        return local_host(**({"ITEM_PULL_PAGE_SIZE": "5", "CURSOR_OVERLAP_SECONDS": "0"} | overrides))

    return start


def company(emulator: Any, company_id: str = CRONUS_UK_ID) -> Any:
    return emulator.bc.store.company(emulator.config.tenants["lmints.io"], "production", company_id)


def store_items(emulator: Any, company_id: str = CRONUS_UK_ID) -> dict[str, dict[str, Any]]:
    """Every item of a company as the emulator holds it, with its variant ids."""
    c = company(emulator, company_id)
    with emulator.bc.store.lock:
        return {row.id: {"number": row.data["number"], "displayName": row.data["displayName"],
                         "variants": sorted(v.id for v in c.sets["itemVariants"].children(row.id))}
                for row in c.sets["items"].order}


def pull(host: Any, connection: str = "default") -> requests.Response:
    return requests.post(f"{host.url}/api/connections/{connection}/pulls/items", timeout=60)


def drain() -> list[dict[str, Any]]:
    """Take every message off `bc-items`."""
    queue = get_runtime().storage.queue("bc-items")
    events = []
    while True:
        batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
        if not batch:
            return events
        for message in batch:
            events.append(json.loads(message.content))
            queue.delete_message(message)


def item_requests(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if "/items" in r.path or "/itemVariants" in r.path]


def test_first_pull_emits_every_item_with_its_variants_one_request_per_page(host, emulator):
    h = host()
    emulator.clear_requests()
    response = pull(h)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "started" and body["finished"] is True
    assert body["emitted"] == SEED_ITEMS and body["companyId"] == CRONUS_UK_ID
    events = drain()
    expected = store_items(emulator)
    assert len(events) == len(expected) == SEED_ITEMS
    for event in events:
        assert event["type"] == "bc.item.pulled"
        assert event["source"] == f"bc-connector/default/{CRONUS_UK_ID}"
        data = event["data"]
        assert data["number"] == expected[data["id"]]["number"]
        assert sorted(v["id"] for v in data["itemVariants"]) == expected[data["id"]]["variants"]
    assert {e["data"]["id"] for e in events} == set(expected)
    assert sum(len(e["data"]["itemVariants"]) for e in events) > 0
    reads = item_requests(emulator)
    assert len(reads) == math.ceil(SEED_ITEMS / 5)  # one request per page, none per item
    assert all(r.path.endswith(f"companies({CRONUS_UK_ID})/items") for r in reads)
    assert "$expand=itemVariants" in unquote_plus(reads[0].query)


def test_second_pull_emits_only_the_changed_item(host, emulator):
    h = host()
    assert pull(h).json()["emitted"] == SEED_ITEMS
    drain()
    c = company(emulator)
    row = c.sets["items"].by_number("1906-S")
    emulator.bc.update(c, "items", row, {"displayName": "ATHENS Mobile Pedestal, oak"})
    emulator.clear_requests()
    body = pull(h).json()
    assert body["finished"] and body["emitted"] == 1
    [event] = drain()
    assert event["data"]["id"] == row.id
    assert event["data"]["displayName"] == "ATHENS Mobile Pedestal, oak"
    filters = [unquote_plus(r.query) for r in item_requests(emulator) if r.path.endswith("/items")]
    assert filters and all("lastModifiedDateTime gt " in f for f in filters)


def test_a_variant_only_change_re_emits_its_item_with_the_new_variant(host, emulator):
    h = host()
    pull(h)
    first = {e["data"]["id"]: e for e in drain()}
    c = company(emulator)
    item = c.sets["items"].by_number("1928-S")
    variant = c.sets["itemVariants"].children(item.id)[1]
    emulator.bc.update(c, "itemVariants", variant, {"description": "AMSTERDAM Lamp, polished brass"})
    emulator.clear_requests()
    body = pull(h).json()
    assert body["finished"] and body["emitted"] == 1
    [event] = drain()
    assert event["data"]["id"] == item.id
    assert event["id"] != first[item.id]["id"]
    described = {v["id"]: v["description"] for v in event["data"]["itemVariants"]}
    assert described[variant.id] == "AMSTERDAM Lamp, polished brass"
    paths = [r.path.rsplit("/", 1)[-1] for r in item_requests(emulator)]
    assert paths == ["items", "itemVariants", "items"]  # changed items, changed variants, one batch


def test_with_the_option_off_events_carry_no_item_variants(host, emulator):
    h = host(PULL_ITEM_VARIANTS="false")
    emulator.clear_requests()
    assert pull(h).json()["emitted"] == SEED_ITEMS
    events = drain()
    assert len(events) == SEED_ITEMS
    assert all("itemVariants" not in e["data"] for e in events)
    assert all("$expand" not in unquote_plus(r.query) for r in item_requests(emulator))


def test_a_run_out_of_time_resumes_and_every_item_is_emitted(host, emulator):
    h = host(ITEM_PULL_MAX_SECONDS="0")  # every run stops after one page
    runs = []
    while not runs or not runs[-1]["finished"]:
        runs.append(pull(h).json())
        assert len(runs) <= 10
    assert [r["emitted"] for r in runs] == [5, 5, 5, 5]
    assert [r["finished"] for r in runs] == [False, False, False, True]
    events = drain()
    assert sorted(e["data"]["id"] for e in events) == sorted(store_items(emulator))


def test_a_run_that_fails_mid_way_resumes_from_its_checkpoint(host, emulator):
    h = host(ITEM_PULL_MAX_SECONDS="0", BC_MAX_RETRIES="0")
    assert pull(h).json()["emitted"] == 5
    emulator.faults.add_rule(action="error_before", method="GET", path_regex=r"/items$", status=503, count=1)
    failed = pull(h)
    assert failed.status_code == 502 and failed.json()["error"]["code"]
    runs = [pull(h).json()]
    while not runs[-1]["finished"]:
        runs.append(pull(h).json())
        assert len(runs) <= 10
    assert sum(r["emitted"] for r in runs) == SEED_ITEMS - 5
    events = drain()
    assert sorted(e["data"]["id"] for e in events) == sorted(store_items(emulator))


def test_an_item_changed_behind_the_read_position_is_caught_by_the_next_pass(host, emulator):
    h = host(ITEM_PULL_MAX_SECONDS="0")  # one page per run: the pass spans several runs
    assert pull(h).json()["emitted"] == 5
    c = company(emulator)
    early, late = c.sets["items"].order[1], c.sets["items"].order[17]  # already read / not yet read
    for row in (early, late):
        emulator.bc.update(c, "items", row, {"displayName": f"{row.data['number']} renamed"})
    while not pull(h).json()["finished"]:
        pass
    names = {e["data"]["id"]: e["data"]["displayName"] for e in drain()}
    assert names[late.id] == f"{late.data['number']} renamed" and "renamed" not in names[early.id]
    assert pull(h).json()["finished"]
    names = {e["data"]["id"]: e["data"]["displayName"] for e in drain()}
    assert names[early.id] == f"{early.data['number']} renamed"  # not lost behind the cursor


def test_a_runner_whose_cursor_changed_underneath_stops(runtime):
    first, second = (CursorTable(runtime.storage, "default", CRONUS_UK_ID) for _ in range(2))
    first.load(), second.load()
    first.save(ItemsCursor(cursor="2024-05-01T10:00:00.000Z"))
    with pytest.raises(PullInterrupted):
        second.save(ItemsCursor(cursor="2024-05-01T11:00:00.000Z"))
    assert CursorTable(runtime.storage, "default", CRONUS_UK_ID).load().cursor == "2024-05-01T10:00:00.000Z"


def test_overlapping_runs_only_one_pulls(host, emulator):
    h = host(CURSOR_OVERLAP_SECONDS="86400")  # a second run, were it allowed, would re-emit everything
    lease = Lease(get_runtime().storage, f"items:default:{CRONUS_UK_ID}", 60)
    assert lease.acquire()
    busy = pull(h)
    assert busy.status_code == 202 and busy.json()["status"] == "already-running"
    assert busy.json()["emitted"] == 0 and drain() == []
    lease.release()

    emulator.faults.configure({"latency_seconds": 0.2})
    try:
        timer = threading.Thread(target=h.fire_timer, args=("scheduled_item_pull",))
        timer.start()
        time.sleep(0.3)
        route = pull(h).json()
        timer.join()
    finally:
        emulator.faults.clear()
    assert route["status"] == "already-running" and route["emitted"] == 0
    events = drain()
    assert len(events) == SEED_ITEMS  # pulled once, by the timer
    assert len({e["data"]["id"] for e in events}) == SEED_ITEMS


def test_the_timer_pulls_every_configured_connection(host, emulator):
    h = host(BC_CONNECTIONS="default,usa", USA__BC_COMPANY=CRONUS_USA_ID)
    h.fire_timer("scheduled_item_pull")
    events = drain()
    sources = {e["source"] for e in events}
    assert sources == {f"bc-connector/default/{CRONUS_UK_ID}", f"bc-connector/usa/{CRONUS_USA_ID}"}
    assert len(events) == len(store_items(emulator)) + len(store_items(emulator, CRONUS_USA_ID))


def test_a_re_read_inside_the_overlap_gives_the_same_event_ids(host, emulator):
    h = host(CURSOR_OVERLAP_SECONDS="86400")
    pull(h)
    first = sorted(e["id"] for e in drain())
    pull(h)
    assert sorted(e["id"] for e in drain()) == first


def test_unknown_connection_is_404_json(host):
    h = host()
    response = pull(h, "nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "UnknownConnection"


def test_the_route_needs_a_function_key_when_keys_are_enforced(host):
    h = host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="item-key")
    assert pull(h).status_code == 401
    keyed = requests.post(f"{h.url}/api/connections/default/pulls/items",
                          headers={"x-functions-key": "item-key"}, timeout=60)
    assert keyed.status_code == 202 and keyed.json()["status"] == "started"
