"""The environment changing under the connection (BC's Admin Center operations log), through the
local host: a point-in-time restore gives one health event, a re-sweep and one event per order key BC
lost; a copy into the environment stops the connection until a person confirms; rename and update are
reported."""
from __future__ import annotations

import json
import time
from typing import Any

import requests
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_HEALTH, QUEUE_ITEMS
from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key
from tests.webhooks.scenario import EmulatedBC

ADMIN = "/_emulator/admin-center/lmints.io/production"


def admin(emulator: Any, action: str, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{emulator.url}{ADMIN}/{action}", json=body, verify=emulator.ca_bundle, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def health_events(azurite: Any) -> list[dict[str, Any]]:
    client = QueueClient.from_connection_string(azurite.connection_string, QUEUE_HEALTH)
    try:
        return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    except Exception:  # noqa: BLE001 - no queue yet: no event
        return []


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == f"bc.connector.{kind}"]


def send_order(host: Any, queues: OrderQueues) -> dict[str, Any]:
    key = new_key("R")
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    host.wait_idle(30)
    [result] = queues.results()
    assert result["status"] == "created", result
    return result


def test_a_point_in_time_restore_is_one_event_a_resweep_and_one_event_per_vanished_order(
        local_host: Any, emulator: Any, azurite: Any) -> None:
    host = local_host(BC_ADMIN_CENTER="true", CURSOR_OVERLAP_SECONDS="0")
    queues = OrderQueues(azurite.connection_string)
    host.fire_timer("renew_subscriptions")  # subscribes; the first environment check records history
    kept = send_order(host, queues)
    time.sleep(0.05)
    restore_point = emulator.clock.now()
    time.sleep(0.05)
    lost = send_order(host, queues)
    assert EmulatorBC(emulator).order(lost["salesOrderId"])

    admin(emulator, "restore", {"pointInTime": restore_point.isoformat()})
    assert EmulatorBC(emulator).orders(lost["externalDocumentNumber"]) == []  # really rolled back
    company_id = requests.get(f"{host.url}/api/status", timeout=30).json()["connections"][0]["company_id"]
    bc = EmulatedBC(emulator, company_id)
    assert bc.subscriptions() == []  # a restored environment has no subscription of ours
    created_after = bc.create_item()  # no subscription: only the re-sweep can announce it

    host.fire_timer("renew_subscriptions")
    host.fire_timer("renew_subscriptions")  # nothing new: no second round of events
    events = health_events(azurite)
    [restored] = of_type(events, "environment.restored")
    assert restored["data"]["pointInTime"].startswith(restore_point.isoformat()[:19])
    vanished = of_type(events, "order.vanished")
    assert [e["data"]["externalDocumentNumber"] for e in vanished] == [lost["externalDocumentNumber"]]
    assert vanished[0]["data"]["salesOrderId"] == lost["salesOrderId"]
    assert kept["externalDocumentNumber"] not in json.dumps(vanished)
    announced = QueueClient.from_connection_string(azurite.connection_string, QUEUE_ITEMS)
    subjects = [json.loads(m.content)["subject"] for m in announced.peek_messages(max_messages=32)]
    assert created_after["id"] in subjects  # the re-sweep from the restore point
    assert bc.subscriptions(), "the subscriptions were re-created"
    status = requests.get(f"{host.url}/api/status", timeout=30).json()
    assert status["connections"][0]["token"]["state"] == "ok"  # the pause was lifted


def test_a_copy_into_the_environment_stops_the_connection_until_a_person_confirms(
        local_host: Any, emulator: Any, azurite: Any) -> None:
    host = local_host(BC_ADMIN_CENTER="true")
    check = requests.post(f"{host.url}/api/connections/default/environment/check", timeout=60)
    assert check.status_code == 200  # first check: history only
    admin(emulator, "copy", {"source": "sandbox"})
    admin(emulator, "update", {"version": "28.0.1.0"})
    handled = requests.post(f"{host.url}/api/connections/default/environment/check", timeout=60).json()
    assert [o["type"] for o in handled["handled"]] == ["copy", "update"]
    refused = requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["state"] == "paused" and "environment/confirm" in error["fix"]
    events = health_events(azurite)
    assert len(of_type(events, "environment.copied")) == 1
    assert len(of_type(events, "environment.changed")) == 1
    confirmed = requests.post(f"{host.url}/api/connections/default/environment/confirm", timeout=30)
    assert confirmed.json()["resumed"] is True
    time.sleep(0.1)
    assert requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60).status_code in (
        200, 409)  # 409 only while an instance still has the pause cached (15 s at most)
