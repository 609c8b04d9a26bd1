"""Updated and deleted events end to end (issue 16): the real app in the local host, the emulator
delivering webhooks when the test flushes them (a long debounce, so two updates merge as in BC),
Azurite; and an order's life by the webshop's key."""
from __future__ import annotations

import uuid

import pytest

from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES, QUEUE_SALES_SHIPMENTS
from tests.orders.support import SEED_EXAMPLE, OrderQueues
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

ALL_CHANGES = "created,updated,deleted"


@pytest.fixture
def slow_bc(make_emulator):
    """An emulator that notifies only when the test flushes (BC's debounce, stretched)."""
    return make_emulator(webhook_debounce_seconds=3600.0)


def delivered(s, change: str, entity_id: str) -> list[dict]:
    """The notification elements BC delivered with `change` for `entity_id`."""
    return [n for d in s.bc.deliveries(s.notification_url) if d["kind"] == "notification"
            for n in d["body"]["value"] if n["changeType"] == change and entity_id in n["resource"]]


def live(s, queue: str, entity_set: str, entity: dict, *updates: dict) -> dict:
    """Announce the just created `entity`, apply `updates` within one debounce, delete it; each step
    delivered and processed."""
    s.bc.flush()
    s.queues.wait_for(queue, lambda es: any(e["subject"] == entity["id"] for e in es))
    for changes in updates:
        s.bc.update(entity_set, entity["id"], changes)
    s.bc.flush()
    s.host.wait_idle(60)
    s.bc.delete(entity_set, entity["id"])
    s.bc.flush()
    s.host.wait_idle(60)
    s.queues.take(queue)
    return entity


def live_an_item(s) -> dict:
    """Create an item, update it twice within one debounce, delete it."""
    return live(s, QUEUE_ITEMS, "items", s.bc.create_item(), {"displayName": "first change"},
                {"displayName": "second change"})


def test_created_updated_twice_and_deleted_gives_one_event_of_each_with_the_settings_on(scenario, slow_bc):
    s = scenario(bc=slow_bc, ITEM_CHANGE_TYPES=ALL_CHANGES)
    s.subscribe()
    item = live_an_item(s)
    [update] = delivered(s, "updated", item["id"])  # BC merged the two updates
    events = s.queues.about(QUEUE_ITEMS, item["id"])
    assert [e["type"] for e in events] == ["bc.item.created", "bc.item.updated", "bc.item.deleted"]
    created, updated, deleted = events
    assert updated["data"]["displayName"] == "second change" and "itemVariants" in updated["data"]
    assert updated["time"] == updated["data"]["lastModifiedDateTime"] > created["time"]
    assert deleted["data"] == {"id": item["id"], "number": item["number"]}
    assert len({e["id"] for e in events}) == 3
    # BC re-sends the update and the deletion (a retry): nothing is announced twice
    s.post({"value": [update, *delivered(s, "deleted", item["id"])]})
    s.host.wait_idle(60)
    assert s.queues.take(QUEUE_ITEMS) == []


def test_with_the_defaults_only_the_creation_is_announced(scenario, slow_bc):
    s = scenario(bc=slow_bc)
    s.subscribe()
    item = live_an_item(s)
    assert delivered(s, "updated", item["id"]) and delivered(s, "deleted", item["id"])
    assert [e["type"] for e in s.queues.about(QUEUE_ITEMS, item["id"])] == ["bc.item.created"]


def test_an_update_whose_webhook_was_lost_is_announced_once_by_the_sweep(scenario, slow_bc):
    s = scenario(bc=slow_bc, ITEM_CHANGE_TYPES="created,updated")
    s.subscribe()
    item = s.bc.create_item()
    s.bc.flush()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))
    subs = s.bc.subscriptions(s.notification_url)
    [items_sub] = [sub for sub in subs if sub["resource"].endswith("/items")]
    s.bc.delete_subscription(items_sub["subscriptionId"])  # BC dropped it: the update is never notified
    s.bc.update("items", item["id"], {"displayName": "changed while nobody listened"})
    s.bc.flush()
    s.host.wait_idle(30)
    assert s.queues.take(QUEUE_ITEMS) == []
    s.host.fire_timer("sweep_created")
    s.host.fire_timer("sweep_created")  # the overlap reads the same change again
    s.queues.take(QUEUE_ITEMS)
    events = s.queues.about(QUEUE_ITEMS, item["id"])
    assert [e["type"] for e in events] == ["bc.item.created", "bc.item.updated"]
    assert events[1]["data"]["displayName"] == "changed while nobody listened"


def test_an_orders_shipment_and_invoice_carry_the_webshops_key(scenario, azurite):
    s = scenario()
    s.subscribe()
    key = f"WEB-{uuid.uuid4().hex[:12]}"
    queues = OrderQueues(azurite.connection_string)
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key,
                                 "salesOrderLines": [{"itemNumber": "1896-S", "quantity": 2}]}])
    [result] = wait_until(lambda: [r for r in queues.results() if r["externalDocumentNumber"] == key],
                          what="the order's result")
    assert result["status"] == "created"
    s.bc._company("POST", "salesShipments", {"orderNumber": result["number"]})
    s.bc._company("POST", "salesInvoices", {"orderNumber": result["number"]})
    for queue, kind in ((QUEUE_SALES_SHIPMENTS, "bc.salesShipment.created"),
                        (QUEUE_SALES_INVOICES, "bc.salesInvoice.created")):
        def keyed(events: list[dict]) -> list[dict]:
            return [e for e in events if e.get("bcexternaldocno") == key]

        [event] = keyed(s.queues.wait_for(queue, keyed))
        assert event["type"] == kind and event["bcordernumber"] == result["number"]
        assert event["data"]["externalDocumentNumber"] == key
        assert event["data"]["orderNumber"] == result["number"]


def test_a_collection_notification_yields_an_update_for_each_entity_that_changed(scenario, make_emulator):
    s = scenario(bc=make_emulator(collection_threshold=3, webhook_debounce_seconds=3600.0),
                 ITEM_CHANGE_TYPES="created,updated")
    s.subscribe()
    items = [s.bc.create_item() for _ in range(4)]
    s.bc.flush()
    s.host.wait_idle(60)
    for item in items[:3]:
        s.bc.update("items", item["id"], {"displayName": f"bulk change of {item['number']}"})
    s.bc.flush()
    s.host.wait_idle(60)
    s.queues.take(QUEUE_ITEMS)
    notes = [n for d in s.bc.deliveries(s.notification_url) if d["kind"] == "notification"
             for n in d["body"]["value"]]
    assert [n["changeType"] for n in notes] == ["collection", "collection"]  # BC collapsed both batches
    for n, item in enumerate(items):
        events = s.queues.about(QUEUE_ITEMS, item["id"])
        expected = ["bc.item.created", "bc.item.updated"] if n < 3 else ["bc.item.created"]
        assert [e["type"] for e in events] == expected
        assert events[-1]["data"]["displayName"] == (f"bulk change of {item['number']}" if n < 3
                                                     else item["displayName"])


def test_a_shipment_updated_then_deleted_gives_one_event_of_each_with_the_setting_on(scenario, slow_bc):
    s = scenario(bc=slow_bc, SALES_SHIPMENT_CHANGE_TYPES=ALL_CHANGES)
    s.subscribe()
    shipment = live(s, QUEUE_SALES_SHIPMENTS, "salesShipments", s.bc.post_document("salesShipments"),
                    {"shipToName": "Package tracking updated"})
    events = s.queues.about(QUEUE_SALES_SHIPMENTS, shipment["id"])
    assert [e["type"] for e in events] == ["bc.salesShipment.created", "bc.salesShipment.updated",
                                           "bc.salesShipment.deleted"]
    created, updated, deleted = events
    assert updated["data"]["shipToName"] == "Package tracking updated"
    assert len(updated["data"]["salesShipmentLines"]) == len(created["data"]["salesShipmentLines"]) == 2
    assert updated["time"] == updated["data"]["lastModifiedDateTime"] > created["time"]
    assert deleted["data"] == {"id": shipment["id"], "number": shipment["number"]}
    assert len({e["id"] for e in events}) == 3
