"""BC's 200 subscriptions per environment, counted by the renewal run: a warning from 80 %, and at
the cap the run refuses the rest (nothing sent to BC) with the triggers to drop. Other apps'
subscriptions fill the environment first (written into the emulator, as BC lists every
subscription of the environment)."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from connector.runtime import get_runtime
from connector.webhooks.capacity import SubscriptionCapacity
from devtools.emulator.seed import CRONUS_UK_ID
from devtools.emulator.webhooks import Subscription


def fill(emulator: Any, count: int) -> None:
    """`count` subscriptions of another app in the demo tenant's production environment."""
    engine = emulator.bc.webhooks
    tenant = next(iter(emulator.config.tenants.values()))
    now = emulator.clock.now()
    for _ in range(count):
        sub_id = uuid.uuid4().hex
        engine.subscriptions[sub_id] = Subscription(
            sub_id, tenant, "production", "https://other.example/hook",
            f"/api/v2.0/companies({CRONUS_UK_ID})/items", CRONUS_UK_ID, "items", "other",
            now + timedelta(days=3), now.isoformat(), now.isoformat(), "other-app")


def test_the_run_refuses_past_the_cap_and_says_which_triggers_to_drop(local_host: Callable[..., Any],
                                                                      emulator: Any):
    local_host()
    fill(emulator, 198)
    before = len(emulator.bc.webhooks.subscriptions)
    summary = get_runtime().webhooks.reconcile("default").as_dict()
    assert sorted(summary["created"]) == ["items", "salesShipments"]
    [refused] = summary["failed"]
    assert refused["entitySet"] == "salesInvoices"
    assert "200 of its 200" in refused["error"] and "TRIGGERS" in refused["error"]
    assert summary["subscriptionsInEnvironment"] == {"inUse": 200, "cap": 200}
    assert len(emulator.bc.webhooks.subscriptions) == before + 2  # nothing asked of BC past its cap
    health = get_runtime().storage.queue("bc-connector-health")
    texts = [m.content for m in health.receive_messages(messages_per_page=32, max_messages=32)]
    assert any("200 of its 200 webhook subscriptions" in t and "inUse" in t for t in texts)


def test_the_count_warns_from_80_percent_and_refuses_at_the_cap():
    assert not SubscriptionCapacity(159).warning and SubscriptionCapacity(160).warning
    assert SubscriptionCapacity(199).room == 1 and SubscriptionCapacity(200).room == 0
    advice = SubscriptionCapacity(200).advice("emea", ["items", "salesInvoices"])
    assert "200 of its 200" in advice and "connection 'emea'" in advice
    assert "items, salesInvoices" in advice


@pytest.fixture(autouse=True)
def _clean(emulator: Any) -> Any:
    yield
    emulator.bc.webhooks.subscriptions.clear()
