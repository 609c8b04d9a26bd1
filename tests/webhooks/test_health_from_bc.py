"""Health events from the webhook path, through the local host: a gap the sweep fills is reported with
how many changes the webhooks missed; a subscription BC deletes is reported with BC's reason."""
from __future__ import annotations

import json
from typing import Any

import pytest
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
