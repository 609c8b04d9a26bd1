"""`GET /api/status`: what an operator needs to see per connection, read from storage only.

No BC call: token state comes from the `bctokens` row's presence and the `token_state`, `token_fix`
and `token_retry_at` recorded in `bcconnections` (the route first lets `TokenService.verify` ask
Entra for a fresh client-credentials token, at most once a minute, so a changed secret shows);
companies from the last discovery; subscriptions (without their
client-state material) from `bcsubscriptions`; cursors from `bccursors`; dead letters from the
poison queues' approximate counts; recent throughput from the `bcorders` and `bcdedupe` rows
written in the last 24 hours. `status_readings` turns the report into the observable gauges.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from connector.auth.crypto import TokenCipher
from connector.auth.token_store import is_token_row
from connector.auth.tokens import login_url
from connector.bc.timestamps import iso, parse_iso, utc_now
from connector.businessevents.subscriptions import event_url
from connector.health.checks import secret_warning
from connector.health.events import RECENT_WINDOW, latest_health
from connector.ops.activity import activity_of, first_hour
from connector.settings import (
    QUEUE_COMMANDS_POISON,
    QUEUE_CONNECTION_WORK_POISON,
    QUEUE_ITEM_PULLS_POISON,
    QUEUE_NOTIFICATIONS_POISON,
    QUEUE_SALES_ORDERS_POISON,
    TABLE_CONNECTIONS,
    TABLE_CURSORS,
    TABLE_DEDUPE,
    TABLE_HEALTH,
    TABLE_ORDERS,
    TABLE_STATS,
    TABLE_SUBSCRIPTIONS,
    TABLE_TOKENS,
    ConnectionSettings,
    Settings,
    SettingsError,
)
from connector.storage import Storage, table_key
from connector.webhooks.subscription_plan import notification_url

DEAD_LETTER_QUEUES = (QUEUE_SALES_ORDERS_POISON, QUEUE_NOTIFICATIONS_POISON, QUEUE_ITEM_PULLS_POISON,
                      QUEUE_COMMANDS_POISON, QUEUE_CONNECTION_WORK_POISON)
SUBSCRIPTION_FIELDS = ("resource", "entity_set", "subscription_id", "expires_at", "status", "last_error",
                       "removed_reason", "removed_at")
THROUGHPUT_WINDOW = timedelta(hours=24)
ALL_CONNECTIONS = "all"  # the `connection` of app-wide gauges (poison queues are shared)


def _plain(value: Any) -> Any:
    """A table value as JSON: datetimes in ISO 8601."""
    return value.isoformat() if isinstance(value, (datetime, date)) else value


def token_state(conn: ConnectionSettings, has_tokens: bool, saved_state: str, saved_grant: str = "") -> str:
    """`ok`, `not-signed-in`, `refresh-failed` or `credentials-refused`.

    Authorization code: without stored tokens the connection is either never signed in or its
    refresh token was refused (tokens deleted, `refresh-failed` recorded); a state recorded under
    the other grant type (the setting changed) means nobody signed in yet. Client credentials: what
    the last token request recorded.
    """
    if saved_grant and saved_grant != conn.grant_type:
        # recorded under the other grant type (its token cache may still be stored): no sign-in yet
        return "not-signed-in" if conn.uses_code_flow else "ok"
    if conn.uses_code_flow and (not has_tokens or saved_state == "not-signed-in"):
        return "refresh-failed" if saved_state == "refresh-failed" else "not-signed-in"
    return saved_state if saved_state in ("credentials-refused", "refresh-failed") else "ok"


def subscription_view(row: Mapping[str, Any], current_urls: Iterable[str] | None = None) -> dict[str, Any]:
    """A `bcsubscriptions` row as shown: only the listed fields (never client-state material). With
    `current_urls` (where this deployment is notified now: webhooks, business events), also the URL
    the subscription notifies and `url_current`: False until a subscription run recreates one made
    for another URL."""
    view = {name: _plain(row.get(name, "")) for name in SUBSCRIPTION_FIELDS}
    if current_urls is not None and row.get("notification_url"):
        view["notification_url"] = row["notification_url"]
        view["url_current"] = row["notification_url"] in set(current_urls)
    return view


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
                      cursors: Iterable[Mapping[str, Any]], config_problem: str = "",
                      notification_urls: Iterable[str] | None = None) -> dict[str, Any]:
    """One connection's part of the status report, from its rows (`notification_urls`: where its
    subscriptions should notify now)."""
    row = state_row or {}
    state = token_state(conn, has_tokens, str(row.get("token_state", "")), str(row.get("token_grant", "")))
    token: dict[str, Any] = {"state": state}
    if row.get("token_error") and state != "ok" and state != "not-signed-in":
        token["error"] = row["token_error"]
        for name in ("fix", "retry_at"):
            if row.get(f"token_{name}"):
                token[name] = row[f"token_{name}"]
    if state == "not-signed-in":
        token["fix"] = f"sign in at {public_login_url}"
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
        "credential": conn.client_credential,
        "secret_warning": secret_warning(conn, utc_now().date()),
        "subscriptions": [subscription_view(s, notification_urls) for s in subscriptions],
        "cursors": [cursor_view(c) for c in cursors],
    }


def principal_report(principal: ConnectionSettings, state_row: Mapping[str, Any] | None) -> dict[str, Any]:
    """One principal (app registration) of a connection: its client id and token state, as its
    last token request recorded it (an extra one that never asked yet shows `unknown`)."""
    row = state_row or {}
    token: dict[str, Any] = {"state": str(row.get("token_state") or "unknown")}
    if row.get("token_error") and token["state"] != "ok":
        token["error"] = row["token_error"]
        for name in ("fix", "retry_at"):
            if row.get(f"token_{name}"):
                token[name] = row[f"token_{name}"]
    return {"name": principal.name, "client_id": principal.client_id, "token": token}


def _key_problem(settings: Settings, conn: ConnectionSettings) -> str:
    if not conn.uses_code_flow:
        return ""
    try:
        TokenCipher(settings.token_encryption_keys)
    except SettingsError as exc:
        return str(exc)
    return ""


def partition_connection(partition_key: str) -> str:
    """The connection of a `bcorders`/`bcdedupe` row (`<connection>|<company>[|...]`, table-key quoted)."""
    return unquote(partition_key).split("|", 1)[0]


def throughput(order_rows: Iterable[Mapping[str, Any]],
               announced_rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """Per connection: orders settled by state, and events announced by entity set."""
    out: dict[str, dict[str, Counter[str]]] = {}

    def counts(connection: str) -> dict[str, Counter[str]]:
        return out.setdefault(connection, {"orders": Counter(), "events": Counter()})

    for row in order_rows:
        counts(partition_connection(row["PartitionKey"]))["orders"][str(row.get("state", ""))] += 1
    for row in announced_rows:
        name, _, rest = unquote(row["PartitionKey"]).partition("|")
        counts(name)["events"][rest.rsplit("|", 1)[-1]] += 1
    return {name: {kind: dict(counts) for kind, counts in parts.items()} for name, parts in out.items()}


def _recent_throughput(storage: Storage, now: datetime) -> dict[str, dict[str, dict[str, int]]]:
    since = now - THROUGHPUT_WINDOW
    orders = storage.table(TABLE_ORDERS).query_entities(  # rows before snake_case: `claimedAt`
        "claimed_at ge @since_text or claimedAt ge @since",
        parameters={"since": since, "since_text": iso(since)}, select=["PartitionKey", "state"])
    announced = storage.table(TABLE_DEDUPE).query_entities(
        "state eq 'emitted' and Timestamp ge @since", parameters={"since": since}, select=["PartitionKey"])
    return throughput(orders, announced)


Readings = dict[str, list[tuple[float, dict[str, str]]]]
STATUS_READERS = 16  # principals whose tokens /api/status verifies at once


def in_parallel(fn: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """`fn` of each value, STATUS_READERS at a time, in order (Entra and storage: threads wait)."""
    if len(values) <= 1:
        return [fn(v) for v in values]
    with ThreadPoolExecutor(min(STATUS_READERS, len(values)), thread_name_prefix="status") as pool:
        return list(pool.map(fn, values))


def gauge_report(settings: Settings, storage: Storage, now: datetime | None = None) -> dict[str, Any]:
    """What `status_readings` needs, in a few storage reads whatever the number of connections: the
    subscription and cursor tables read whole (1,000 rows a transaction) rather than a partition per
    connection (5 reads per connection and gauge collection, every minute and instance, before)."""
    now = now or utc_now()
    subscriptions: dict[str, list[dict[str, Any]]] = {}
    for row in storage.table(TABLE_SUBSCRIPTIONS).list_entities(select=["PartitionKey", "status"]):
        subscriptions.setdefault(str(row.get("PartitionKey", "")), []).append({"status": row.get("status")})
    cursors: dict[str, list[dict[str, Any]]] = {}
    for row in storage.table(TABLE_CURSORS).list_entities(select=["PartitionKey", "RowKey", "updated_at"]):
        cursors.setdefault(str(row.get("PartitionKey", "")), []).append(cursor_view(row))
    connections = [{"name": name, "subscriptions": subscriptions.get(name, []),
                    "cursors": cursors.get(name, [])} for name in settings.connections]
    return {"generated_at": iso(now), "connections": connections, "dead_letters": dead_letter_counts(storage)}


def status_readings(report: Mapping[str, Any], now: datetime) -> Readings:
    """The observable gauges (by metric name) from a status report: subscriptions by state, poison
    depths, and seconds since each connection's item pull and sweep last moved a cursor."""
    readings: Readings = {
        "bc_connector.subscriptions": [], "bc_connector.seconds_since_pull": [],
        "bc_connector.seconds_since_sweep": [],
        "bc_connector.poison_depth": [(float(n or 0), {"connection": ALL_CONNECTIONS, "queue": q})
                                      for q, n in report.get("dead_letters", {}).items()],
    }
    for conn in report.get("connections", []):
        name = conn["name"]
        states = Counter(str(s.get("status") or "unknown") for s in conn.get("subscriptions", []))
        readings["bc_connector.subscriptions"] += [(float(n), {"connection": name, "state": state})
                                                   for state, n in sorted(states.items())]
        for prefix, metric in (("items:", "bc_connector.seconds_since_pull"),
                               ("sweep:", "bc_connector.seconds_since_sweep")):
            moved = [c["updated_at"] for c in conn.get("cursors", [])
                     if str(c.get("name", "")).startswith(prefix) and c.get("updated_at")]
            if moved:
                last = max(parse_iso(str(m)) for m in moved)
                readings[metric].append((max(0.0, (now - last).total_seconds()), {"connection": name}))
    return readings


def read_status(settings: Settings, storage: Storage, now: datetime | None = None,
                throughput: bool = True, login_link: Callable[[str], str] | None = None,
                names: Collection[str] | None = None) -> dict[str, Any]:
    """The whole report: every configured connection, and the dead-letter counts. `throughput` scans
    the order and dedupe tables for the last 24 hours: for people asking, not for the gauges.
    `login_link` gives a connection's sign-in link (the status route: a one-time link; else the
    admin-level login URL). `names`: only these connections (a page of them). Each table is read
    once for the connections shown (`PageRows`), not once per connection."""
    now = now or utc_now()
    login_link = login_link or (lambda name: login_url(settings, name))
    recent = _recent_throughput(storage, now) if throughput else {}
    wanted = None if names is None else set(names)
    shown = [c for c in settings.connections.values() if wanted is None or c.name in wanted]
    rows = PageRows(storage, [c.name for c in shown] + [p.name for c in shown for p in c.principals])
    states = rows.read(TABLE_CONNECTIONS)
    tokens = rows.read(TABLE_TOKENS, key=table_key, select=["PartitionKey", "RowKey"])
    subscriptions, cursors = rows.read(TABLE_SUBSCRIPTIONS), rows.read(TABLE_CURSORS)
    if throughput:
        health = rows.read(TABLE_HEALTH, "time ge @since", {"since": iso(now - RECENT_WINDOW)})
        activity = rows.read(TABLE_STATS, "RowKey ge @first", {"first": first_hour(now)}, key=table_key)

    def row(name: str, row_key: str) -> dict[str, Any] | None:
        return next((r for r in states[name] if r.get("RowKey") == row_key), None)

    connections = []
    for conn in shown:
        one = connection_report(
            conn,
            public_login_url=login_link(conn.name) if conn.uses_code_flow else "",
            has_tokens=any(is_token_row(r) for r in tokens[conn.name]),
            state_row=row(conn.name, "state"),
            subscriptions=subscriptions[conn.name],
            cursors=cursors[conn.name],
            config_problem=_key_problem(settings, conn),
            notification_urls=(notification_url(settings, conn.name), event_url(settings, conn.name)),
        )
        one["throughput_24h"] = recent.get(conn.name, {"orders": {}, "events": {}})
        if len(conn.principals) > 1:
            one["principals"] = [principal_report(p, row(p.name, "state") or {}) for p in conn.principals]
        if throughput:
            one["health_events"] = latest_health(health[conn.name])
            one["activity_24h"] = activity_of(activity[conn.name], now)
            pause = row(conn.name, "pause")
            if pause:
                one["paused"] = {k: pause.get(k, "") for k in ("reason", "fix", "since")}
        connections.append(one)
    report = {"generated_at": iso(now), "connections": connections,
              "dead_letters": dead_letter_counts(storage)}
    invalid = getattr(settings.connections, "errors", None)  # the connection table's invalid rows
    if invalid:
        report["connection_table"] = {"invalid": dict(sorted(invalid.items()))}
    return report


class PageRows:
    """The rows of some connections (a status page), each table read in one query over the range
    of their partition keys (a page of 50 names in order: a few transactions, not ~350); rows of
    other partitions inside the range are read and dropped."""

    def __init__(self, storage: Storage, names: list[str]):
        self._storage = storage
        self._names = names

    def read(self, table: str, query: str = "", parameters: Mapping[str, Any] | None = None, *,
             key: Callable[[str], str] = lambda name: name,
             select: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Each name's rows of `table` (PartitionKey `key(name)`) that match `query`."""
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in self._names}
        if not self._names:
            return found
        names = {key(name): name for name in self._names}
        where = "PartitionKey ge @first and PartitionKey le @last" + (f" and {query}" if query else "")
        for entity in self._storage.table(table).query_entities(
                where, parameters={"first": min(names), "last": max(names), **(parameters or {})},
                select=select):
            name = names.get(str(entity.get("PartitionKey", "")))
            if name is not None:
                found[name].append(dict(entity))
        return found


def dead_letter_counts(storage: Storage) -> dict[str, int | None]:
    """The poison queues' approximate depths."""
    return {name: storage.queue(name).get_queue_properties().approximate_message_count
            for name in DEAD_LETTER_QUEUES}
