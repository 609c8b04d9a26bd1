"""Health events: one `bc.connector.*` CloudEvent per occurrence on `bc-connector-health`."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connector.health.events import GAP_FILLED, SUBSCRIPTION_RECREATED, health_event
from connector.settings import QUEUE_HEALTH
from tests.event_schemas import validator


def _queued(runtime: Any) -> list[dict[str, Any]]:
    queue = runtime.storage.queue(QUEUE_HEALTH)
    return [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]


def test_health_event_names_connection_company_and_fix() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = health_event(GAP_FILLED, connection="default", company_id="c1", occurrence="sweep:1",
                         summary="3 changes", now=now, details={"missed": 3})
    again = health_event(GAP_FILLED, connection="default", company_id="c1", occurrence="sweep:1",
                         summary="other words", now=now)
    assert event["type"] == "bc.connector.gap.filled"
    assert event["source"] == "bc-connector/default/c1"
    assert event["data"]["connection"] == "default" and event["data"]["companyId"] == "c1"
    assert event["data"]["missed"] == 3 and event["data"]["fix"]
    assert event["id"] == again["id"]


def test_same_occurrence_is_one_event_and_listed_as_recent(runtime: Any) -> None:
    for _ in range(3):
        runtime.health.emit(SUBSCRIPTION_RECREATED, connection="default", company_id="c1",
                            occurrence="sub-1", summary="BC deleted it: Delete expired subscription.")
    runtime.health.emit(SUBSCRIPTION_RECREATED, connection="default", company_id="c1",
                        occurrence="sub-2", summary="again")
    events = _queued(runtime)
    assert [e["subject"] for e in events] == ["sub-1", "sub-2"]
    assert all(validator(e["type"]).is_valid(e["data"]) for e in events)
    assert all(e["type"] == "bc.connector.subscription.recreated" for e in events)
    recent = runtime.health.recent("default")
    assert {r["occurrence"] for r in recent} == {"sub-1", "sub-2"}
