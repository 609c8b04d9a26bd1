"""Health events from the webhook path, through the local host: a gap the sweep fills is reported with
how many changes the webhooks missed; a subscription BC deletes is reported with BC's reason."""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_HEALTH, QUEUE_ITEMS


def health_events(s: Any) -> list[dict[str, Any]]:
    client = QueueClient.from_connection_string(s.queues._connection_string, QUEUE_HEALTH)
    try:
        return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    except Exception:  # noqa: BLE001 - the queue does not exist yet: no event
        return []


@pytest.mark.e2e
def test_a_gap_the_sweep_fills_is_one_health_event_with_the_count(scenario):
    s = scenario(CURSOR_OVERLAP_SECONDS="0")
    s.host.fire_timer("sweep_created")  # the triggers start; no subscriptions: only the sweep announces
    created = [s.bc.create_item(), s.bc.create_item()]
    s.host.fire_timer("sweep_created")
    assert {e["subject"] for e in s.queues.take(QUEUE_ITEMS)} == {c["id"] for c in created}
    s.host.fire_timer("sweep_created")  # nothing new: no second event
    gaps = [e for e in health_events(s) if e["type"] == "bc.connector.gap.filled"]
    assert len(gaps) == 1, gaps
    assert gaps[0]["data"]["missed"] == 2 and gaps[0]["data"]["entitySet"] == "items"
    assert gaps[0]["data"]["connection"] == "default" and gaps[0]["data"]["companyId"] == s.company_id


@pytest.mark.e2e
def test_a_subscription_bc_deletes_shows_bcs_reason_on_the_status_page_and_as_one_health_event(
        scenario, make_emulator):
    emu = make_emulator()
    s = scenario(bc=emu)
    s.subscribe()
    emu.clock.advance(3 * 24 * 3600 + 60)  # BC deletes expired subscriptions on its next pass, logged
    s.bc.flush()
    assert s.bc.subscriptions(s.notification_url) == []
    s.host.fire_timer("renew_subscriptions")
    s.host.fire_timer("renew_subscriptions")  # found again, nothing new: no second event
    recreated = [e for e in health_events(s) if e["type"] == "bc.connector.subscription.recreated"]
    assert sorted(e["data"]["entitySet"] for e in recreated) == sorted(
        {e["data"]["entitySet"] for e in recreated})
    assert recreated and all("Delete expired subscription." in e["data"]["bcReason"] for e in recreated)
    assert all(e["data"]["removedSubscriptionId"] in e["data"]["bcLog"]["details"] for e in recreated)
    page = requests.get(f"{s.host.url}/api/status", headers={"Accept": "text/html"}, timeout=30).text
    assert "Delete expired subscription." in page
    status = requests.get(f"{s.host.url}/api/status", timeout=30).json()
    subs = status["connections"][0]["subscriptions"]
    assert all("Delete expired subscription." in x["removed_reason"] for x in subs if x["status"] == "active")
