"""Receive Created Item / Sales Shipment / Sales Invoice end to end: the real app in the local host,
the BC emulator delivering webhooks (0.2 s debounce), Azurite."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES, QUEUE_SALES_SHIPMENTS
from tests.webhooks.scenario import QUIET_TIMERS

pytestmark = pytest.mark.e2e

SETS = ["items", "salesShipments", "salesInvoices"]


def test_subscribing_creates_one_subscription_per_trigger_pointing_at_the_receiver(scenario):
    s = scenario()
    summary = s.subscribe()
    assert sorted(summary["created"]) == sorted(SETS) and not summary["failed"]
    subs = s.bc.subscriptions(s.notification_url)
    assert sorted(sub["resource"].rsplit("/", 1)[-1] for sub in subs) == sorted(SETS)
    assert all(sub["resource"].startswith(f"/api/v2.0/companies({s.company_id})/") for sub in subs)
    handshakes = [d for d in s.bc.deliveries(s.notification_url) if d["kind"] == "handshake"]
    assert len(handshakes) == 3 and all(d["status"] == 200 for d in handshakes)
    again = s.subscribe()
    assert sorted(again["unchanged"]) == sorted(SETS) and not again["created"]


def test_a_created_item_arrives_once_with_its_variants(scenario):
    s = scenario()
    s.subscribe()
    item = s.bc.create_item(variants=("RED", "BLUE"))
    [event] = s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))
    assert event["type"] == "bc.item.created" and event["source"] == f"bc-connector/default/{s.company_id}"
    assert event["data"]["number"] == item["number"]
    assert event["time"] == event["data"]["lastModifiedDateTime"]
    assert sorted(v["code"] for v in event["data"]["itemVariants"]) == ["BLUE", "RED"]
    s.bc.flush()
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert len(s.queues.about(QUEUE_ITEMS, item["id"])) == 1


def test_posted_shipments_and_invoices_arrive_with_their_lines(scenario):
    s = scenario()
    s.subscribe()
    shipment = s.bc.post_document("salesShipments", lines=3)
    invoice = s.bc.post_document("salesInvoices", lines=2)
    [shipped] = s.queues.wait_for(QUEUE_SALES_SHIPMENTS, lambda es: es)
    [invoiced] = s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: es)
    assert (shipped["type"], shipped["subject"]) == ("bc.salesShipment.created", shipment["id"])
    assert len(shipped["data"]["salesShipmentLines"]) == 3
    assert (invoiced["type"], invoiced["subject"]) == ("bc.salesInvoice.created", invoice["id"])
    assert [line["quantity"] for line in invoiced["data"]["salesInvoiceLines"]] == [1, 2]


def test_with_the_options_off_events_carry_no_children(scenario):
    s = scenario(PULL_ITEM_VARIANTS="false", PULL_SALES_SHIPMENT_LINES="false",
                 PULL_SALES_INVOICE_LINES="false")
    s.subscribe()
    item = s.bc.create_item()
    s.bc.post_document("salesShipments")
    s.bc.post_document("salesInvoices")
    [event] = s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    assert event["subject"] == item["id"] and "itemVariants" not in event["data"]
    [shipped] = s.queues.wait_for(QUEUE_SALES_SHIPMENTS, lambda es: es)
    [invoiced] = s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: es)
    assert "salesShipmentLines" not in shipped["data"] and "salesInvoiceLines" not in invoiced["data"]


def test_an_invoice_with_hundreds_of_lines_arrives_with_its_data_in_blob_storage(scenario, azurite):
    from azure.storage.blob import BlobClient

    s = scenario()
    s.subscribe()
    invoice = s.bc.post_document("salesInvoices", lines=400)
    [event] = s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: es)
    assert event["subject"] == invoice["id"] and "data" not in event
    blob = BlobClient.from_blob_url(event["dataref"], credential=_account_key(azurite.connection_string))
    data = json.loads(blob.download_blob().readall())
    assert len(data["salesInvoiceLines"]) == 400 and data["id"] == invoice["id"]


def _account_key(connection_string: str) -> dict[str, str]:
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return {"account_name": parts["AccountName"], "account_key": parts["AccountKey"]}


def test_the_same_notification_delivered_twice_gives_one_event(scenario):
    s = scenario()
    s.subscribe()
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    delivery = {"value": [s.bc.notification_about(s.notification_url, item["id"])]}
    assert s.post(delivery).status_code == 202
    assert s.post(delivery).status_code == 202
    s.bc.flush()
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert len(s.queues.about(QUEUE_ITEMS, item["id"])) == 1


def test_a_forged_client_state_is_acknowledged_but_not_processed(scenario):
    s = scenario()
    s.subscribe()
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    genuine = s.bc.notification_about(s.notification_url, item["id"])
    s.bc.delete_subscription(genuine["subscriptionId"])  # so only the forged notification could announce it
    other = s.bc.create_item()
    forged = dict(genuine, clientState="guessed",
                  resource=genuine["resource"].replace(item["id"], other["id"]))
    assert s.post({"value": [forged]}).status_code == 202
    assert s.post({"value": [dict(forged, subscriptionId="0" * 32)]}).status_code == 202
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert s.queues.about(QUEUE_ITEMS, other["id"]) == []


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"value": 3}', b"[]", b'{"value": ["x", 1, null]}'])
def test_garbled_bodies_are_acknowledged_with_202(scenario, raw):
    s = scenario()
    assert s.post(None, raw=raw).status_code == 202


def test_an_oversized_body_is_acknowledged_with_202_and_not_processed(scenario):
    s = scenario(WEBHOOK_MAX_BODY_BYTES="2048")
    s.subscribe()
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    genuine = s.bc.notification_about(s.notification_url, item["id"])
    s.bc.delete_subscription(genuine["subscriptionId"])  # BC stays silent about the next item
    fresh = s.bc.create_item()
    body = {"value": [dict(genuine, resource=genuine["resource"].replace(item["id"], fresh["id"]))]}
    assert s.post(dict(body, padding="x" * 4096)).status_code == 202
    s.host.wait_idle(30)
    assert s.queues.take(QUEUE_ITEMS) == []
    assert s.post(body).status_code == 202  # the same notification within the limit is processed
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == fresh["id"] for e in es))


def test_a_full_size_bundle_of_three_subscriptions_is_accepted_and_processed(scenario):
    s = scenario()
    s.subscribe()
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    genuine = s.bc.notification_about(s.notification_url, item["id"])
    s.bc.delete_subscription(genuine["subscriptionId"])  # BC stays silent about the next item
    fresh = s.bc.create_item()
    # BC bundles every subscription of a URL, up to 999 notifications each
    updates = [dict(genuine, changeType="updated", resource=genuine["resource"].replace(item["id"], str(
        uuid.UUID(int=n)))) for n in range(3 * 999 - 1)]
    created = dict(genuine, resource=genuine["resource"].replace(item["id"], fresh["id"]))
    raw = json.dumps({"value": [*updates, created]}).encode()
    assert len(raw) > 1024 * 1024  # over 1 MiB, the old default limit
    assert s.post(None, raw=raw).status_code == 202
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == fresh["id"] for e in es))


def _with_tables_down(connection_string: str) -> str:
    """Azurite for queues and blobs, nothing listening for tables."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    parts["TableEndpoint"] = "http://127.0.0.1:9/devstoreaccount1"
    return ";".join(f"{k}={v}" for k, v in parts.items())


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_handshake_echoes_the_token_without_touching_storage(local_host, azurite, method):
    host = local_host(AzureWebJobsStorage=_with_tables_down(azurite.connection_string), **QUIET_TIMERS)
    r = requests.request(method, f"{host.url}/api/webhooks/bc", params={"validationToken": "tok-1 2+3"},
                         timeout=10)
    assert r.status_code == 200 and r.text == "tok-1 2+3"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_notifications_get_503_when_storage_is_down_so_bc_retries(local_host, azurite):
    host = local_host(AzureWebJobsStorage=_with_tables_down(azurite.connection_string), **QUIET_TIMERS)
    note = {"subscriptionId": "a" * 32, "clientState": "x", "changeType": "created",
            "lastModifiedDateTime": "2026-01-01T00:00:00Z",
            "resource": "api/v2.0/companies(8a6b2c1d-3e4f-4a5b-9c6d-7e8f9a0b1c2d)/items"
                        "(26814998-936a-401c-81c1-0e848a64971d)"}
    # BC gives up after 30 s; storage retries (backoff from 15 s) would not answer within 25 s
    r = requests.post(f"{host.url}/api/webhooks/bc", json={"value": [note]}, timeout=25)
    assert r.status_code == 503


def test_the_receiver_never_answers_bc_with_a_4xx(scenario):
    s = scenario()
    s.subscribe()
    s.bc.create_item()
    s.bc.post_document("salesInvoices")
    s.queues.wait_for(QUEUE_ITEMS, lambda es: es)
    s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: es)
    deliveries = s.bc.deliveries(s.notification_url)
    assert {d["kind"] for d in deliveries} == {"handshake", "notification"}
    assert all(200 <= (d["status"] or 0) < 300 for d in deliveries), deliveries
    assert len(s.bc.subscriptions(s.notification_url)) == 3


def test_an_entity_deleted_before_it_is_read_gives_no_event_and_no_retries(scenario):
    s = scenario()
    s.subscribe()
    doomed = s.bc.create_item()
    s.bc.delete("items", doomed["id"])
    kept = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == kept["id"] for e in es))
    s.host.wait_idle(30)
    assert s.queues.about(QUEUE_ITEMS, doomed["id"]) == []
    processed = [i for i in s.host.invocations if i.function == "process_bc_notifications"]
    assert processed and all(i.outcome == "succeeded" for i in processed)
