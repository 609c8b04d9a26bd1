"""Webhook subscriptions that never silently die: create, renew, recreate and delete them in BC.

How a run decides and how connections tell their subscriptions apart: docs/architecture.md
("Webhook subscriptions"). clientStates: `client_state.py`; the decisions: `subscription_plan.py`;
the receiver's view of the rows: `directory.py`.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from azure.data.tables import UpdateMode

from connector.bc.client import BCClient
from connector.bc.errors import BCError, BCNotFound
from connector.bc.keys import InvalidKey, checked_guid, subscription_path
from connector.bc.timestamps import iso, utc_now
from connector.businessevents.subscriptions import reconcile_events, subscriptions_url
from connector.connections import for_each_connection, results_or_raise
from connector.declarations import STANDARD_API, WatchedEntitySet
from connector.errors import ConnectorError
from connector.health.events import SUBSCRIPTION_FAILING, SUBSCRIPTION_RECREATED
from connector.leases import LEASE_SECONDS, Lease
from connector.settings import TABLE_SUBSCRIPTIONS
from connector.storage import read_entity, table_key
from connector.webhooks.bc_logs import describe, failed_notifications, read_webhook_logs, removal_reason
from connector.webhooks.capacity import SubscriptionCapacity
from connector.webhooks.client_state import client_state, key_id, signing_key
from connector.webhooks.context import WebhookContext
from connector.webhooks.discovery import supported_resources
from connector.webhooks.subscription_plan import (
    Action,
    notification_url,
    plan_subscription,
    server_now,
    stray_subscriptions,
    watched_resource,
)
from connector.webhooks.sweep import start_trigger

log = logging.getLogger(__name__)

_UNREAD = object()  # BC's webhook log, read at most once per run


class SubscriptionRunBusy(ConnectorError, RuntimeError):
    """Another runner is reconciling this connection's subscriptions right now."""

    code = "AlreadyRunning"
    http_status = 409


# ---- BC and storage edges ------------------------------------------------------------------------

def subscriptions_path(bc: BCClient, api: str, subscription_id: str | None = None) -> str:
    """BC's subscriptions of an API route (a custom API's subscriptions live under its own route,
    bc-api.md §7.1), or one of them."""
    path = "subscriptions" if subscription_id is None else subscription_path(subscription_id)
    return path if api == STANDARD_API else f"{bc.environment_root}/api/{api}/{path}"


def api_of(resource: str) -> str:
    """The API route a subscription's resource belongs to (`v2.0` when it cannot tell)."""
    where = watched_resource(resource)
    return where[1].rsplit("/", 1)[0] if where and "/" in where[1] else STANDARD_API


def list_remote(bc: BCClient,
                apis: AbstractSet[str] = frozenset()) -> tuple[datetime, dict[str, dict[str, Any]]]:
    """BC's time and its subscriptions of this environment by id (those of the standard API's route
    and of every custom API route in `apis`)."""
    pages = bc.pages("subscriptions")
    first = next(pages)
    subs = [*first.entities, *(s for page in pages for s in page.entities)]
    for api in sorted(apis - {STANDARD_API}):
        subs += bc.iter_entities(subscriptions_path(bc, api))
    return server_now(first.headers.get("Date")), {s["subscriptionId"]: s for s in subs}


@dataclass
class ReconcileSummary:
    """What one run did, by entity set."""

    connection: str
    company_id: str
    done: dict[Action, list[str]] = field(default_factory=lambda: {a: [] for a in Action})
    failed: list[dict[str, str]] = field(default_factory=list)
    strays_deleted: int = 0
    business_events: dict[str, Any] | None = None  # connector/businessevents/subscriptions.py
    capacity: SubscriptionCapacity | None = None  # the environment's subscriptions after the run

    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.connection, "companyId": self.company_id,
                **{a.value: names for a, names in self.done.items()},
                "failed": self.failed, "straysDeleted": self.strays_deleted,
                **({"businessEvents": self.business_events} if self.business_events is not None else {}),
                **({"subscriptionsInEnvironment": {"inUse": self.capacity.in_use, "cap": self.capacity.cap}}
                   if self.capacity is not None else {})}


class SubscriptionRun:
    """One reconcile of one connection (holds the BC client, table and settings it needs)."""

    def __init__(self, ctx: WebhookContext, connection: str, company_id: str):
        self.ctx = ctx
        self.connection = connection
        self.company_id = company_id
        self.bc = ctx.bc(connection)
        self.table = ctx.storage.table(TABLE_SUBSCRIPTIONS)
        self.url = notification_url(ctx.settings, connection)
        self.key = signing_key(ctx.settings.token_encryption_keys)
        self.key_id = key_id(self.key)
        self.directory = ctx.subscription_directory

    def row_key(self, trigger: WatchedEntitySet) -> str:
        return table_key(f"{self.company_id}:{trigger.key}")

    def load_row(self, trigger: WatchedEntitySet) -> dict[str, Any] | None:
        found = read_entity(self.table, self.connection, self.row_key(trigger))
        return found[0] if found else None

    def save(self, trigger: WatchedEntitySet, status: str, *, sub: dict[str, Any] | None = None,
             nonce: str = "", key: str = "", error: str = "") -> dict[str, Any]:
        """Write the row (`key`: the id of the key the clientState was derived from)."""
        sub = sub or {}
        row = {
            "PartitionKey": self.connection, "RowKey": self.row_key(trigger), "company_id": self.company_id,
            "entity_set": trigger.key, "resource": trigger.resource_path(self.company_id),
            "subscription_id": sub.get("subscriptionId", ""), "etag": sub.get("@odata.etag", ""),
            "expires_at": sub.get("expirationDateTime", ""), "status": status, "last_error": error,
            "client_state_nonce": nonce, "client_state_key": key,
            "notification_url": sub.get("notificationUrl", "") if sub else "",
            "updated_at": iso(utc_now()),
        }
        self.table.upsert_entity(row, mode=UpdateMode.MERGE)  # keeps `removed_*` (BC's last reason)
        self.directory.remember(row)
        return row

    def create(self, trigger: WatchedEntitySet) -> dict[str, Any]:
        nonce = secrets.token_urlsafe(32)
        body = {"notificationUrl": self.url, "resource": trigger.resource_path(self.company_id),
                "clientState": client_state(self.key, nonce)}
        sub = self.bc.post(subscriptions_path(self.bc, trigger.api), body)
        log.info("subscriptions %s: created %s for %s (expires %s)", self.connection, sub["subscriptionId"],
                 trigger.key, sub.get("expirationDateTime"))
        return self.save(trigger, "active", sub=sub, nonce=nonce, key=self.key_id)

    def renew(self, trigger: WatchedEntitySet, row: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
        body = {"notificationUrl": self.url, "clientState": client_state(self.key, row["client_state_nonce"])}
        sub = self.bc.patch(subscriptions_path(self.bc, trigger.api, remote["subscriptionId"]), body,
                            etag=remote["@odata.etag"])
        log.info("subscriptions %s: renewed %s for %s (expires %s)", self.connection, sub["subscriptionId"],
                 trigger.key, sub.get("expirationDateTime"))
        return self.save(trigger, "active", sub=sub, nonce=row["client_state_nonce"], key=self.key_id)

    def report_removed(self, trigger: WatchedEntitySet, removed_id: str, row: dict[str, Any],
                       logs: list[dict[str, Any]] | None) -> None:
        """Why BC dropped `removed_id` (its webhook log): on the row for the status page, and one
        `bc.connector.subscription.recreated` event."""
        entry = removal_reason(logs or [], removed_id)
        reason = describe(entry) if logs is not None else "BC's webhook log is not available"
        self.table.upsert_entity({"PartitionKey": self.connection, "RowKey": self.row_key(trigger),
                                  "removed_reason": reason, "removed_at": iso(utc_now()),
                                  "removed_subscription_id": removed_id}, mode=UpdateMode.MERGE)
        self.ctx.health.emit(
            SUBSCRIPTION_RECREATED, connection=self.connection, company_id=self.company_id,
            occurrence=removed_id,
            summary=f"BC removed the {trigger.key} subscription: {reason}; re-created",
            details={"entitySet": trigger.key, "removedSubscriptionId": removed_id,
                     "subscriptionId": row.get("subscription_id", ""), "bcReason": reason,
                     "bcLog": entry or {}})

    def report_failed_notifications(self, logs: list[dict[str, Any]] | None, now: datetime) -> None:
        """One `bc.connector.subscription.failing` a day while BC's log shows failed notifications
        to this connection's URL in the last 24 hours."""
        recent = [e for e in failed_notifications(logs or [], self.url)
                  if str(e.get("time", "")) >= iso(now - timedelta(days=1))[:19]]
        if not recent:
            return
        self.ctx.health.emit(
            SUBSCRIPTION_FAILING, connection=self.connection, company_id=self.company_id,
            occurrence=f"notifications-failed:{now.date().isoformat()}",
            summary=f"BC failed to deliver {len(recent)} notification(s) in 24 h: {describe(recent[0])}",
            details={"failures": len(recent), "bcLog": recent[0]})

    def report_capacity(self, capacity: SubscriptionCapacity, watched: list[str], now: datetime) -> None:
        """From 80 % of BC's cap: a warning and one health event a day per connection."""
        advice = capacity.advice(self.connection, watched)
        log.warning("subscriptions %s: %s", self.connection, advice)
        self.ctx.health.emit(
            SUBSCRIPTION_FAILING, connection=self.connection, company_id=self.company_id,
            occurrence=f"capacity:{now.date().isoformat()}", summary=advice,
            details={"inUse": capacity.in_use, "cap": capacity.cap, "triggers": watched})

    def delete_remote(self, sub: dict[str, Any]) -> None:
        try:
            path = subscriptions_path(self.bc, api_of(str(sub.get("resource", ""))), sub["subscriptionId"])
            self.bc.delete(path, sub.get("@odata.etag") or "*")
        except (BCNotFound, InvalidKey):  # an id that is no key cannot exist in BC
            pass
        self.directory.forget(sub["subscriptionId"])

    def apply(self, trigger: WatchedEntitySet, action: Action, row: dict[str, Any] | None,
              remote: dict[str, Any] | None) -> tuple[Action, dict[str, Any]]:
        """Carry out `action`; a renewal of a subscription BC dropped meanwhile becomes a recreate."""
        if action is Action.UNSUPPORTED:
            return action, self.save(trigger, "unsupported")
        if action is Action.KEEP:
            assert row is not None and remote is not None
            return action, self.save(trigger, "active", sub=remote, nonce=row["client_state_nonce"],
                                     key=row.get("client_state_key", ""))
        if action is Action.RENEW:
            assert row is not None and remote is not None
            try:
                return action, self.renew(trigger, row, remote)
            except BCNotFound:
                action = Action.RECREATE
        if action is Action.RECREATE and remote is not None:
            self.delete_remote(remote)  # expired but still listed: make room for the new one
        return action, self.create(trigger)


def reconcile(ctx: WebhookContext, connection: str | None = None) -> ReconcileSummary:
    """Make BC's subscriptions for this connection's company match what the triggers need.
    Raises MissingClientStateKey before touching BC when TOKEN_ENCRYPTION_KEY is not set, and
    SubscriptionRunBusy when another runner holds the lease or takes it over mid-run (it is renewed
    before each trigger, after each baseline page and before each stray deletion)."""
    conn = ctx.settings.connection(connection)
    signing_key(ctx.settings.token_encryption_keys)
    ctx.tokens.verify(conn.name)  # a changed client secret shows on this run, not an hour later
    company_id = ctx.company_id(conn.name)
    lease = Lease(ctx.storage, f"subscriptions:{conn.name}", ttl_seconds=LEASE_SECONDS)
    with lease as acquired:
        if not acquired:
            raise SubscriptionRunBusy(f"connection {conn.name!r}: a subscription run is already in progress")

        def keep_lease() -> None:
            if not lease.renew():
                raise SubscriptionRunBusy(f"connection {conn.name!r}: the subscription run lost its lease "
                                          "to another runner; stopped")

        run = SubscriptionRun(ctx, conn.name, company_id)
        now, remote = list_remote(run.bc, {t.api for t in conn.triggers})
        supported = supported_resources(run.bc, company_id)
        renew_before = timedelta(hours=ctx.settings.subscription_renew_before_hours)
        summary = ReconcileSummary(conn.name, company_id)
        capacity = SubscriptionCapacity(len(remote))
        watched = [t.key for t in conn.triggers]
        owned: set[str] = set()
        logs: Any = _UNREAD  # list[dict[str, Any]] | None once read
        for trigger in conn.triggers:
            keep_lease()
            start_trigger(ctx, conn.name, company_id, trigger, keep_lease)
            row = run.load_row(trigger)
            current = remote.get(row["subscription_id"]) if row and row.get("subscription_id") else None
            can_watch = None if supported is None else trigger.resource in supported
            action = plan_subscription(row, current, can_watch, now, renew_before, run.url, run.key_id)
            previous_id = (row or {}).get("subscription_id", "")
            adds = action is Action.CREATE or (action is Action.RECREATE and current is None)
            if adds and capacity.room == 0:  # BC would refuse it: say which triggers to drop instead
                advice = capacity.advice(conn.name, watched)
                log.error("subscriptions %s: %s not subscribed: %s", conn.name, trigger.key, advice)
                summary.failed.append({"entitySet": trigger.key, "error": f"over BC's cap: {advice}"})
                run.save(trigger, "failed", nonce=(row or {}).get("client_state_nonce", ""),
                         key=(row or {}).get("client_state_key", ""), error=f"over BC's cap: {advice}")
                continue
            try:
                done, row = run.apply(trigger, action, row, current)
            except BCError as exc:
                log.warning("subscriptions %s: %s of %s failed: %s", conn.name, action.name.lower(),
                            trigger.key, exc)
                summary.failed.append({"entitySet": trigger.key, "error": str(exc)})
                if row is not None:
                    owned.add(row.get("subscription_id", ""))
                run.save(trigger, "failed", sub=current, nonce=(row or {}).get("client_state_nonce", ""),
                         key=(row or {}).get("client_state_key", ""), error=str(exc))
                continue
            summary.done[done].append(trigger.key)
            if adds:
                capacity = capacity.taken()
            owned.add(row["subscription_id"])
            if done is Action.RECREATE and previous_id:
                if logs is _UNREAD:
                    logs = read_webhook_logs(run.bc, company_id)
                run.report_removed(trigger, previous_id, row, logs)
        for stray in stray_subscriptions(remote.values(), owned, company_id, run.url,
                                         [t.key for t in conn.triggers]):
            keep_lease()
            try:
                run.delete_remote(stray)
            except BCError as exc:  # cleanup only: the next run tries again
                log.warning("subscriptions %s: stray %s not deleted: %s", conn.name,
                            stray["subscriptionId"], exc)
                continue
            summary.strays_deleted += 1
        summary.capacity = capacity
        if capacity.warning:
            run.report_capacity(capacity, watched, now)
        keep_lease()
        try:
            events = reconcile_events(run.bc, run.table, ctx.settings, conn, company_id)
            summary.business_events = events.as_dict() if events is not None else None
            for lost in events.lost if events is not None else ():
                ctx.health.emit(
                    SUBSCRIPTION_RECREATED, connection=conn.name, company_id=company_id,
                    occurrence=lost["subscriptionId"],
                    summary=f"The {lost['eventName']} business-event subscription: {lost['why']}; re-created",
                    details=lost)
        except BCError as exc:  # the webhooks above are done; the next run tries again
            log.warning("subscriptions %s: business events failed: %s", conn.name, exc)
            summary.failed.append({"entitySet": "businessEvents", "error": str(exc)})
        if logs is _UNREAD:
            logs = read_webhook_logs(run.bc, company_id)
        run.report_failed_notifications(logs, now)
        log.info("subscriptions %s: %s", conn.name, summary.as_dict())
        return summary


def reconcile_unless_busy(ctx: WebhookContext, connection: str) -> ReconcileSummary | None:
    """`reconcile`, or None (logged) while another run of the connection holds the lease."""
    try:
        return reconcile(ctx, connection)
    except SubscriptionRunBusy as exc:
        log.warning("subscriptions %s: skipped: %s", connection, exc)
        return None


def reconcile_all(ctx: WebhookContext) -> list[ReconcileSummary]:
    """Reconcile every connection; a connection that is not signed in or busy is skipped (logged).
    Raises the first other error after trying every connection."""
    outcomes = for_each_connection(ctx.settings, partial(reconcile_unless_busy, ctx),
                                   task="subscriptions")
    return [summary for summary in results_or_raise(outcomes) if summary is not None]


def delete_subscriptions(ctx: WebhookContext, connection: str | None = None) -> list[str]:
    """Delete this connection's subscriptions in BC and their rows; the entity sets deleted."""
    conn = ctx.settings.connection(connection)
    table = ctx.storage.table(TABLE_SUBSCRIPTIONS)
    deleted = []
    with Lease(ctx.storage, f"subscriptions:{conn.name}", ttl_seconds=LEASE_SECONDS) as acquired:
        if not acquired:
            raise SubscriptionRunBusy(f"connection {conn.name!r}: a subscription run is already in progress")
        bc = ctx.bc(conn.name)
        for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": conn.name}):
            if row.get("subscription_id"):
                try:
                    if str(row.get("entity_set", "")).startswith("event:"):  # a business event's
                        bc.delete(f"{subscriptions_url(bc)}({checked_guid(row['subscription_id'], 'id')})")
                    else:
                        api = api_of(row.get("resource", ""))
                        bc.delete(subscriptions_path(bc, api, row["subscription_id"]), "*")
                except (BCNotFound, InvalidKey):  # an id that is no key cannot exist in BC
                    pass
                ctx.subscription_directory.forget(row["subscription_id"])
                deleted.append(row["entity_set"])
            table.delete_entity(row["PartitionKey"], row["RowKey"])
    log.info("subscriptions %s: deleted %s", conn.name, deleted)
    return deleted
