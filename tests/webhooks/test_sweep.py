"""The sweep against the real app, the emulator and Azurite: it announces what webhooks missed, never
announces an old entity as created, never skips an entity for good, and works within a time budget."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import requests
from azure.data.tables import UpdateMode

from connector import cursors
from connector.bc.timestamps import iso, utc_now
from connector.leases import Lease
from connector.runtime import get_runtime
from connector.settings import QUEUE_ITEMS, TABLE_CURSORS, TABLE_DEDUPE
from connector.webhooks import sweep
from connector.webhooks.dedupe import DedupeLog, DedupeScope
from tests.webhooks.scenario import EmulatedBC, OutQueues

LONG_AGO = "2000-01-01T00:00:00.000000Z"


def rewrite_dedupe_rows(**changes: str) -> int:
    """Set fields on every row of the dedupe table (as if time had passed); how many rows."""
    table = get_runtime().storage.table(TABLE_DEDUPE)
    rows = [dict(r) for r in table.list_entities()]
    for row in rows:
        table.upsert_entity({**row, **changes}, mode=UpdateMode.REPLACE)
    return len(rows)


def items_cursor(company_id: str) -> dict:
    table = get_runtime().storage.table(TABLE_CURSORS)
    return dict(table.get_entity("default", f"sweep:items:{company_id}"))


def write_baselining_marker(company_id: str, cutoff: str, updated_at: str) -> dict:
    """The `baselining` cursor row a runner inserts when it starts setting the items trigger up."""
    row = {"PartitionKey": "default", "RowKey": f"sweep:items:{company_id}", "state": sweep.BASELINING,
           "cursor": cutoff, "started_at": cutoff, "updated_at": updated_at}
    get_runtime().storage.table(TABLE_CURSORS).create_entity(row)
    return row


def items_trigger() -> sweep.WatchedEntitySet:
    return get_runtime().settings.connection("default").trigger("items")


def bare_collections(s) -> list[str]:
    return [n["resource"] for d in s.bc.deliveries(s.notification_url) if d["kind"] == "notification"
            for n in d["body"]["value"] if n["changeType"] == "collection" and "$filter" not in n["resource"]]


@pytest.mark.e2e
def test_entities_announced_or_known_long_ago_are_never_announced_as_created_again(scenario, make_emulator):
    emu = make_emulator(collection_threshold=3, webhook_debounce_seconds=2.0)
    s = scenario(bc=emu, CURSOR_OVERLAP_SECONDS="0")
    older = s.bc.create_item()
    s.subscribe()  # `older` and the seed exist before the trigger: known
    new, doomed = s.bc.create_item(), s.bc.create_item()
    s.bc.flush()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: {new["id"], doomed["id"]} <= {e["subject"] for e in es})
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert rewrite_dedupe_rows(expires_at=LONG_AGO) > 2  # DEDUPE_TTL_DAYS went by long ago
    s.host.fire_timer("sweep_created")  # the sweep purges what has expired
    s.bc.update("items", older["id"], {"displayName": "changed years later"})
    s.bc.update("items", new["id"], {"displayName": "changed years later"})
    s.bc.delete("items", doomed["id"])  # three changes with a delete: BC asks for a full resync
    s.bc.flush()
    assert bare_collections(s)
    s.host.wait_idle(60)
    s.host.fire_timer("sweep_created")  # reads both updates
    s.host.wait_idle(30)
    assert s.queues.take(QUEUE_ITEMS) == []


@pytest.mark.e2e
def test_an_entity_whose_claim_was_abandoned_is_announced_by_a_later_sweep(scenario):
    s = scenario(CURSOR_OVERLAP_SECONDS="0")
    s.host.fire_timer("sweep_created")  # the triggers start; no subscriptions: only the sweep announces
    stuck = s.bc.create_item()
    time.sleep(0.01)
    later = s.bc.create_item()
    dedupe = DedupeLog(get_runtime().storage, 14)
    # a notification message claims `stuck`, then dies (it will end in poison)
    assert dedupe.hold(DedupeScope("default", s.company_id, "items"), [stuck["id"]], "dying-message").won
    s.host.fire_timer("sweep_created")
    assert [e["subject"] for e in s.queues.take(QUEUE_ITEMS)] == [later["id"]]
    assert items_cursor(s.company_id)["cursor"] < stuck["lastModifiedDateTime"]
    rewrite_dedupe_rows(claimed_until=LONG_AGO)  # the dead message's claim runs out
    s.host.fire_timer("sweep_created")
    s.queues.take(QUEUE_ITEMS)
    assert len(s.queues.about(QUEUE_ITEMS, stuck["id"])) == 1
    assert len(s.queues.about(QUEUE_ITEMS, later["id"])) == 1


@pytest.mark.e2e
def test_a_sweep_out_of_time_checkpoints_each_page_and_the_next_run_resumes(scenario, monkeypatch):
    monkeypatch.setattr(sweep, "PAGE_SIZE", 4)
    s = scenario(CURSOR_OVERLAP_SECONDS="0", SWEEP_MAX_SECONDS="0")  # one page per trigger and run
    s.host.fire_timer("sweep_created")  # the triggers start
    started = items_cursor(s.company_id)
    created = [s.bc.create_item()["id"] for _ in range(10)]
    runs = []
    for _ in range(3):
        s.host.fire_timer("sweep_created")
        runs.append([e["subject"] for e in s.queues.take(QUEUE_ITEMS)])
        cursor = items_cursor(s.company_id)
        status = requests.get(f"{s.host.url}/api/status", timeout=30).json()
        [shown] = [c for c in status["connections"][0]["cursors"] if c["name"] == cursor["RowKey"]]
        assert shown["updated_at"] and shown["updated_at"] == cursor["updated_at"]
        assert shown["next_link"] is (len(runs) < 3)
        if len(runs) < 3:
            assert cursor["cursor"] == started["cursor"]  # moves only once the pass is complete
    assert [len(r) for r in runs] == [4, 4, 2]
    assert sorted(sum(runs, [])) == sorted(created)
    assert items_cursor(s.company_id)["cursor"] > started["cursor"]


def test_a_sweep_whose_lease_was_taken_over_stops_before_announcing_anything(runtime, emulator, azurite):
    company_id = runtime.company_id()
    queues = OutQueues(azurite.connection_string)
    sweep.sweep(runtime)  # the triggers start (announcing what changed within the overlap before)
    queues.take(QUEUE_ITEMS)
    cursor = items_cursor(company_id)
    EmulatedBC(emulator, company_id).create_item()
    lease = Lease(runtime.storage, "sweep:default", ttl_seconds=60)
    assert lease.acquire()
    later = Lease(runtime.storage, "sweep:default", ttl_seconds=60, clock=lambda: time.time() + 120)
    assert later.acquire()  # the first holder looked dead: its lease expired and was taken over
    assert sweep.SweepRun(runtime, "default", company_id, lease, max_seconds=60).run() == []
    assert queues.take(QUEUE_ITEMS) == []
    assert items_cursor(company_id) == cursor


def test_two_runners_starting_a_trigger_at_once_lose_no_entity_created_after_the_winning_start(
        connector_env, emulator, azurite, monkeypatch):
    """The first runner reads the clock, an item is created, the second reads the clock and then
    loses to the first: the item, created after the winner's start, must still be announced."""
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    bc = EmulatedBC(emulator, company_id)
    trigger = runtime.settings.connection("default").trigger("items")
    first_has_time, item_created, first_inserted = threading.Event(), threading.Event(), threading.Event()
    real_now, real_insert = sweep.utc_now, cursors.insert_entity

    def clock():
        if threading.current_thread().name == "second" and not item_created.is_set():
            item_created.wait(30)
        moment = real_now()
        if threading.current_thread().name == "first":
            first_has_time.set()
        return moment

    def insert(table, row):
        if threading.current_thread().name == "second":
            first_inserted.wait(30)  # the first runner wins the insert
        etag = real_insert(table, row)
        if threading.current_thread().name == "first":
            first_inserted.set()
        return etag

    monkeypatch.setattr(sweep, "utc_now", clock)
    monkeypatch.setattr(cursors, "insert_entity", insert)
    outcomes = {}

    def start(name):
        outcomes[name] = sweep.start_trigger(runtime, "default", company_id, trigger)

    threads = [threading.Thread(target=start, args=(n,), name=n) for n in ("first", "second")]
    threads[0].start()
    assert first_has_time.wait(30)
    time.sleep(0.01)
    created = bc.create_item()
    time.sleep(0.01)
    threads[1].start()
    item_created.set()
    for thread in threads:
        thread.join(60)
    monkeypatch.undo()
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    queues = OutQueues(azurite.connection_string)
    sweep.sweep(get_runtime())
    assert [e["subject"] for e in queues.take(QUEUE_ITEMS)] == [created["id"]]


def test_a_set_up_abandoned_by_a_dead_runner_is_taken_over_and_completed_with_its_cutoff(
        connector_env, emulator, azurite):
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    bc = EmulatedBC(emulator, company_id)
    old = bc.create_item()
    time.sleep(0.01)
    cutoff = iso(utc_now())
    stale = iso(utc_now() - timedelta(seconds=sweep.BASELINE_STALE_SECONDS + 60))
    write_baselining_marker(company_id, cutoff, updated_at=stale)  # its runner died long ago

    started = sweep.start_trigger(runtime, "default", company_id, items_trigger())

    assert started is not None
    _, state = started
    assert state.state == "" and iso(state.cursor) == cutoff
    assert "state" not in items_cursor(company_id)
    time.sleep(0.01)
    bc.update("items", old["id"], {"displayName": "changed after the set-up"})
    created = bc.create_item()
    queues = OutQueues(azurite.connection_string)
    sweep.sweep(runtime)
    assert [e["subject"] for e in queues.take(QUEUE_ITEMS)] == [created["id"]]  # `old` was known


def test_a_set_up_under_way_by_a_live_runner_is_left_alone(connector_env, emulator, azurite):
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    now = iso(utc_now())
    marker = write_baselining_marker(company_id, now, updated_at=now)

    assert sweep.start_trigger(runtime, "default", company_id, items_trigger()) is None
    [result] = [r for r in sweep.sweep(runtime) if r.entity_set == "items"]

    assert not result.finished
    assert {k: v for k, v in items_cursor(company_id).items() if k in marker} == marker
    scope = sweep.scope_of("default", company_id, items_trigger())
    dedupe = runtime.storage.table(TABLE_DEDUPE)
    assert list(dedupe.query_entities("PartitionKey eq @pk", parameters={"pk": scope.partition})) == []


@pytest.mark.parametrize("updated_at", ["9999-12-31T23:59:59.000000Z", "not a time"])
def test_a_set_up_marker_whose_refresh_time_does_not_validate_is_taken_over(
        connector_env, emulator, azurite, updated_at):
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    cutoff = iso(utc_now())
    write_baselining_marker(company_id, cutoff, updated_at=updated_at)  # today: blocked for good

    started = sweep.start_trigger(runtime, "default", company_id, items_trigger())

    assert started is not None and started[1].state == "" and iso(started[1].cursor) == cutoff


def test_a_live_set_up_keeps_its_marker_fresh_with_a_heartbeat(connector_env, emulator, monkeypatch):
    connector_env(CURSOR_OVERLAP_SECONDS="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    monkeypatch.setattr(sweep, "BASELINE_STALE_SECONDS", 0.3)
    refreshed: list[str] = []
    real_record = sweep.Baseline._record_known

    def slow_record(self, marker):  # a set-up whose one page takes several stale periods
        refreshed.append(items_cursor(company_id)["updated_at"])
        time.sleep(1.2)
        refreshed.append(items_cursor(company_id)["updated_at"])
        return real_record(self, marker)

    monkeypatch.setattr(sweep.Baseline, "_record_known", slow_record)
    assert sweep.start_trigger(runtime, "default", company_id, items_trigger()) is not None
    assert refreshed[1] > refreshed[0]  # refreshed while the page was read
