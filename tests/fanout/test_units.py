"""Timers fan out through `bc-connection-work`: one unit per connection, run by the real app on the
local host (Azurite + emulator); units that can never run are kept on the poison queue with the reason."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from connector.fanout.units import BadWorkUnit, WorkUnit, kept_unit, parse_unit
from connector.runtime import get_runtime
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID
from tests.queue_drain import drain_texts

IDLE_SECONDS = 90.0
TWO = {"BC_CONNECTIONS": "default,usa", "USA__BC_COMPANY": CRONUS_USA_ID}


@pytest.fixture
def host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    def start(**overrides: str) -> Any:
        return local_host(**(TWO | {"TIMER_FAN_OUT_MIN_CONNECTIONS": "1"} | overrides))

    return start


def events(queue: str) -> list[dict[str, Any]]:
    return [json.loads(t) for t in drain_texts(get_runtime().storage.queue(queue))]


def test_the_item_pull_timer_queues_one_unit_per_connection_and_each_runs(host, emulator):
    h = host()
    h.fire_timer("scheduled_item_pull")  # only queues
    h.wait_idle(IDLE_SECONDS)
    sources = {e["source"] for e in events("bc-items")}
    assert sources == {f"bc-connector/default/{CRONUS_UK_ID}", f"bc-connector/usa/{CRONUS_USA_ID}"}


def test_sweep_and_renewal_units_run_per_connection(host, emulator):
    h = host()
    h.fire_timer("renew_subscriptions")
    h.wait_idle(IDLE_SECONDS)
    rows = list(get_runtime().storage.table("bcsubscriptions").list_entities())
    assert {r["PartitionKey"] for r in rows} == {"default", "usa"}
    h.fire_timer("sweep_created")
    h.wait_idle(IDLE_SECONDS)
    cursors = {r["RowKey"] for r in get_runtime().storage.table("bccursors").list_entities()}
    assert any(CRONUS_USA_ID in key for key in cursors) and any(CRONUS_UK_ID in key for key in cursors)


def test_below_the_threshold_the_timer_runs_in_its_invocation(host, emulator):
    h = host(TIMER_FAN_OUT_MIN_CONNECTIONS="3")
    h.fire_timer("scheduled_item_pull")
    assert drain_texts(get_runtime().storage.queue("bc-connection-work")) == []
    assert {e["source"] for e in events("bc-items")} == {
        f"bc-connector/default/{CRONUS_UK_ID}", f"bc-connector/usa/{CRONUS_USA_ID}"}


def test_units_that_can_never_run_go_to_poison_with_the_reason(host):
    h = host()
    work = get_runtime().storage.queue("bc-connection-work")
    forged = WorkUnit("pull", "default", 0).text()  # unsigned: anyone with queue write could send it
    work.send_message(forged)
    work.send_message("not json")
    h.wait_idle(IDLE_SECONDS)
    poisoned = [json.loads(t) for t in drain_texts(get_runtime().storage.queue("bc-connection-work-poison"))]
    assert sorted(p["message"] for p in poisoned) == sorted([forged, "not json"])
    assert all("not a unit the connector queued" in p["reason"] for p in poisoned)
    assert events("bc-items") == []


def test_a_unit_of_a_connection_removed_since_it_was_queued_is_kept_and_replayable(runtime):
    queue = runtime.fanout
    signed = queue._signer  # the message a timer of the earlier configuration queued
    from connector.signing import seal_json

    text = seal_json(signed, WorkUnit("sweep", "gone", 1.0).text())
    assert queue.run(text, "m1", {}) is None
    [kept] = drain_texts(runtime.storage.queue("bc-connection-work-poison"))
    body = json.loads(kept)
    assert "unknown connection 'gone'" in body["reason"]
    assert kept_unit(kept) == text  # a replay is read as the unit it keeps


def test_parse_unit_names_the_problem():
    assert parse_unit('{"task":"pull","connection":"a","queuedAt":1}') == WorkUnit("pull", "a", 1.0)
    for text, problem in (('{"task":"x","connection":"a","queuedAt":1}', "task 'x'"),
                          ('{"task":"pull","queuedAt":1}', "connection missing"),
                          ('{"task":"pull","connection":"a"}', "queuedAt missing"), ("[]", "JSON object")):
        with pytest.raises(BadWorkUnit, match=problem):
            parse_unit(text)
