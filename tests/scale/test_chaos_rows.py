"""Chaos end to end (issue 20): coordination rows tampered with, and owners that die, do not stall the
fleet. Real host processes on one Azurite and the emulator; a host is SIGKILLed and restarted like a
lost instance or a deploy.

The waits are bounded, not timed: they allow for a loaded CI box and for the system's own lease
length (LEASE_SECONDS, 60 s), which a dead owner's lease needs to run out. Before the fix, poisoned
budget rows stopped every order and pull for good, and a dead pull's lease held for 12 minutes while
the request that met it was dropped as "covered".
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_ITEMS, TABLE_CURSORS, TABLE_LEASES
from connector.storage import table_key
from devtools.emulator.seed import CRONUS_UK_ID
from tests.orders.support import SEED_EXAMPLE, OrderQueues, new_key
from tests.queue_drain import drain_texts
from tests.waiting import wait_until
from tests.webhooks.scenario import EmulatedBC

pytestmark = pytest.mark.e2e

FAR_AHEAD = "9999-12-31T23:59:59.000000Z"
ITEM_LEASE = f"items:default:{CRONUS_UK_ID}"


def order(key: str) -> dict[str, Any]:
    return {**SEED_EXAMPLE, "externalDocumentNumber": key,
            "salesOrderLines": [{"itemNumber": "1896-S", "quantity": 1}]}


def request_pull(url: str) -> None:
    response = requests.post(f"{url}/api/connections/default/pulls/items", timeout=60)
    assert response.status_code == 202, response.text


class ItemEvents:
    """`bc.item.pulled` events taken off `bc-items`, remembered."""

    def __init__(self, connection_string: str):
        self._queue = QueueClient.from_connection_string(connection_string, QUEUE_ITEMS)
        self.ids: set[str] = set()

    def pulled(self) -> set[str]:
        self.ids |= {json.loads(t)["data"]["id"] for t in drain_texts(self._queue)}
        return self.ids


def poison_budget_and_leases(leases: TableClient) -> int:
    """Every budget slot row rewritten by hand (absurd expiries, text that is not JSON, unexpected
    columns and rows), and the pull, sweep and subscription leases held 'for ever'; how many budget
    partitions were poisoned."""
    partitions = {e["PartitionKey"] for e in leases.query_entities(
        "PartitionKey ge 'budget' and PartitionKey lt 'budgeu'", select=["PartitionKey"])}
    for pk in partitions:
        rows = [
            {"RowKey": "slot-0", "holder": "ghost", "expires": FAR_AHEAD, "ring": "{}"},
            {"RowKey": "slot-1", "holder": "ghost", "expires": 1e300, "ring": "not json at all"},
            {"RowKey": "slot-2", "holder": "ghost", "expires": "tomorrow", "ring": "<html>"},
            {"RowKey": "slot-3", "holder": 7, "expires": FAR_AHEAD, "ring": '{"x": "y"}', "extra": "col"},
            {"RowKey": "slot-4", "holder": "ghost", "expires": 99999999999.0, "ring": "[]"},
            {"RowKey": "slot-x", "holder": "ghost", "expires": FAR_AHEAD},
            {"RowKey": "want-ghost", "expires": FAR_AHEAD},
            {"RowKey": "surprise", "anything": "at all"},
        ]
        for row in rows:
            leases.upsert_entity({"PartitionKey": pk, **row}, mode=UpdateMode.REPLACE)
    for name in (ITEM_LEASE, "sweep:default", "subscriptions:default"):
        leases.upsert_entity({"PartitionKey": table_key(name), "RowKey": "lease", "holder": "ghost",
                              "expires": FAR_AHEAD}, mode=UpdateMode.REPLACE)
    return len(partitions)


def test_poisoned_budget_and_lease_rows_and_a_restart_do_not_stop_orders_or_pulls(
        host_cluster: Callable[..., Any], emulator: Any, azurite: Any) -> None:
    cluster = host_cluster(1)
    queues = OrderQueues(azurite.connection_string)
    results: list[dict[str, Any]] = []
    queues.send([order(new_key("W"))])  # a running deployment: the principal's slot rows exist
    wait_until(lambda: results.extend(queues.results()) or results, 120, "a first order", 0.5)

    leases = TableClient.from_connection_string(azurite.connection_string, TABLE_LEASES)
    cluster.hosts[0].kill()
    assert poison_budget_and_leases(leases) >= 1
    cluster.hosts[0].restart().wait_ready()

    keys = [new_key("P") for _ in range(20)]
    queues.send([order(k) for k in keys])
    request_pull(cluster.front.url)
    answered: list[dict[str, Any]] = []
    wait_until(lambda: answered.extend(queues.results())
               or {r["externalDocumentNumber"] for r in answered} >= set(keys),
               120, "a result for every order", 0.5)
    assert {r["status"] for r in answered} == {"created"}
    assert queues.poison() == []
    in_bc = {i["id"] for i in EmulatedBC(emulator, CRONUS_UK_ID)._company("GET", "items")["value"]}
    events = ItemEvents(azurite.connection_string)
    wait_until(lambda: events.pulled() >= in_bc, 120, "every item pulled", 0.5)
    assert "ignored" in cluster.hosts[0].log()  # the bad rows were logged


def test_a_host_killed_mid_pull_and_restarted_pulls_an_item_created_after_the_restart(
        host_cluster: Callable[..., Any], emulator: Any, azurite: Any) -> None:
    cursors = TableClient.from_connection_string(azurite.connection_string, TABLE_CURSORS)
    emulator.faults.configure({"latency_seconds": 0.5})  # a pull of several pages, slow enough to kill
    try:
        cluster = host_cluster(1, ITEM_PULL_PAGE_SIZE="2")
        request_pull(cluster.front.url)

        def checkpointed() -> bool:
            try:
                row = cursors.get_entity("default", table_key(f"items:{CRONUS_UK_ID}"))
            except ResourceNotFoundError:  # no table or row yet
                return False
            return bool(row.get("next_link"))

        wait_until(checkpointed, 120, "a pull under way, past its first page", 0.1)
        cluster.hosts[0].kill()  # mid-pull: its lease is left held, its request unfinished
    finally:
        emulator.faults.clear()
    cluster.hosts[0].restart().wait_ready()
    created = EmulatedBC(emulator, CRONUS_UK_ID).create_item()

    request_pull(cluster.front.url)

    # The dead run's lease runs out within LEASE_SECONDS (60 s); the request waits on its queue
    # meanwhile. Two minutes of the request, plus room for a loaded box.
    events = ItemEvents(azurite.connection_string)
    wait_until(lambda: created["id"] in events.pulled(), 180, "the item created after the restart pulled",
               0.5)
