"""The one resumable read: `ReadCursor` decisions (pure), its row in `bccursors` on Azurite (typed,
ETag-guarded), and rows written by the item pull and the sweep before it still resuming."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connector.cursors import CursorTable, ReadCursor, ReadInterrupted, completed_cursor, newest_modified
from connector.items.pull import (
    PHASE_VARIANTS,
    ItemPullRequest,
    cursor_name,
    request_message,
)
from connector.settings import QUEUE_ITEMS, TABLE_CURSORS
from connector.storage import Storage, table_key
from connector.webhooks import sweep
from devtools.emulator.seed import CRONUS_UK_ID

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# ---- pure: passes and the cursor --------------------------------------------------------------------

def test_the_first_pass_reads_everything_and_later_passes_go_back_by_the_overlap():
    assert ReadCursor().since(60) is None
    assert ReadCursor(cursor=datetime(2026, 3, 1, 12, 0, 0, 123999, tzinfo=UTC)).since(60) == \
        "2026-03-01T11:59:00.123Z"  # BC's form, milliseconds rounded down: a `gt` never skips a change
    assert ReadCursor(cursor=at(30.25)).since(0) == "2026-03-01T12:00:30.250Z"


def test_the_newest_change_ignores_missing_times():
    assert newest_modified(["2026-03-01T12:00:05.5Z", None, "", "2026-03-01T11:00:00Z"]) == at(5.5)
    assert newest_modified([]) is None


def test_a_pass_keeps_its_cursor_pending_until_it_completes():
    state = ReadCursor(cursor=NOW).start_pass(at(3600), "items")
    state = state.checkpoint("https://bc/next1", at(10)).checkpoint("https://bc/next2", at(5))
    assert state.in_pass and state.cursor == NOW and state.phase == "items"
    assert state.pending == at(10) and state.next_link == "https://bc/next2"
    done = state.checkpoint(None, None).complete()
    assert done == ReadCursor(cursor=at(10), last_pass_started=at(3600)) and not done.in_pass


def test_the_cursor_moves_to_the_newest_change_and_never_back():
    assert completed_cursor(NOW, at(5), at(3600), None) == at(5)
    assert completed_cursor(NOW, at(-86400), at(3600), None) == NOW
    assert completed_cursor(NOW, None, at(3600), None) == NOW
    assert completed_cursor(None, None, at(3600), None) is None  # nothing read: still no cursor
    assert completed_cursor(None, at(5), at(3600), None) == at(5)


def test_the_cursor_never_passes_the_start_of_the_pass():
    # something changed mid-pass may sit behind the read position: the next pass must look again
    assert completed_cursor(NOW, at(30), at(10), None) == at(10)


def test_the_cursor_stops_at_the_earliest_hold_and_a_hold_behind_it_keeps_it_where_it_is():
    state = ReadCursor(cursor=NOW).start_pass(at(3600))
    state = state.checkpoint("https://bc/2", at(4), at(2)).checkpoint(None, at(6), at(3))
    assert state.held == at(2) and state.complete().cursor == at(2)
    behind = ReadCursor(cursor=NOW).start_pass(at(3600)).checkpoint(None, at(5), at(-30))
    assert behind.complete().cursor == NOW


def test_a_new_phase_starts_at_its_first_page_and_keeps_the_pass():
    state = ReadCursor(cursor=NOW).start_pass(at(60), "items").checkpoint("https://bc/2", at(5))
    variants = state.next_phase(PHASE_VARIANTS)
    assert (variants.phase, variants.next_link, variants.pending, variants.run_started) == \
        (PHASE_VARIANTS, None, at(5), at(60))


def test_a_cursor_survives_its_row():
    state = ReadCursor(cursor=NOW, run_started=at(1), phase="items", next_link="https://bc/x?$skiptoken=2",
                       pending=at(0.5), held=at(0.25), state="baselining", started_at=at(-1),
                       updated_at=at(2), last_pass_started=at(-5))
    row = state.to_row()
    assert row["cursor"] == "2026-03-01T12:00:00.000000Z" and row["pending_cursor"] == \
        "2026-03-01T12:00:00.500000Z" and row["held_before"] == "2026-03-01T12:00:00.250000Z"
    assert ReadCursor.from_row(row) == state
    assert ReadCursor().to_row() == {}


def test_rows_written_before_the_cursor_type_read_back():
    item_row = {"PartitionKey": "default", "RowKey": "items:c1", "cursor": "2026-03-01T12:00:00.000Z",
                "phase": "variants", "next_link": "https://bc/v?$skiptoken=1",
                "pending_cursor": "2026-03-01T12:00:05.000Z", "run_started": "2026-03-01T12:01:00.000Z",
                "updated_at": "2026-03-01T12:01:02.000Z"}
    assert ReadCursor.from_row(item_row) == ReadCursor(
        cursor=NOW, phase="variants", next_link="https://bc/v?$skiptoken=1", pending=at(5),
        run_started=at(60), updated_at=at(62))
    sweep_row = {"cursor": "2026-03-01T12:00:00.000000Z", "started_at": "2026-03-01T11:00:00.000000Z",
                 "updated_at": "2026-03-01T12:00:01.000000Z", "next_link": "https://bc/i?$skiptoken=3",
                 "run_started": "2026-03-01T12:00:00.500000Z", "pending_cursor": "", "held_before": ""}
    resumed = ReadCursor.from_row(sweep_row)
    assert resumed.in_pass and resumed.pending is None and resumed.held is None
    assert resumed.started_at == at(-3600) and resumed.next_link == "https://bc/i?$skiptoken=3"


# ---- the row on Azurite ---------------------------------------------------------------------------------

@pytest.fixture
def storage(connector_env) -> Storage:
    from connector.runtime import get_runtime

    connector_env(BC_MAX_RETRIES="0", CURSOR_OVERLAP_SECONDS="0")
    return get_runtime().storage


def test_a_cursor_row_is_written_stamped_and_read_back(storage):
    row = CursorTable(storage, "default", "items:c1", now=lambda: at(7))
    assert row.load() is None
    written = row.save(ReadCursor().start_pass(NOW, "items").checkpoint("https://bc/2", at(1)))
    assert written.updated_at == at(7)
    assert CursorTable(storage, "default", "items:c1").load() == written


def test_a_runner_whose_cursor_row_was_written_underneath_is_interrupted(storage):
    first, second = (CursorTable(storage, "default", "items:c1") for _ in range(2))
    first.load(), second.load()
    first.save(ReadCursor(cursor=NOW))
    with pytest.raises(ReadInterrupted):
        second.save(ReadCursor(cursor=at(3600)))
    assert second.write(ReadCursor(cursor=at(3600))) is None
    assert CursorTable(storage, "default", "items:c1").load().cursor == NOW


def test_an_item_pull_row_written_before_the_cursor_type_resumes_where_it_stopped(storage, emulator):
    """A pass checkpointed by the old item pull (BC-form times, phase column) resumes at its link."""
    from connector.runtime import get_runtime
    from tests.queue_drain import drain_texts

    runtime = get_runtime()
    bc = runtime.bc("default")
    first = next(bc.pages(bc.company_path(CRONUS_UK_ID, "items"), {"$expand": "itemVariants"}, page_size=5))
    storage.table(TABLE_CURSORS).create_entity({
        "PartitionKey": "default", "RowKey": table_key(f"items:{CRONUS_UK_ID}"), "phase": "items",
        "next_link": first.next_link, "pending_cursor": "2024-05-01T10:00:00.000Z",
        "run_started": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"})

    result = runtime.item_pull.pull_company("default", max_seconds=60)

    assert result.finished and result.emitted == 15  # the 20 seed items less the first page
    emitted = {json.loads(t)["data"]["id"] for t in drain_texts(storage.queue("bc-items"))}
    assert emitted.isdisjoint(e["id"] for e in first.entities) and len(emitted) == 15
    done = CursorTable(storage, "default", cursor_name(CRONUS_UK_ID)).load()
    assert not done.in_pass and done.cursor is not None


def test_a_sweep_row_written_before_the_cursor_type_resumes_where_it_stopped(storage, emulator):
    from connector.runtime import get_runtime

    runtime = get_runtime()
    company_id = runtime.company_id()
    items = runtime.settings.connection("default").trigger("items")
    sweep.sweep(runtime, "default", (items,))  # the trigger starts
    table = storage.table(TABLE_CURSORS)
    key = f"sweep:items:{company_id.lower()}"
    started = dict(table.get_entity("default", key))
    bc = runtime.bc("default")
    everything = {"$filter": "lastModifiedDateTime gt 2000-01-01T00:00:00.000Z"}
    link = next(bc.pages(bc.company_path(company_id, "items"), everything, page_size=5)).next_link
    table.upsert_entity({**started, "next_link": link, "run_started": started["cursor"],
                         "pending_cursor": "", "held_before": ""})  # as the sweep wrote a checkpoint
    emulator.clear_requests()

    [result] = sweep.sweep(runtime, "default", (items,))

    assert result.finished and result.emitted == 0  # the seed was known when the trigger started
    reads = [r for r in emulator.requests if r.path.endswith("/items")]
    assert "skiptoken" in reads[0].query  # resumed at the saved link, not from the start
    after = dict(table.get_entity("default", key))
    assert "next_link" not in after and after["started_at"] == started["started_at"]
    assert after["cursor"] >= started["cursor"]


def test_a_completed_pass_covers_the_requests_made_before_it_began():
    done = ReadCursor().start_pass(at(10)).complete()
    assert done.last_pass_started == at(10)
    assert done.covers(at(9)) and done.covers(at(10)) and not done.covers(at(11))
    assert not done.start_pass(at(20)).covers(at(9))  # a pass under way covers nothing yet
    assert not ReadCursor().covers(at(0))


def test_pull_requests_made_before_a_completed_pass_began_pull_nothing_more(runtime):
    from connector.bc.timestamps import utc_now
    from tests.queue_drain import drain_texts

    requested = utc_now()
    runtime.item_pull.pull_company("default")  # a pass that began after the request, completed
    items = runtime.storage.queue(QUEUE_ITEMS)
    assert drain_texts(items)  # the pass emitted the catalogue
    earlier = ItemPullRequest(connection="default", requestedAt=requested)
    runtime.item_pull.handle_pull_request(request_message(runtime.settings, earlier), "m-1")
    assert drain_texts(items) == []  # covered: no second pass
    before = CursorTable(runtime.storage, "default", cursor_name(CRONUS_UK_ID)).load().last_pass_started
    later = ItemPullRequest(connection="default", requestedAt=utc_now())
    runtime.item_pull.handle_pull_request(request_message(runtime.settings, later), "m-2")
    after = CursorTable(runtime.storage, "default", cursor_name(CRONUS_UK_ID)).load().last_pass_started
    assert after > before  # a later request runs a pass of its own


def test_a_cursor_row_with_values_that_do_not_validate_loads_without_them(storage, caplog):
    storage.table(TABLE_CURSORS).create_entity({
        "PartitionKey": "default", "RowKey": "items:poisoned", "cursor": "9999-12-31T23:59:59.000000Z",
        "run_started": "not a time", "phase": 12, "next_link": "x" * 20000, "pending_cursor": True,
        "held_before": "2026-01-01T00:00:00.000Z", "unexpected": "column"})
    with caplog.at_level("WARNING"):
        state = CursorTable(storage, "default", "items:poisoned").load()  # today: ValueError
    assert state == ReadCursor(held=datetime(2026, 1, 1, tzinfo=UTC))
    assert caplog.text.count("ignored") == 5


def test_a_request_behind_a_run_that_died_waits_on_its_queue_and_runs_once_the_lease_runs_out(
        runtime, monkeypatch):
    import time

    from connector.bc.timestamps import utc_now
    from connector.items import pull as pull_module
    from connector.leases import Lease
    from connector.settings import QUEUE_ITEM_PULLS
    from tests.queue_drain import drain_texts

    monkeypatch.setattr(pull_module, "RECHECK_SECONDS", 0)
    dead = Lease(runtime.storage, f"items:default:{CRONUS_UK_ID}", ttl_seconds=1.0)
    assert dead.acquire()  # a run that was killed: no heartbeat, no release; its lease runs out
    items, pulls = runtime.storage.queue(QUEUE_ITEMS), runtime.storage.queue(QUEUE_ITEM_PULLS)
    request = ItemPullRequest(connection="default", requestedAt=utc_now())

    runtime.item_pull.handle_pull_request(request_message(runtime.settings, request), "m-1")

    assert drain_texts(items) == []
    [waiting] = drain_texts(pulls)  # today: none, the request was settled as "covered"
    time.sleep(1.5)  # the dead run's lease runs out
    runtime.item_pull.handle_pull_request(waiting, "m-2")
    assert drain_texts(items)  # the catalogue, pulled by the request itself
    assert drain_texts(pulls) == []
