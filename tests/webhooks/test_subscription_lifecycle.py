"""Subscriptions that never silently die: recreated when BC drops them, renewed before they expire,
`unsupported` resources covered by the sweep, deleted on request."""
from __future__ import annotations

import time

import pytest
import requests
from cryptography.fernet import Fernet

from connector.leases import Lease
from connector.runtime import get_runtime
from connector.settings import QUEUE_ITEMS, QUEUE_SALES_SHIPMENTS, TABLE_SUBSCRIPTIONS
from connector.webhooks import subscriptions
from connector.webhooks.client_state import client_state
from tests.conftest import TEST_ENCRYPTION_KEY
from tests.webhooks.scenario import QUIET_TIMERS

pytestmark = pytest.mark.e2e

SETS = ["items", "salesInvoices", "salesShipments"]


def by_set(subs: list[dict]) -> dict[str, dict]:
    return {s["resource"].rsplit("/", 1)[-1]: s for s in subs}


def rows() -> dict[str, dict]:
    table = get_runtime().storage.table(TABLE_SUBSCRIPTIONS)
    return {r["entity_set"]: dict(r) for r in table.list_entities()}


def test_the_subscription_rows_show_what_the_status_report_needs_and_no_client_state(scenario):
    s = scenario()
    s.subscribe()
    subs = by_set(s.bc.subscriptions(s.notification_url))
    stored = rows()
    assert sorted(stored) == SETS
    for name, row in stored.items():
        assert row["status"] == "active" and row["last_error"] == ""
        assert row["subscription_id"] == subs[name]["subscriptionId"]
        assert row["expires_at"] == subs[name]["expirationDateTime"]
        assert row["etag"] == subs[name]["@odata.etag"]
        assert row["resource"] == f"/api/v2.0/companies({s.company_id})/{name}"
        assert subs[name]["clientState"] not in str(row)


def test_a_subscription_deleted_behind_our_back_is_recreated_and_the_sweep_fills_the_gap(scenario):
    s = scenario()
    s.subscribe()
    lost = by_set(s.bc.subscriptions(s.notification_url))["items"]
    s.bc.delete_subscription(lost["subscriptionId"])
    missed = s.bc.create_item()  # no subscription: BC sends nothing
    s.host.fire_timer("renew_subscriptions")
    now = by_set(s.bc.subscriptions(s.notification_url))
    assert sorted(now) == SETS and now["items"]["subscriptionId"] != lost["subscriptionId"]
    assert rows()["items"]["subscription_id"] == now["items"]["subscriptionId"]
    s.host.fire_timer("sweep_created")
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == missed["id"] for e in es))
    after = s.bc.create_item()  # the new subscription delivers
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == after["id"] for e in es))
    s.host.fire_timer("sweep_created")  # sees both again: already announced
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert len(s.queues.about(QUEUE_ITEMS, missed["id"])) == 1
    assert len(s.queues.about(QUEUE_ITEMS, after["id"])) == 1


def test_an_expired_subscription_is_recreated(scenario, make_emulator):
    emu = make_emulator()
    s = scenario(bc=emu)
    s.subscribe()
    first = by_set(s.bc.subscriptions(s.notification_url))
    emu.clock.advance(3 * 24 * 3600 + 60)  # BC deletes expired subscriptions on its next pass
    s.bc.flush()
    assert s.bc.subscriptions(s.notification_url) == []
    s.host.fire_timer("renew_subscriptions")
    now = by_set(s.bc.subscriptions(s.notification_url))
    assert sorted(now) == SETS
    assert not {x["subscriptionId"] for x in now.values()} & {x["subscriptionId"] for x in first.values()}
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))


def test_a_subscription_close_to_expiry_is_renewed_with_a_fresh_handshake(scenario, make_emulator):
    emu = make_emulator(subscription_ttl_seconds=30 * 3600)  # less than SUBSCRIPTION_RENEW_BEFORE_HOURS
    s = scenario(bc=emu)
    s.subscribe()
    before = by_set(s.bc.subscriptions(s.notification_url))
    emu.clock.advance(3600)
    summary = s.subscribe()
    assert sorted(summary["renewed"]) == SETS and not summary["created"]
    after = by_set(s.bc.subscriptions(s.notification_url))
    for name in SETS:
        assert after[name]["subscriptionId"] == before[name]["subscriptionId"]
        assert after[name]["expirationDateTime"] > before[name]["expirationDateTime"]
        assert rows()[name]["expires_at"] == after[name]["expirationDateTime"]
    handshakes = [d for d in s.bc.deliveries(s.notification_url) if d["kind"] == "handshake"]
    assert len(handshakes) == 6 and all(d["status"] == 200 for d in handshakes)
    item = s.bc.create_item()  # the renewed subscription still passes the clientState check
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))


def test_an_unsupported_resource_is_marked_and_its_entities_arrive_through_the_sweep(scenario, make_emulator):
    emu = make_emulator(webhook_supported=("items", "salesInvoices"))
    s = scenario(bc=emu)
    summary = s.subscribe()
    assert summary["unsupported"] == ["salesShipments"]
    assert sorted(summary["created"]) == ["items", "salesInvoices"]
    shipments = rows()["salesShipments"]
    assert shipments["status"] == "unsupported" and shipments["subscription_id"] == ""
    shipment = s.bc.post_document("salesShipments", lines=2)
    s.host.fire_timer("sweep_created")
    s.queues.wait_for(QUEUE_SALES_SHIPMENTS, lambda es: any(e["subject"] == shipment["id"] for e in es))
    [event] = s.queues.about(QUEUE_SALES_SHIPMENTS, shipment["id"])
    assert len(event["data"]["salesShipmentLines"]) == 2


def test_the_sweep_does_not_announce_history_or_updates_of_older_entities(scenario):
    s = scenario(CURSOR_OVERLAP_SECONDS="0")
    older = s.bc.create_item()
    s.subscribe()  # the triggers start here
    s.bc._company("PATCH", f"items/{older['id']}", {"displayName": "changed after the start"})
    s.host.fire_timer("sweep_created")
    s.host.wait_idle(30)
    s.queues.take(QUEUE_ITEMS)
    assert s.queues.about(QUEUE_ITEMS, older["id"]) == []


def test_deleting_removes_our_subscriptions_from_bc(scenario):
    s = scenario()
    s.subscribe()
    r = requests.delete(f"{s.host.url}/api/connections/default/subscriptions", timeout=30)
    assert r.status_code == 200 and sorted(r.json()["deleted"]) == SETS
    assert s.bc.subscriptions(s.notification_url) == [] and rows() == {}


def test_an_unknown_connection_is_a_404(scenario):
    s = scenario()
    r = requests.post(f"{s.host.url}/api/connections/nope/subscriptions", timeout=30)
    assert r.status_code == 404


def test_without_a_token_encryption_key_the_route_names_the_missing_setting(scenario):
    s = scenario(TOKEN_ENCRYPTION_KEY="")
    r = requests.post(f"{s.host.url}/api/connections/default/subscriptions", timeout=30)
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "MissingClientStateKey" and "TOKEN_ENCRYPTION_KEY" in error["message"]
    assert s.bc.subscriptions(s.notification_url) == []


def test_two_connections_on_the_same_company_keep_each_others_subscriptions(scenario):
    s = scenario(BC_CONNECTIONS="default,emea")
    assert sorted(s.subscribe()["created"]) == SETS
    emea = requests.post(f"{s.host.url}/api/connections/emea/subscriptions", timeout=60).json()
    assert sorted(emea["created"]) == SETS and emea["straysDeleted"] == 0
    again = s.subscribe()
    assert sorted(again["unchanged"]) == SETS and again["straysDeleted"] == 0
    s.host.fire_timer("renew_subscriptions")
    for name in ("default", "emea"):
        assert sorted(by_set(s.bc.subscriptions(s.notification_url_of(name)))) == SETS
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: {e["source"] for e in es if e["subject"] == item["id"]} == {
        f"bc-connector/default/{s.company_id}", f"bc-connector/emea/{s.company_id}"})


def test_after_a_new_key_is_added_the_next_run_re_signs_every_subscription(scenario, connector_env):
    s = scenario()
    s.subscribe()
    new_key = Fernet.generate_key().decode()
    connector_env(**QUIET_TIMERS, PUBLIC_BASE_URL=s.host.url,
                  TOKEN_ENCRYPTION_KEY=f"{new_key},{TEST_ENCRYPTION_KEY}")  # added first, old one kept
    assert sorted(s.subscribe()["renewed"]) == SETS
    subs = by_set(s.bc.subscriptions(s.notification_url))
    for name, row in rows().items():  # the old key may go now: nothing BC holds was derived from it
        assert subs[name]["clientState"] == client_state(new_key, row["client_state_nonce"])
    assert sorted(s.subscribe()["unchanged"]) == SETS
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))


def test_a_run_whose_lease_is_taken_over_stops_before_touching_further_subscriptions(scenario, monkeypatch):
    s = scenario()
    real_start = subscriptions.start_trigger
    started: list[str] = []

    def start_then_lose_the_lease(runtime, connection, company_id, trigger, keep_alive):
        started.append(trigger.entity_set)
        if len(started) == 2:  # the run looked dead: its lease expired and another runner took it
            later = Lease(runtime.storage, f"subscriptions:{connection}", ttl_seconds=60,
                          clock=lambda: time.time() + subscriptions.LEASE_SECONDS + 1)
            assert later.acquire()
        return real_start(runtime, connection, company_id, trigger, keep_alive)

    monkeypatch.setattr(subscriptions, "start_trigger", start_then_lose_the_lease)
    with pytest.raises(subscriptions.SubscriptionRunBusy, match="lost its lease"):
        subscriptions.reconcile(get_runtime())
    assert len(started) == 2
    assert len(s.bc.subscriptions(s.notification_url)) == 1  # only the first trigger's
