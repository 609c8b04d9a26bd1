"""BC's business events as a second channel (issue 22), end to end: the real app in the local host, the
emulator's webhooks held back (a long debounce) or delivered when the test says, its business events
sent after each posting commits, Azurite. Whichever channel sees a posting first, one event."""
from __future__ import annotations

import json

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from connector.settings import QUEUE_SALES_INVOICES, QUEUE_SALES_SHIPMENTS
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_bc(make_emulator):
    """Webhooks only when the test flushes; business events at once."""
    return make_emulator(webhook_debounce_seconds=3600.0)


def of_order(events: list[dict], key: str) -> list[dict]:
    return [e for e in events if e.get("bcexternaldocno") == key]


def test_subscribing_makes_one_business_event_subscription_per_posting_trigger(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    summary = s.subscribe()
    assert sorted(summary["businessEvents"]["created"]) == ["SalesInvoicePosted", "SalesShipmentPosted"]
    subs = s.bc.event_subscriptions()
    assert {x["eventName"] for x in subs} == {"SalesInvoicePosted", "SalesShipmentPosted"}
    assert all(x["subscriptionState"] == "Active" and x["companyId"] == s.company_id for x in subs)
    assert s.subscribe()["businessEvents"]["unchanged"]  # nothing to do the second time


def test_a_posted_shipment_and_invoice_give_one_event_each_though_both_channels_saw_them(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    s.subscribe()
    order = s.bc.create_order("WEB-BOTH-1")
    s.bc.ship_and_invoice(order["id"])
    # the business events come first (sent after commit); the webhooks wait for the flush
    shipments = s.queues.wait_for(QUEUE_SALES_SHIPMENTS,
                                  lambda es: any(e.get("bcexternaldocno") == "WEB-BOTH-1" for e in es))
    invoices = s.queues.wait_for(QUEUE_SALES_INVOICES,
                                 lambda es: any(e.get("bcexternaldocno") == "WEB-BOTH-1" for e in es))
    assert [d["status"] for d in s.bc.event_deliveries()] == [202, 202]
    s.bc.flush()  # now the table webhooks report the same documents as created
    s.host.wait_idle(60)
    s.queues.take(QUEUE_SALES_SHIPMENTS)
    s.queues.take(QUEUE_SALES_INVOICES)
    [shipment] = of_order(s.queues.events[QUEUE_SALES_SHIPMENTS], "WEB-BOTH-1")
    [invoice] = of_order(s.queues.events[QUEUE_SALES_INVOICES], "WEB-BOTH-1")
    assert shipment["type"] == "bc.salesShipment.created" and invoice["type"] == "bc.salesInvoice.created"
    assert shipment["data"]["salesShipmentLines"] and invoice["data"]["salesInvoiceLines"]
    assert shipments and invoices


def test_a_posted_draft_through_the_business_event_has_the_webhook_paths_event_id(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    s.subscribe()
    draft = s.bc.draft_invoice()
    s.bc.flush()  # the draft's `created` webhook: nothing announced
    s.host.wait_idle(60)
    s.bc.post_draft(draft["id"])
    [event] = s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: any(e["subject"] == draft["id"] for e in es))
    s.bc.flush()  # the posting's `updated` webhook: the same change, already announced
    s.host.wait_idle(60)
    assert s.queues.take(QUEUE_SALES_INVOICES) == []
    assert event["type"] == "bc.salesInvoice.created" and event["data"]["status"] == "Open"


def test_a_subscription_bc_switched_off_is_recreated_by_the_next_renewal_run(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    s.subscribe()
    [off] = [x for x in s.bc.event_subscriptions() if x["eventName"] == "SalesShipmentPosted"]
    s.bc.switch_off_event_subscription(off["id"])
    s.host.fire_timer("renew_subscriptions")
    s.host.wait_idle(60)
    [now] = [x for x in s.bc.event_subscriptions() if x["eventName"] == "SalesShipmentPosted"]
    assert now["subscriptionState"] == "Active" and now["id"] != off["id"]
    health = wait_until(lambda: [e for e in raw_events(s, "bc-connector-health")
                                 if e["type"] == "bc.connector.subscription.recreated"], 30, "a health event")
    assert "SalesShipmentPosted" in health[0]["data"]["summary"]


def test_a_forged_or_foreign_business_event_is_acknowledged_and_dropped(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    s.subscribe()
    url = f"{s.host.url}/api/webhooks/bc/events?connection=default"
    shipment = s.bc.post_document("salesShipments")
    s.queues.wait_for(QUEUE_SALES_SHIPMENTS, lambda es: any(e["subject"] == shipment["id"] for e in es))
    genuine = s.bc.event_deliveries()[-1]["body"]
    forged = genuine | {"clientState": "guessed"}
    elsewhere = genuine | {"payload": genuine["payload"] | {"Url": genuine["payload"]["Url"].replace(
        "127.0.0.1", "attacker.example")}}
    for body in (forged, elsewhere, {"not": "an event"}, [1, 2]):
        assert requests.post(url, json=body, timeout=30).status_code == 202
    assert requests.post(url, data=b"{garbled", timeout=30).status_code == 202
    s.host.wait_idle(60)
    assert s.queues.take(QUEUE_SALES_SHIPMENTS) == []


def test_a_missing_permission_set_is_a_clear_status_not_a_crash_loop(scenario, slow_bc):
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true")
    s.bc.grant_event_permission(False)
    try:
        summary = s.subscribe()  # the webhooks are made all the same
        assert summary["businessEvents"]["forbidden"] and len(summary["created"]) == 3
        status = requests.get(f"{s.host.url}/api/status", timeout=30).json()
        rows = [x for c in status["connections"] for x in c["subscriptions"]
                if str(x.get("entity_set", "")).startswith("event:")]
        assert rows and all(r["status"] == "forbidden" and "Ext. Events - Subscr" in r["last_error"]
                            for r in rows)
        page = requests.get(f"{s.host.url}/api/status", headers={"Accept": "text/html"}, timeout=30).text
        assert "businessEvent SalesInvoicePosted" in page and "Ext. Events - Subscr" in page
        assert s.subscribe()["businessEvents"]["forbidden"]  # the next run says the same, nothing breaks
    finally:
        s.bc.grant_event_permission(True)


def test_a_blocked_customer_is_announced_as_bc_customer_blocked_when_a_trigger_lists_it(scenario, slow_bc):
    declared = '[{"entitySet": "customers", "queue": "bc-customers", "changeTypes": ["blocked"]}]'
    s = scenario(bc=slow_bc, BUSINESS_EVENTS="true", TRIGGERS=declared)
    assert "CustomerBlocked" in s.subscribe()["businessEvents"]["created"]
    customer = next(c for c in s.bc.list("customers") if c["number"] == "GL00000003")
    s.bc.update("customers", customer["id"], {"blocked": "Ship"})
    events = wait_until(lambda: raw_events(s, "bc-customers"), 30, "a bc-customers event")
    [event] = events
    assert (event["type"], event["subject"], event["data"]["blocked"]) == (
        "bc.customer.blocked", customer["id"], "Ship")
    s.bc.update("customers", customer["id"], {"displayName": "no business event for this"})
    s.bc.flush()
    s.host.wait_idle(60)
    assert raw_events(s, "bc-customers") == []


def raw_events(s, queue: str) -> list[dict]:
    """Events of a declared trigger's queue (no published schema to check them against)."""
    from azure.storage.queue import QueueClient

    from tests.queue_drain import drain_texts

    client = QueueClient.from_connection_string(s.queues._connection_string, queue)
    try:
        return [json.loads(t) for t in drain_texts(client)]
    except ResourceNotFoundError:
        return []
