"""Schedule Pull Items against the BC emulator and Azurite: the route, queue trigger and timer of the
real app in the local host, and the chunked pull itself in process."""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest
import requests
from azure.core.exceptions import ServiceRequestError

from connector.bc.errors import BCError
from connector.cursors import CursorTable
from connector.items import pull as pull_module
from connector.items.pull import cursor_name
from connector.leases import Lease
from connector.runtime import Runtime, get_runtime
from connector.settings import TABLE_LEASES
from connector.storage import read_entity, table_key
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID
from tests.event_schemas import checked
from tests.queue_drain import drain_texts as drain_queue
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

SEED_ITEMS = 20
PAGE = 5
LEASE_NAME = f"items:default:{CRONUS_UK_ID}"
IDLE_SECONDS = 60.0


@pytest.fixture
def host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    """The local host with small pages and no overlap (timers fire only when a test fires them)."""

    def start(**overrides: str) -> Any:
        return local_host(**({"ITEM_PULL_PAGE_SIZE": str(PAGE), "CURSOR_OVERLAP_SECONDS": "0"} | overrides))

    return start


@pytest.fixture
def runtime(connector_env: Callable[..., dict[str, str]]) -> Runtime:
    """The connector in this process, small pages, no overlap, no BC retries: for pulls run directly."""
    connector_env(ITEM_PULL_PAGE_SIZE=str(PAGE), CURSOR_OVERLAP_SECONDS="0", BC_MAX_RETRIES="0")
    return get_runtime()


class BCGate:
    """Holds every BC request of the emulator (for up to 60 s) between `close()` and `open()`."""

    def __init__(self, emulator: Any):
        self._faults = emulator.faults

    def close(self) -> None:
        self._faults.rearm()
        self._faults.configure({"latency_seconds": 60})

    def open(self) -> None:
        self._faults.clear()
        self._faults.release()  # requests already waiting go on now


@pytest.fixture
def bc_gate(emulator: Any) -> Iterator[BCGate]:
    gate = BCGate(emulator)
    try:
        yield gate
    finally:
        gate.open()
        emulator.faults.rearm()


def company(emulator: Any, company_id: str = CRONUS_UK_ID) -> Any:
    return emulator.bc.store.company(emulator.config.tenants["lmints.io"], "production", company_id)


def store_items(emulator: Any, company_id: str = CRONUS_UK_ID) -> dict[str, dict[str, Any]]:
    """Every item of a company as the emulator holds it, with its variant ids."""
    c = company(emulator, company_id)
    with emulator.bc.store.lock:
        return {row.id: {"number": row.data["number"], "displayName": row.data["displayName"],
                         "variants": sorted(v.id for v in c.sets["itemVariants"].children(row.id))}
                for row in c.sets["items"].order}


def request_pull(host: Any, connection: str = "default") -> requests.Response:
    return requests.post(f"{host.url}/api/connections/{connection}/pulls/items", timeout=60)


def pull(host: Any, connection: str = "default") -> dict[str, Any]:
    """Ask for a pull, then wait until the queue trigger (and any continuation) has run."""
    response = request_pull(host, connection)
    assert response.status_code == 202, response.text
    host.wait_idle(IDLE_SECONDS)
    return response.json()


def drain(queue_name: str = "bc-items") -> list[dict[str, Any]]:
    """Take every message off a queue (JSON), each event checked against its published schema."""
    return [checked(json.loads(text)) for text in drain_texts(queue_name)]


def drain_texts(queue_name: str) -> list[str]:
    return drain_queue(get_runtime().storage.queue(queue_name))


def item_requests(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if "/items" in r.path or "/itemVariants" in r.path]


def requested_runs(host: Any) -> list[Any]:
    return [i for i in host.invocations if i.function == "requested_item_pull"]





# ------------------------------------------------------------------------------ route, queue, timer

def test_the_route_answers_202_queued_at_once_and_the_queue_trigger_pulls(host, emulator, bc_gate):
    h = host()
    bc_gate.close()
    response = request_pull(h)  # BC requests are held: a pull run inline could not answer
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["connection"] == "default" and body["requestedAt"]
    assert drain() == []
    bc_gate.open()
    h.wait_idle(IDLE_SECONDS)
    assert len(drain()) == SEED_ITEMS
    assert [i.outcome for i in requested_runs(h)] == ["succeeded"]


def test_first_pull_emits_every_item_with_its_variants_one_request_per_page(host, emulator):
    h = host()
    emulator.clear_requests()
    pull(h)
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
    assert len(reads) == math.ceil(SEED_ITEMS / PAGE)  # one request per page, none per item
    assert all(r.path.endswith(f"companies({CRONUS_UK_ID})/items") for r in reads)
    assert "$expand=itemVariants" in unquote_plus(reads[0].query)


def test_second_pull_emits_only_the_changed_item(host, emulator):
    h = host()
    pull(h)
    assert len(drain()) == SEED_ITEMS
    c = company(emulator)
    row = c.sets["items"].by_number("1906-S")
    emulator.bc.update(c, "items", row, {"displayName": "ATHENS Mobile Pedestal, oak"})
    emulator.clear_requests()
    pull(h)
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
    pull(h)
    [event] = drain()
    assert event["data"]["id"] == item.id
    assert event["id"] != first[item.id]["id"]
    described = {v["id"]: v["description"] for v in event["data"]["itemVariants"]}
    assert described[variant.id] == "AMSTERDAM Lamp, polished brass"
    paths = [r.path.rsplit("/", 1)[-1] for r in item_requests(emulator)]
    assert paths == ["items", "itemVariants", "items"]  # changed items, changed variants, one batch


def test_an_idle_pull_reads_changed_items_and_variants_and_fetches_no_item_again(host, emulator):
    h = host(CURSOR_OVERLAP_SECONDS="86400")  # every variant is inside the overlap of the next pass
    pull(h)
    assert len(drain()) == SEED_ITEMS
    emulator.clear_requests()
    pull(h)
    assert drain() == []
    # the variants read again were read in this state by the last pass: no items fetched for them
    assert fetched_after_variants(emulator) == []
    c = company(emulator)
    item = c.sets["items"].by_number("1928-S")
    variant = c.sets["itemVariants"].children(item.id)[0]
    emulator.bc.update(c, "itemVariants", variant, {"description": "changed inside the overlap"})
    emulator.clear_requests()
    pull(h)
    [event] = drain()
    assert event["data"]["id"] == item.id
    assert {v["id"]: v["description"] for v in event["data"]["itemVariants"]}[variant.id] == (
        "changed inside the overlap")
    # its item, read again in the overlap, came with the new variant: not fetched a second time
    assert fetched_after_variants(emulator) == []
    emulator.clear_requests()
    pull(h)
    assert drain() == []
    assert fetched_after_variants(emulator) == []


def fetched_after_variants(emulator: Any) -> list[str]:
    """The item requests of a pull's variants phase (items fetched by id for changed variants)."""
    paths = [r.path.rsplit("/", 1)[-1] for r in item_requests(emulator)]
    assert "itemVariants" in paths
    return [p for p in paths[paths.index("itemVariants"):] if p != "itemVariants"]


def test_with_the_option_off_events_carry_no_item_variants(host, emulator):
    h = host(PULL_ITEM_VARIANTS="false")
    emulator.clear_requests()
    pull(h)
    events = drain()
    assert len(events) == SEED_ITEMS
    assert all("itemVariants" not in e["data"] for e in events)
    assert all("$expand" not in unquote_plus(r.query) for r in item_requests(emulator))


def test_a_requested_pull_out_of_time_continues_in_chunks_until_every_item_is_emitted(host, emulator):
    h = host(ITEM_PULL_MAX_SECONDS="0")  # every run stops after one page
    pull(h)  # one request: the run and its continuations, one at a time
    events = drain()
    assert sorted(e["data"]["id"] for e in events) == sorted(store_items(emulator))
    assert [i.outcome for i in requested_runs(h)] == ["succeeded"] * math.ceil(SEED_ITEMS / PAGE)
    assert drain("bc-item-pulls") == []
    assert not CursorTable(get_runtime().storage, "default", cursor_name(CRONUS_UK_ID)).load().in_pass


def test_a_held_lease_means_the_requested_run_and_the_timer_pull_nothing_and_the_request_waits(
        host, monkeypatch):
    monkeypatch.setattr(pull_module, "RECHECK_SECONDS", 1)  # the host runs in this process
    h = host(CURSOR_OVERLAP_SECONDS="86400")  # a run, were it allowed, would re-emit everything
    lease = Lease(get_runtime().storage, LEASE_NAME, 60)
    assert lease.acquire()
    assert request_pull(h).status_code == 202
    wait_until(lambda: len(requested_runs(h)) >= 2, 60)  # looked at, put back, looked at again
    h.fire_timer("scheduled_item_pull")
    assert drain() == [] and drain("bc-item-pulls-poison") == []
    assert {i.outcome for i in requested_runs(h)} == {"succeeded"}  # waiting is no failure
    lease.release()  # the holder is done (or died): the request still on the queue runs itself
    h.wait_idle(IDLE_SECONDS)
    assert len(drain()) == SEED_ITEMS


def test_a_request_while_the_timer_is_pulling_is_covered_by_that_run(host, emulator, bc_gate, monkeypatch):
    """The request waits on its queue behind the timer's run and is settled when that run completes."""
    monkeypatch.setattr(pull_module, "RECHECK_SECONDS", 1)  # the host runs in this process
    h = host(CURSOR_OVERLAP_SECONDS="86400")  # a second run after the first would re-emit everything
    runtime = get_runtime()
    runtime.company_id("default")  # discovered and saved now: the timer's first BC call is its page read
    bc_gate.close()
    timer = threading.Thread(target=h.fire_timer, args=("scheduled_item_pull",))
    timer.start()
    try:
        wait_until(lambda: read_entity(runtime.storage.table(TABLE_LEASES), table_key(LEASE_NAME), "lease"))
        assert request_pull(h).status_code == 202  # the timer holds the lease, stuck on its first page
        [run] = wait_until(lambda: requested_runs(h))
        assert run.outcome == "succeeded" and drain() == []
    finally:
        bc_gate.open()
        timer.join()
    h.wait_idle(IDLE_SECONDS)
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


def test_a_connection_never_signed_in_does_not_fail_the_timer_and_the_others_are_pulled(host, emulator):
    h = host(BC_CONNECTIONS="default,shop", SHOP__BC_GRANT_TYPE="authorization_code")
    h.fire_timer("scheduled_item_pull")  # raises if the run failed
    events = drain()
    assert {e["source"] for e in events} == {f"bc-connector/default/{CRONUS_UK_ID}"}
    assert len(events) == SEED_ITEMS


def test_requests_that_can_never_run_are_kept_on_the_poison_queue_at_once(host):
    h = host(BC_CONNECTIONS="default,shop", SHOP__BC_GRANT_TYPE="authorization_code")
    pulls = get_runtime().storage.queue("bc-item-pulls")
    bad = ['{"connection": "default"', '{"connection": "gone", "requestedAt": "2024-05-01T10:00:00Z"}']
    for text in bad:
        pulls.send_message(text)
    assert request_pull(h, "shop").status_code == 202  # configured, but nobody signed in
    h.wait_idle(IDLE_SECONDS)
    poisoned = drain_texts("bc-item-pulls-poison")
    assert sorted(t for t in poisoned if t in bad) == sorted(bad)
    assert [json.loads(t)["connection"] for t in poisoned if t not in bad] == ["shop"]
    assert [i.outcome for i in requested_runs(h)] == ["succeeded"] * 3  # no pointless retries
    assert drain() == []


def test_a_scheduled_pull_with_nothing_new_does_not_re_emit_its_overlap(host, emulator):
    h = host(CURSOR_OVERLAP_SECONDS="86400")  # every item is inside the overlap of the next pass
    pull(h)
    assert len(drain()) == SEED_ITEMS
    pull(h)
    assert drain() == []  # read again, remembered as emitted
    c = company(emulator)
    row = c.sets["items"].by_number("1906-S")
    emulator.bc.update(c, "items", row, {"displayName": "changed inside the overlap"})
    pull(h)
    [event] = drain()
    assert (event["data"]["id"], event["data"]["displayName"]) == (row.id, "changed inside the overlap")
    pull(h)
    assert drain() == []


def test_unknown_connection_is_404_json_and_nothing_is_queued(host):
    h = host()
    response = request_pull(h, "nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "UnknownConnection"
    h.wait_idle(IDLE_SECONDS)
    assert requested_runs(h) == []


def test_the_route_needs_a_function_key_when_keys_are_enforced(host):
    h = host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="item-key")
    assert request_pull(h).status_code == 401
    keyed = requests.post(f"{h.url}/api/connections/default/pulls/items",
                          headers={"x-functions-key": "item-key"}, timeout=60)
    assert keyed.status_code == 202 and keyed.json()["status"] == "queued"


# --------------------------------------------------------------------------- the pull, run directly

def test_a_run_that_fails_mid_way_resumes_from_its_checkpoint(runtime, emulator):
    first = runtime.item_pull.pull_company("default", max_seconds=0)
    assert (first.status, first.emitted) == ("partial", PAGE)
    emulator.faults.add_rule(action="error_before", method="GET", path_regex=r"/items$", status=503, count=1)
    with pytest.raises(BCError):
        runtime.item_pull.pull_company("default", max_seconds=0)
    runs = [runtime.item_pull.pull_company("default", max_seconds=0)]
    while not runs[-1].finished:
        runs.append(runtime.item_pull.pull_company("default", max_seconds=0))
        assert len(runs) <= 10
    assert sum(r.emitted for r in runs) == SEED_ITEMS - PAGE
    assert sorted(e["data"]["id"] for e in drain()) == sorted(store_items(emulator))


def test_a_failed_queue_send_keeps_the_checkpoint_before_that_page(runtime, emulator, monkeypatch):
    publish, pages = runtime.events.publish, []

    def second_page_fails(queue_name: str, events: Any) -> int:
        pages.append(queue_name)
        if len(pages) == 2:
            raise ServiceRequestError("injected: the queue is unreachable")
        return publish(queue_name, events)

    monkeypatch.setattr(runtime.events, "publish", second_page_fails)
    with pytest.raises(ServiceRequestError):
        runtime.item_pull.pull_company("default", max_seconds=60)
    state = CursorTable(runtime.storage, "default", cursor_name(CRONUS_UK_ID)).load()
    assert state.in_pass and state.cursor is None and state.next_link  # resumes at the failed page
    first_page = {e["data"]["id"] for e in drain()}
    assert len(first_page) == PAGE

    monkeypatch.setattr(runtime.events, "publish", publish)
    result = runtime.item_pull.pull_company("default", max_seconds=60)
    assert result.finished and result.emitted == SEED_ITEMS - PAGE
    rest = [e["data"]["id"] for e in drain()]
    assert sorted(rest) == sorted(set(store_items(emulator)) - first_page)  # the failed page included


def test_an_item_changed_behind_the_read_position_is_caught_by_the_next_pass(runtime, emulator):
    # the pass spans several runs
    assert runtime.item_pull.pull_company("default", max_seconds=0).emitted == PAGE
    c = company(emulator)
    early, late = c.sets["items"].order[1], c.sets["items"].order[17]  # already read / not yet read
    for row in (early, late):
        emulator.bc.update(c, "items", row, {"displayName": f"{row.data['number']} renamed"})
    while not runtime.item_pull.pull_company("default", max_seconds=0).finished:
        pass
    names = {e["data"]["id"]: e["data"]["displayName"] for e in drain()}
    assert names[late.id] == f"{late.data['number']} renamed" and "renamed" not in names[early.id]
    assert runtime.item_pull.pull_company("default", max_seconds=0).finished
    names = {e["data"]["id"]: e["data"]["displayName"] for e in drain()}
    assert names[early.id] == f"{early.data['number']} renamed"  # not lost behind the cursor
