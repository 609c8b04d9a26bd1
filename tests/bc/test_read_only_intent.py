"""Read-only intent (bc-api.md §12.3): item pulls and sweeps read BC's read-only replica
(`Data-Access-Intent: ReadOnly`, BC_READ_ONLY_INTENT), which lags; the read after a notification and
the key check before an order never do. The emulator's replica lags REPLICA_LAG seconds: what was
written within that time is not in it yet."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from connector.orders.send import OrderDelivery
from connector.runtime import get_runtime
from connector.settings import QUEUE_NOTIFICATIONS
from connector.signing import queue_signer, seal_json
from connector.webhooks.notifications import pack_messages
from connector.webhooks.processor import process_message
from devtools.emulator.seed import CRONUS_UK_ID
from tests.queue_drain import drain_texts

REPLICA_LAG = 30.0


@pytest.fixture(scope="module")
def emulator(make_emulator: Callable[..., Any]) -> Any:
    emu = make_emulator(replica_lag_seconds=REPLICA_LAG, webhook_debounce_seconds=0.2)
    emu.clock.advance(2 * REPLICA_LAG)  # the seed is old enough to be in the replica
    return emu


def company(emulator: Any) -> Any:
    return emulator.bc.store.company(emulator.config.tenants["lmints.io"], "production", CRONUS_UK_ID)


def new_item(emulator: Any) -> Any:
    """An item created in BC just now: in the primary, not yet in the replica."""
    number = f"RO-{uuid.uuid4().hex[:8].upper()}"
    return emulator.bc.create(company(emulator), "items", {"number": number, "displayName": number})


def pulled_ids(connector_env: Callable[..., Any], **overrides: str) -> set[str]:
    connector_env(CURSOR_OVERLAP_SECONDS="0", **overrides)
    runtime = get_runtime()
    runtime.item_pull.pull_company("default")
    return {json.loads(t)["data"]["id"] for t in drain_texts(runtime.storage.queue("bc-items"))}


def test_the_item_pull_reads_the_replica_unless_turned_off(connector_env, emulator):
    row = new_item(emulator)
    replica = pulled_ids(connector_env)
    assert replica and row.id not in replica  # the seed came from the replica, the new item not yet
    assert row.id in pulled_ids(connector_env, BC_READ_ONLY_INTENT="false")


def test_the_read_after_a_notification_never_uses_the_replica(connector_env, emulator):
    connector_env()
    runtime = get_runtime()
    row = new_item(emulator)
    note = {"connection": "default", "companyId": CRONUS_UK_ID, "entitySet": "items",
            "subscriptionId": uuid.uuid4().hex, "changeType": "created",
            "resource": f"api/v2.0/companies({CRONUS_UK_ID})/items({row.id})",
            "lastModifiedDateTime": row.data["lastModifiedDateTime"]}
    [text] = pack_messages([note])
    text = seal_json(queue_signer(runtime.settings.token_encryption_keys, QUEUE_NOTIFICATIONS), text)
    assert process_message(runtime, text, "message-1").emitted == 1
    [event] = [json.loads(t) for t in drain_texts(runtime.storage.queue("bc-items"))]
    assert event["data"]["id"] == row.id and event["data"]["number"] == row.data["number"]


def test_the_key_check_never_uses_the_replica(connector_env, emulator):
    connector_env()
    runtime = get_runtime()
    key = f"RO-{uuid.uuid4().hex[:10]}".upper()
    existing = emulator.bc.create(company(emulator), "salesOrders",
                                  {"customerNumber": "GL00000008", "externalDocumentNumber": key})
    text = json.dumps({"customerNumber": "GL00000008", "externalDocumentNumber": key})
    result = runtime.orders.send_sales_order(OrderDelivery(text, "message-1", 1, 5))
    assert (result.status, result.salesOrderId) == ("duplicate", existing.id)
