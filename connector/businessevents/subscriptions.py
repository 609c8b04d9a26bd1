"""Business-event subscriptions (`api/microsoft/runtime/v1.0/externaleventsubscriptions`) kept in step
with the triggers, per connection and company, by the renewal run: list BC's, create the missing ones,
re-create the ones BC switched off (`subscriptionState` not Active, e.g. after repeated failed
deliveries) or whose clientState came from a key no longer first, delete this connection's ones no
trigger wants. They have no expiry. One row each in `bcsubscriptions` (`<companyId>:event:<name>`),
shown on /api/status; a 403 (BC's permission set "Ext. Events - Subscr" missing) is recorded there as
`forbidden` with the fix, and the run goes on with the webhooks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from azure.data.tables import TableClient, UpdateMode

from connector.bc.client import BCClient
from connector.bc.errors import BCError, BCNotFound
from connector.bc.keys import checked_guid
from connector.bc.timestamps import iso, utc_now
from connector.businessevents.catalog import (
    ACTIVE,
    EVENTS,
    EVENTS_APP_ID,
    BusinessEvent,
    event_client_state,
    wanted_events,
)
from connector.settings import ConnectionSettings, Settings
from connector.webhooks.client_state import key_id

log = logging.getLogger(__name__)

FORBIDDEN_FIX = ("assign BC's permission set 'Ext. Events - Subscr' (and read on the documents) to the "
                 "connection's user or app; the webhooks and the sweep carry on meanwhile")


def subscriptions_url(bc: BCClient) -> str:
    return f"{bc.environment_root}/api/microsoft/runtime/v1.0/externaleventsubscriptions"


def event_url(settings: Settings, connection: str) -> str:
    """The notificationUrl of a connection's business events."""
    return f"{settings.business_event_url}?{urlencode({'connection': connection})}"


@dataclass
class EventsSummary:
    """What one run did, by event name."""

    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    forbidden: bool = False
    lost: list[dict[str, str]] = field(default_factory=list)  # BC switched off or removed; re-made

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "recreated": self.recreated, "unchanged": self.unchanged,
                "deleted": self.deleted, "failed": self.failed, "forbidden": self.forbidden}


def plan_event(remote: dict[str, Any] | None, row: dict[str, Any] | None, current_key: str,
               url: str) -> str:
    """`create` (none in BC), `recreate` (switched off, made for another URL, or signed with a key no
    longer first) or `keep`."""
    if remote is None:
        return "create"
    if remote.get("subscriptionState") != ACTIVE or remote.get("notificationUrl") != url \
            or (row or {}).get("client_state_key") != current_key:
        return "recreate"
    return "keep"


class EventSubscriptionRun:
    """One reconcile of one connection's company."""

    def __init__(self, bc: BCClient, table: TableClient, settings: Settings, conn: ConnectionSettings,
                 company_id: str):
        self.bc = bc
        self.table = table
        self.conn = conn
        self.company_id = checked_guid(company_id, "companyId").lower()
        self.url = event_url(settings, conn.name)
        self.keys = settings.token_encryption_keys
        self.key_id = key_id(self.keys[0])
        self.collection = subscriptions_url(bc)
        self.listed: dict[str, dict[str, Any]] = {}  # every subscription BC listed, by id (remote())

    def row_key(self, event: BusinessEvent) -> str:
        return f"{self.company_id}:event:{event.name}"

    def save(self, event: BusinessEvent, status: str, sub: dict[str, Any] | None = None,
             error: str = "") -> None:
        sub = sub or {}
        self.table.upsert_entity({
            "PartitionKey": self.conn.name, "RowKey": self.row_key(event), "company_id": self.company_id,
            "entity_set": f"event:{event.name}", "resource": f"businessEvent {event.name}",
            "subscription_id": sub.get("id", ""), "status": status, "last_error": error, "expires_at": "",
            "client_state_key": self.key_id if sub else "", "notification_url": self.url,
            "updated_at": iso(utc_now())}, mode=UpdateMode.MERGE)

    def rows(self) -> dict[str, dict[str, Any]]:
        prefix = f"{self.company_id}:event:"
        found = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": self.conn.name})
        return {r["RowKey"][len(prefix):]: dict(r) for r in found if r["RowKey"].startswith(prefix)}

    def remote(self, known_ids: set[str]) -> dict[str, dict[str, Any]]:
        """This connection's subscriptions in this company, by event name: those notifying its URL, and
        those its rows made for an earlier URL (another port or host; re-created). Extra duplicates are
        listed under `<name>#<id>` so they are deleted."""
        mine: dict[str, dict[str, Any]] = {}
        self.listed = {}
        for sub in self.bc.iter_entities(self.collection):
            self.listed[str(sub.get("id", ""))] = sub
            company = str(sub.get("companyId", "")).lower()
            ours = sub.get("notificationUrl") == self.url or str(sub.get("id", "")).lower() in known_ids
            if not ours or company != self.company_id:
                continue
            name = str(sub.get("eventName", ""))
            mine[name if name not in mine else f"{name}#{sub.get('id')}"] = sub
        return mine

    def create(self, event: BusinessEvent) -> dict[str, Any]:
        body = {"companyId": self.company_id, "eventName": event.name, "eventVersion": "1.0",
                "appId": EVENTS_APP_ID, "notificationUrl": self.url,
                "clientState": event_client_state(self.keys[0], self.conn.name, self.company_id, event.name)}
        return self.bc.post(self.collection, body)

    def delete(self, sub: dict[str, Any]) -> None:
        try:
            self.bc.delete(f"{self.collection}({checked_guid(str(sub.get('id', '')), 'subscription id')})",
                           str(sub.get("@odata.etag") or "*"))
        except BCNotFound:
            pass

    @staticmethod
    def _lost(summary: EventsSummary, event: BusinessEvent, subscription_id: str, why: str) -> None:
        summary.lost.append({"eventName": event.name, "subscriptionId": subscription_id, "why": why})

    def run(self) -> EventsSummary:
        summary = EventsSummary()
        wanted = wanted_events(self.conn)
        rows = self.rows()
        try:
            remote = self.remote({str(r.get("subscription_id", "")).lower() for r in rows.values()} - {""})
        except BCError as exc:
            if exc.status == 403 and not wanted:
                return summary
            if exc.status == 403:
                summary.forbidden = True
                for event in wanted:
                    self.save(event, "forbidden", error=f"{exc} — {FORBIDDEN_FIX}")
                log.error("business events %s: BC refused (403): %s", self.conn.name, FORBIDDEN_FIX)
                return summary
            raise
        for event in wanted:
            moved = self.listed.get(str(rows.get(event.name, {}).get("subscription_id") or ""))
            if moved is not None and moved.get("notificationUrl") != self.url:
                # ours (its id is on our row) but made for another URL (another PORT, a moved app)
                try:
                    self.delete(moved)
                except BCError as exc:  # cleanup: the next run tries again
                    log.warning("business events %s: %s for an old URL not deleted: %s", self.conn.name,
                                event.name, exc)
                log.info("business events %s: %s notified %s; deleted, made again for %s", self.conn.name,
                         event.name, moved.get("notificationUrl"), self.url)
            current = remote.pop(event.name, None)
            row = rows.get(event.name) or {}
            action = plan_event(current, row, self.key_id, self.url)
            if current is not None and current.get("subscriptionState") != ACTIVE:
                self._lost(summary, event, str(current.get("id", "")),
                           f"BC switched it off (subscriptionState {current.get('subscriptionState')!r})")
            elif current is None and row.get("subscription_id"):
                self._lost(summary, event, str(row["subscription_id"]), "it is gone from BC")
            try:
                if action == "keep":
                    summary.unchanged.append(event.name)
                    self.save(event, "active", current)
                    continue
                if current is not None:
                    self.delete(current)
                self.save(event, "active", self.create(event))
                (summary.created if action == "create" else summary.recreated).append(event.name)
            except BCError as exc:
                summary.failed.append({"eventName": event.name, "error": str(exc)})
                self.save(event, "forbidden" if exc.status == 403 else "failed", error=str(exc))
        for name, sub in remote.items():  # not wanted any more (trigger off, setting off) or duplicates
            self.delete(sub)
            summary.deleted.append(name.split("#", 1)[0])
        for event in EVENTS:
            if event not in wanted and event.name in rows:
                self.table.delete_entity(self.conn.name, self.row_key(event))
        log.info("business events %s: %s", self.conn.name, summary.as_dict())
        return summary


def reconcile_events(bc: BCClient, table: TableClient, settings: Settings, conn: ConnectionSettings,
                     company_id: str) -> EventsSummary | None:
    """Keep this connection's business-event subscriptions in step; None (no BC call) when
    BUSINESS_EVENTS is off and no row says one was made."""
    run = EventSubscriptionRun(bc, table, settings, conn, company_id)
    if not conn.business_events and not run.rows():
        return None
    return run.run()
