"""The three webhook triggers (items, posted sales shipments, sales invoices) and how each change of an
entity is announced exactly once, whichever path saw it (webhook `created`/`updated`/`deleted`,
`collection`, sweep): claim the change in the dedupe table, queue its CloudEvent, then record it.

Which changes a trigger announces is the connection's `*_CHANGE_TYPES`; a change it does not
announce is still recorded, so that a later change is judged against it. A set where BC keeps drafts
beside posted documents (`draft`: sales invoices) announces a document as `created` when it is first
seen posted, whatever BC's change type said, and its drafts only as `drafted` (docs/architecture.md).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.events import EventPublisher, cloud_event
from connector.settings import (
    QUEUE_ITEMS,
    QUEUE_SALES_INVOICES,
    QUEUE_SALES_SHIPMENTS,
    ConnectionSettings,
)
from connector.webhooks.dedupe import Change, Claims, DedupeLog, DedupeScope, Recorded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    """What one trigger watches in BC (`entity_set`), the events it emits (`bc.<entity>.<change>`),
    where, which children ride along (`children`, expanded when the connection's `option` is on) and
    which connection setting lists the changes it announces (`changes`)."""

    entity_set: str
    entity: str
    queue: str
    children: str
    option: str  # the ConnectionSettings flag that turns the children on
    changes: str  # the ConnectionSettings field of the change types announced
    draft: tuple[str, str] | None = None  # (field, value) of a draft where BC mixes drafts and posted

    def is_draft(self, entity: Mapping[str, Any]) -> bool:
        return self.draft is not None and entity.get(self.draft[0]) == self.draft[1]

    def needs(self, conn: ConnectionSettings, change: str) -> bool:
        """Must a notification of `change` be read? Yes when it is announced, and for a set with
        drafts an `updated` one always (posting a draft is an update under the same id)."""
        return self.announces(conn, change) or (self.draft is not None and change == "updated")

    def expand(self, conn: ConnectionSettings) -> dict[str, str]:
        """The `$expand` query parameter for this connection (empty when the option is off)."""
        return {"$expand": self.children} if getattr(conn, self.option) else {}

    def announces(self, conn: ConnectionSettings, change: str) -> bool:
        return change in getattr(conn, self.changes)

    def event_type(self, change: str) -> str:
        return f"bc.{self.entity}.{change}"


TRIGGERS: tuple[Trigger, ...] = (
    Trigger("items", "item", QUEUE_ITEMS, "itemVariants", "pull_item_variants", "item_change_types"),
    Trigger("salesShipments", "salesShipment", QUEUE_SALES_SHIPMENTS, "salesShipmentLines",
            "pull_sales_shipment_lines", "sales_shipment_change_types"),
    Trigger("salesInvoices", "salesInvoice", QUEUE_SALES_INVOICES, "salesInvoiceLines",
            "pull_sales_invoice_lines", "sales_invoice_change_types", draft=("status", "Draft")),
)
BY_ENTITY_SET: dict[str, Trigger] = {t.entity_set: t for t in TRIGGERS}


@dataclass
class EmitCount:
    """What an emitting pass did: events queued, entities skipped (already announced, a change not
    announced, or being announced by another runner), entities that no longer exist, and the ids
    among the skipped that another runner's live claim holds (`busy`: not announced yet, and maybe
    never by that runner)."""

    emitted: int = 0
    skipped: int = 0
    gone: int = 0
    busy: frozenset[str] = field(default_factory=frozenset)

    def add(self, other: EmitCount) -> None:
        self.emitted += other.emitted
        self.skipped += other.skipped
        self.gone += other.gone
        self.busy |= other.busy


def change_event(trigger: Trigger, change: str, connection: str, company_id: str,
                 entity: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent of a created, updated or drafted entity. A creation's id depends only on the
    entity, an update's on the entity and its `lastModifiedDateTime`, so every path that announces
    the same change (webhook, sweep, business event) produces the same event id."""
    parts = [trigger.entity_set, str(entity["id"]).lower()]
    if change == "updated":
        parts.append(str(entity.get("lastModifiedDateTime", "")))
    elif change == "drafted":
        parts.append(change)
    return cloud_event(event_type=trigger.event_type(change), connection=connection,
                       company_id=company_id, entity=entity, id_parts=parts)


def deleted_event(trigger: Trigger, connection: str, company_id: str, entity_id: str,
                  recorded: Recorded, time: str | None) -> dict[str, Any]:
    """The CloudEvent of a deleted entity: its id, and the number last seen when there is one."""
    data = {"id": entity_id} | ({"number": recorded.number} if recorded.number else {})
    event = cloud_event(event_type=trigger.event_type("deleted"), connection=connection,
                        company_id=company_id, entity=data, id_parts=[trigger.entity_set, entity_id])
    return event | {"time": time}


def seen(entity: dict[str, Any], trigger: Trigger | None = None) -> dict[str, str]:
    """What the dedupe row keeps of an entity read (and whether it was a draft)."""
    values = {"modified": str(entity.get("lastModifiedDateTime") or ""),
              "number": str(entity.get("number") or "")}
    if trigger is not None and trigger.draft is not None:
        values["draft"] = "1" if trigger.is_draft(entity) else ""
    return values


def change_of(trigger: Trigger, recorded: Recorded, entity: Mapping[str, Any]) -> str | None:
    """The change an entity read announces, given what its row recorded (None: nothing to announce).
    Where BC mixes drafts and posted documents, a document first seen posted (no row, or a draft's
    row) is `created`, a new draft `drafted`, a draft's later changes nothing."""
    if trigger.draft is None:
        return recorded.change
    if trigger.is_draft(entity):
        return "drafted" if recorded.new else None
    return "created" if recorded.new or recorded.draft else recorded.change


def announce(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: Trigger,
             conn: ConnectionSettings, entities: Iterable[dict[str, Any]], owner: str,
             absent: Change = "created") -> EmitCount:
    """Announce every entity read whose change was not announced yet (without a row: `absent`, BC's
    change type when a notification said it, else created; newer than recorded: updated), then
    record them."""
    by_id = {str(e["id"]).lower(): e for e in entities if e.get("id")}
    modified = {i: str(e.get("lastModifiedDateTime") or "") for i, e in by_id.items()}
    claims = dedupe.claim(scope, list(by_id), owner, modified, absent=absent)
    count = publish_claimed(dedupe, events, scope, trigger, conn, claims,
                            [by_id[i] for i in by_id if i in claims.won])
    count.skipped += len(by_id) - len(claims.won)
    count.busy = claims.busy
    return count


def publish_claimed(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: Trigger,
                    conn: ConnectionSettings, claims: Claims, entities: list[dict[str, Any]],
                    gone: Iterable[str] = ()) -> EmitCount:
    """Queue the events of claimed entities read (the changes the trigger announces) and record them
    (and the vanished ones) afterwards, so a crash in between re-emits (same event id) rather than
    loses an event."""
    by_id = {str(e["id"]).lower(): e for e in entities}
    changes = {i: change_of(trigger, claims.recorded[i], e) for i, e in by_id.items()}
    announced = [i for i in by_id if changes[i] and trigger.announces(conn, changes[i])]
    quiet = [i for i in by_id if i not in announced]
    events.publish(trigger.queue, [change_event(trigger, changes[i] or "", scope.connection,
                                                scope.company_id, by_id[i]) for i in announced])
    dedupe.settle(scope, announced, "emitted", values={i: seen(by_id[i], trigger) for i in announced})
    dedupe.settle(scope, quiet, "known", values={i: seen(by_id[i], trigger) for i in quiet})
    gone = list(gone)
    dedupe.settle(scope, gone, "gone")
    if by_id or gone:
        log.info("%s %s/%s: %d event(s) queued, %d change(s) not announced, %d gone", trigger.entity_set,
                 scope.connection, scope.company_id, len(announced), len(quiet), len(gone))
    return EmitCount(emitted=len(announced), skipped=len(quiet), gone=len(gone))


def announce_deleted(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: Trigger,
                     conn: ConnectionSettings, deleted: Mapping[str, str | None], owner: str) -> EmitCount:
    """Announce deleted entities (id → the notification's time) not announced as deleted yet, then
    record them as gone (the number kept until the marker expires)."""
    claims = dedupe.claim(scope, list(deleted), owner, deleting=True)
    won = [i for i in deleted if i in claims.won]
    queued = [deleted_event(trigger, scope.connection, scope.company_id, i, claims.recorded[i], deleted[i])
              for i in won if trigger.announces(conn, "deleted")
              and (not claims.recorded[i].draft or trigger.announces(conn, "drafted"))]
    events.publish(trigger.queue, queued)
    dedupe.settle(scope, won, "gone", values={i: {"number": claims.recorded[i].number} for i in won})
    if won:
        log.info("%s %s/%s: %d deleted event(s) queued", trigger.entity_set, scope.connection,
                 scope.company_id, len(queued))
    return EmitCount(emitted=len(queued), skipped=len(deleted) - len(queued), busy=claims.busy)
