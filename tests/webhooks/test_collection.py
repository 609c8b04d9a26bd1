"""Bulk changes: BC collapses more than `collection_threshold` changes into one `collection`
notification; every created entity still arrives, once."""
from __future__ import annotations

import pytest

from connector.settings import QUEUE_ITEMS
from tests.webhooks.test_sweep import items_cursor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def emulator(make_emulator):
    """A longer debounce, so that a delete lands in the same batch as a bulk insert."""
    return make_emulator(webhook_debounce_seconds=1.0)


def collections(s) -> list[str]:
    return [n["resource"] for d in s.bc.deliveries(s.notification_url) if d["kind"] == "notification"
            for n in d["body"]["value"] if n["changeType"] == "collection"]


def test_1500_items_created_at_once_arrive_as_1500_events_through_a_collection(scenario):
    s = scenario()
    s.subscribe()
    created = set(s.bc.bulk_items(1500))
    s.queues.wait_for(QUEUE_ITEMS, lambda es: created <= {e["subject"] for e in es}, timeout=120)
    [resource] = collections(s)
    assert "$filter=lastModifiedDateTime%20gt%20" in resource
    s.bc.flush()
    s.host.wait_idle(60)
    s.queues.take(QUEUE_ITEMS)
    subjects = [e["subject"] for e in s.queues.events[QUEUE_ITEMS]]
    assert len(subjects) == len(set(subjects)) and created <= set(subjects)


def test_a_collection_without_filter_runs_the_sweep_which_announces_only_new_entities(scenario):
    s = scenario(CURSOR_OVERLAP_SECONDS="0")
    existing = s.bc.create_item()
    s.subscribe()  # `existing` and the seed predate the trigger
    started = items_cursor(s.company_id)
    doomed = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == doomed["id"] for e in es))
    created = set(s.bc.bulk_items(1200))
    s.bc.update("items", existing["id"], {"displayName": "changed in the same batch"})
    s.bc.delete("items", doomed["id"])  # a delete in the batch: BC sends the bare collection URL
    s.queues.wait_for(QUEUE_ITEMS, lambda es: created <= {e["subject"] for e in es}, timeout=120)
    assert any("$filter" not in r for r in collections(s))
    s.host.wait_idle(60)
    s.queues.take(QUEUE_ITEMS)
    subjects = [e["subject"] for e in s.queues.events[QUEUE_ITEMS]]
    assert sorted(subjects) == sorted(created | {doomed["id"]})
    assert existing["id"] not in subjects
    assert items_cursor(s.company_id)["cursor"] > started["cursor"]  # the sweep read past the batch
