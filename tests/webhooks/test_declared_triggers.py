"""Declared triggers end to end (issue 23): the real app in the local host with declarations added in
settings only (TRIGGERS), the emulator delivering webhooks when the test flushes them, Azurite."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_SALES_SHIPMENTS
from tests.queue_drain import drain_texts
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

CUSTOMERS, STOCK, WEB_ORDERS = "bc-customers", "bc-stock-movements", "contoso-web-orders"
DECLARED = json.dumps([
    {"entitySet": "customers", "queue": CUSTOMERS, "changeTypes": ["created", "updated"],
     "watch": ["displayName", "email"]},
    {"entitySet": "itemLedgerEntries", "queue": STOCK, "numberField": "entryNumber"},
    {"api": "contoso/shop/v1.0", "entitySet": "webOrders", "queue": WEB_ORDERS},
])


class Taken:
    """Events taken off declared queues (no published schema in the repository: a deployment's own)."""

    def __init__(self, connection_string: str):
        self.connection_string = connection_string
        self.events: dict[str, list[dict[str, Any]]] = {}

    def take(self, queue: str) -> list[dict[str, Any]]:
        client = QueueClient.from_connection_string(self.connection_string, queue)
        got = [json.loads(text) for text in drain_texts(client)]
        self.events.setdefault(queue, []).extend(got)
        return self.events[queue]

    def matching(self, queue: str, test: Callable[[dict[str, Any]], bool], count: int = 1,
                 ) -> list[dict[str, Any]]:
        """Wait for `count` events on `queue` that pass `test`; all of them."""
        def found() -> list[dict[str, Any]] | None:
            events = [e for e in self.take(queue) if test(e)]
            return events if len(events) >= count else None
        return wait_until(found, what=f"{count} event(s) on {queue}")

    def wait(self, queue: str, subject: str, count: int = 1) -> list[dict[str, Any]]:
        return self.matching(queue, lambda e: e["subject"] == subject, count)


@pytest.fixture
def declared(scenario, make_emulator, azurite):
    s = scenario(bc=make_emulator(webhook_debounce_seconds=3600.0), TRIGGERS=DECLARED)
    summary = s.subscribe()
    assert {"customers", "itemLedgerEntries", "contoso/shop/v1.0/webOrders", "items"} <= set(
        summary["created"])
    return s, Taken(azurite.connection_string)


def test_a_new_customer_and_a_change_of_a_watched_field_each_arrive_once_an_unwatched_edit_never(declared):
    s, taken = declared
    customer = s.bc._company("POST", "customers", {"displayName": f"Adatum {uuid.uuid4().hex[:6]}",
                                                   "email": "orders@adatum.example"})
    s.bc.flush()
    [created] = taken.wait(CUSTOMERS, customer["id"])
    assert created["type"] == "bc.customer.created" and created["data"]["email"] == "orders@adatum.example"
    s.bc.update("customers", customer["id"], {"phoneNumber": "+44 20 7946 0000"})  # not watched
    s.bc.flush()
    s.host.wait_idle(60)
    assert [e["type"] for e in taken.take(CUSTOMERS) if e["subject"] == customer["id"]] == [
        "bc.customer.created"]
    s.bc.update("customers", customer["id"], {"email": "sales@adatum.example"})  # watched
    s.bc.flush()
    created, updated = taken.wait(CUSTOMERS, customer["id"], 2)
    assert updated["type"] == "bc.customer.updated" and updated["data"]["email"] == "sales@adatum.example"
    assert updated["data"]["phoneNumber"] == "+44 20 7946 0000"  # the entity as BC has it now
    s.host.wait_idle(60)
    assert len([e for e in taken.take(CUSTOMERS) if e["subject"] == customer["id"]]) == 2


def test_a_posted_shipment_arrives_as_its_item_ledger_entries_and_the_seed_trigger_is_unchanged(declared):
    s, taken = declared
    shipment = s.bc.post_document("salesShipments", lines=2)
    s.bc.flush()
    entries = wait_until(lambda: [e for e in taken.take(STOCK)
                                  if e["data"]["documentNumber"] == shipment["number"]][:2] or None
                         if len([e for e in taken.take(STOCK)
                                 if e["data"]["documentNumber"] == shipment["number"]]) >= 2 else None,
                         what="the shipment's item ledger entries")
    assert {e["type"] for e in entries} == {"bc.itemLedgerEntry.created"}
    assert sorted(e["data"]["quantity"] for e in entries) == [-2, -1]
    assert {e["data"]["itemNumber"] for e in entries} == {"1896-S"}
    s.queues.wait_for(QUEUE_SALES_SHIPMENTS, lambda es: any(e["subject"] == shipment["id"] for e in es))
    [event] = s.queues.about(QUEUE_SALES_SHIPMENTS, shipment["id"])
    assert event["type"] == "bc.salesShipment.created" and len(event["data"]["salesShipmentLines"]) == 2


def test_a_record_of_the_partners_custom_api_arrives_once_on_its_queue(declared):
    s, taken = declared
    order = s.bc._company("POST", "webOrders", {"customerNumber": "GL00000008", "amount": 99.5})
    s.bc.flush()
    [event] = taken.wait(WEB_ORDERS, order["id"])
    assert event["type"] == "bc.webOrder.created" and event["data"]["number"] == order["number"]
    assert not any(k.startswith("@odata") for k in event["data"])
    s.bc.flush()
    s.host.wait_idle(60)
    assert len([e for e in taken.take(WEB_ORDERS) if e["subject"] == order["id"]]) == 1


def test_the_sweep_fills_a_missed_change_of_a_watched_field_and_skips_an_unwatched_one(declared):
    s, taken = declared
    customer = s.bc._company("POST", "customers", {"displayName": f"Fabrikam {uuid.uuid4().hex[:6]}",
                                                   "email": "buyer@fabrikam.example"})
    s.bc.flush()
    taken.wait(CUSTOMERS, customer["id"])
    [sub] = [x for x in s.bc.subscriptions(s.notification_url) if x["resource"].endswith("/customers")]
    s.bc.delete_subscription(sub["subscriptionId"])  # BC dropped it: nothing below is notified
    s.bc.update("customers", customer["id"], {"phoneNumber": "+44 113 496 0000"})
    s.host.fire_timer("sweep_created")
    s.host.wait_idle(60)
    assert [e["type"] for e in taken.take(CUSTOMERS) if e["subject"] == customer["id"]] == [
        "bc.customer.created"]
    s.bc.update("customers", customer["id"], {"email": "purchasing@fabrikam.example"})
    s.host.fire_timer("sweep_created")
    created, updated = taken.wait(CUSTOMERS, customer["id"], 2)
    assert updated["type"] == "bc.customer.updated"
    assert updated["data"]["email"] == "purchasing@fabrikam.example"
