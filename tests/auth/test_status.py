"""`GET /api/status` through the local host: every connection, from storage only, never a BC call."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from connector.settings import (
    QUEUE_COMMANDS_POISON,
    QUEUE_CONNECTION_WORK_POISON,
    QUEUE_ITEM_PULLS_POISON,
    QUEUE_NOTIFICATIONS_POISON,
    QUEUE_SALES_ORDERS_POISON,
    TABLE_CURSORS,
    TABLE_SUBSCRIPTIONS,
)
from tests.auth.browser import QUIET_TIMERS

TWO_CONNECTIONS = {"BC_CONNECTIONS": "default,emea", "EMEA__BC_GRANT_TYPE": "authorization_code",
                   "EMEA__BC_ENVIRONMENT": "sandbox", **QUIET_TIMERS}


def test_status_on_empty_storage_reports_every_connection_without_calling_bc(
        local_host: Callable[..., Any], emulator: Any) -> None:
    host = local_host(**TWO_CONNECTIONS)
    emulator.clear_requests()
    resp = requests.get(f"{host.url}/api/status", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    report = resp.json()
    default, emea = report["connections"]
    assert (default["name"], default["grant_type"], default["token"]) == (
        "default", "client_credentials", {"state": "ok"})
    assert (emea["name"], emea["grant_type"], emea["environment"]) == (
        "emea", "authorization_code", "sandbox")
    assert emea["token"]["state"] == "not-signed-in"
    assert emea["token"]["login_url"].startswith(f"{host.url}/api/auth/login?ticket=")  # one-time link
    assert default["tenant"] == emea["tenant"] == "lmints.io"
    for conn in (default, emea):
        assert conn["companies"] == [] and conn["subscriptions"] == [] and conn["cursors"] == []
    assert report["dead_letters"] == {QUEUE_SALES_ORDERS_POISON: 0, QUEUE_NOTIFICATIONS_POISON: 0,
                                      QUEUE_ITEM_PULLS_POISON: 0, QUEUE_COMMANDS_POISON: 0,
                                      QUEUE_CONNECTION_WORK_POISON: 0}
    assert emulator.requests == []


def test_status_shows_subscriptions_cursors_and_dead_letters_but_no_client_state(
        local_host: Callable[..., Any], azurite: Any, emulator: Any) -> None:
    host = local_host(**TWO_CONNECTIONS)
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    subscriptions = tables.create_table_if_not_exists(TABLE_SUBSCRIPTIONS)
    subscriptions.upsert_entity({
        "PartitionKey": "default", "RowKey": "c1:items", "resource": "companies(c1)/items",
        "subscription_id": "sub-1", "expires_at": "2026-11-28T12:00:00Z", "status": "active",
        "last_error": "", "client_state_nonce": "nonce-must-not-show", "notification_url": "https://x"})
    subscriptions.upsert_entity({
        "PartitionKey": "emea", "RowKey": "c2:items", "resource": "companies(c2)/items",
        "subscription_id": "", "expires_at": "", "status": "failed", "last_error": "handshake timed out"})
    cursors = tables.create_table_if_not_exists(TABLE_CURSORS)
    cursors.upsert_entity({"PartitionKey": "default", "RowKey": "items:c1", "cursor": "2026-11-25T10:00:00Z",
                           "updated_at": "2026-11-25T10:05:00Z", "next_link": "https://bc/items?$skiptoken=9"})
    queues = QueueServiceClient.from_connection_string(azurite.connection_string)
    for name, count in ((QUEUE_SALES_ORDERS_POISON, 2), (QUEUE_NOTIFICATIONS_POISON, 1),
                        (QUEUE_ITEM_PULLS_POISON, 3)):
        queue = queues.get_queue_client(name)
        if name not in {q.name for q in queues.list_queues()}:
            queue.create_queue()
        for n in range(count):
            queue.send_message(f'{{"n": {n}}}')
    emulator.clear_requests()

    resp = requests.get(f"{host.url}/api/status", timeout=30)
    report = resp.json()
    default, emea = report["connections"]
    assert default["subscriptions"] == [{"resource": "companies(c1)/items", "entity_set": "",
                                         "subscription_id": "sub-1", "expires_at": "2026-11-28T12:00:00Z",
                                         "status": "active", "last_error": "", "removed_reason": "",
                                         "removed_at": "", "notification_url": "https://x",
                                         "url_current": False}]
    assert emea["subscriptions"][0]["status"] == "failed"
    assert emea["subscriptions"][0]["last_error"] == "handshake timed out"
    assert default["cursors"] == [{"name": "items:c1", "cursor": "2026-11-25T10:00:00Z",
                                   "updated_at": "2026-11-25T10:05:00Z", "next_link": True}]
    assert emea["cursors"] == []
    assert report["dead_letters"] == {QUEUE_SALES_ORDERS_POISON: 2, QUEUE_NOTIFICATIONS_POISON: 1,
                                      QUEUE_ITEM_PULLS_POISON: 3, QUEUE_COMMANDS_POISON: 0,
                                      QUEUE_CONNECTION_WORK_POISON: 0}
    assert "nonce-must-not-show" not in resp.text and "client_state" not in resp.text
    assert emulator.requests == []


def test_status_needs_a_function_key(local_host: Callable[..., Any]) -> None:
    host = local_host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="fn-key", **QUIET_TIMERS)
    assert requests.get(f"{host.url}/api/status", timeout=30).status_code == 401
    assert requests.get(f"{host.url}/api/status", params={"code": "fn-key"}, timeout=30).status_code == 200
