"""`GET /api/status`: what an operator needs to see per connection, read from storage only.

No BC or Entra call: token state comes from the `bctokens` row's presence and the `token_state`
recorded in `bcconnections`; companies from the last discovery; subscriptions (without their
client-state material) from `bcsubscriptions`; cursors from `bccursors`; dead letters from the
poison queues' approximate counts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from connector.auth.crypto import TokenCipher
from connector.auth.token_store import tokens_stored
from connector.auth.tokens import login_url
from connector.settings import (
    QUEUE_ITEM_PULLS_POISON,
    QUEUE_NOTIFICATIONS_POISON,
    QUEUE_SALES_ORDERS_POISON,
    TABLE_CONNECTIONS,
    TABLE_CURSORS,
    TABLE_SUBSCRIPTIONS,
    ConnectionSettings,
    Settings,
    SettingsError,
)
from connector.storage import Storage, read_entity

DEAD_LETTER_QUEUES = (QUEUE_SALES_ORDERS_POISON, QUEUE_NOTIFICATIONS_POISON, QUEUE_ITEM_PULLS_POISON)
SUBSCRIPTION_FIELDS = ("resource", "subscription_id", "expires_at", "status", "last_error")


def _plain(value: Any) -> Any:
    """A table value as JSON: datetimes in ISO 8601."""
    return value.isoformat() if isinstance(value, (datetime, date)) else value


def token_state(conn: ConnectionSettings, has_tokens: bool, saved_state: str) -> str:
    """`ok`, `refresh-failed` or `not-signed-in`.

    Authorization code: without stored tokens the connection is either never signed in or its
    refresh token was refused (tokens deleted, `refresh-failed` recorded). Client credentials: what
    the last token request recorded.
    """
    if conn.uses_code_flow and not has_tokens:
        return "refresh-failed" if saved_state == "refresh-failed" else "not-signed-in"
    return "refresh-failed" if saved_state == "refresh-failed" else "ok"


def subscription_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `bcsubscriptions` row as shown: only the listed fields (never client-state material)."""
    return {name: _plain(row.get(name, "")) for name in SUBSCRIPTION_FIELDS}


def cursor_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `bccursors` row as shown: the cursor, when it moved, and whether a paged read is under way."""
    return {
        "name": row.get("RowKey", ""),
        "cursor": _plain(row.get("cursor")),
        "updated_at": _plain(row.get("updated_at")),
        "next_link": bool(row.get("next_link")),
    }


def connection_report(conn: ConnectionSettings, *, public_login_url: str, has_tokens: bool,
                      state_row: Mapping[str, Any] | None, subscriptions: Iterable[Mapping[str, Any]],
                      cursors: Iterable[Mapping[str, Any]], config_problem: str = "") -> dict[str, Any]:
    """One connection's part of the status report, from its rows."""
    row = state_row or {}
    state = token_state(conn, has_tokens, str(row.get("token_state", "")))
    token: dict[str, Any] = {"state": state}
    if row.get("token_error") and state != "ok":
        token["error"] = row["token_error"]
    if config_problem:
        token["error"] = config_problem
    if conn.uses_code_flow:
        if state != "ok":
            token["login_url"] = public_login_url
        token["signed_in_at"] = _plain(row.get("signed_in_at"))
        token["signed_in_as"] = row.get("signed_in_as", "")
    try:
        companies = json.loads(row.get("companies") or "[]")
    except ValueError:
        companies = []
    return {
        "name": conn.name,
        "grant_type": conn.grant_type,
        "tenant": conn.tenant,
        "environment": conn.environment,
        "token": token,
        "company_id": row.get("company_id") or conn.company,
        "company_configured": conn.company,
        "companies": companies,
        "companies_discovered_at": _plain(row.get("discovered_at")),
        "subscriptions": [subscription_view(s) for s in subscriptions],
        "cursors": [cursor_view(c) for c in cursors],
    }


def _key_problem(settings: Settings, conn: ConnectionSettings) -> str:
    if not conn.uses_code_flow:
        return ""
    try:
        TokenCipher(settings.token_encryption_keys)
    except SettingsError as exc:
        return str(exc)
    return ""


def _partition(storage: Storage, table: str, connection: str) -> list[dict[str, Any]]:
    rows = storage.table(table).query_entities("PartitionKey eq @pk", parameters={"pk": connection})
    return [dict(r) for r in rows]


def read_status(settings: Settings, storage: Storage) -> dict[str, Any]:
    """The whole report: every configured connection, and the dead-letter counts."""
    connections = []
    for conn in settings.connections.values():
        found = read_entity(storage.table(TABLE_CONNECTIONS), conn.name, "state")
        connections.append(connection_report(
            conn,
            public_login_url=login_url(settings, conn.name),
            has_tokens=tokens_stored(storage, conn.name),
            state_row=found[0] if found else None,
            subscriptions=_partition(storage, TABLE_SUBSCRIPTIONS, conn.name),
            cursors=_partition(storage, TABLE_CURSORS, conn.name),
            config_problem=_key_problem(settings, conn),
        ))
    dead_letters = {
        name: storage.queue(name).get_queue_properties().approximate_message_count
        for name in DEAD_LETTER_QUEUES
    }
    return {"connections": connections, "dead_letters": dead_letters}
