"""The three created-triggers (Receive Created Item / Sales Shipment / Sales Invoice) and how each
created entity is announced exactly once, whichever path saw it (webhook `created`, `collection`,
sweep): claim it in the dedupe table, queue its CloudEvent, then record it as emitted.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connector.events import (
    INVOICE_CREATED,
    ITEM_CREATED,
    SHIPMENT_CREATED,
    EventPublisher,
    cloud_event,
)
from connector.settings import (
    QUEUE_ITEMS,
    QUEUE_SALES_INVOICES,
    QUEUE_SALES_SHIPMENTS,
    ConnectionSettings,
)
from connector.webhooks.dedupe import DedupeLog, DedupeScope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreatedTrigger:
    """What one trigger watches in BC (`entity_set`), what it emits, where, and which children ride
    along (`children`, expanded when the connection's `option` is on)."""

    entity_set: str
    event_type: str
    queue: str
    children: str
    option: str  # the ConnectionSettings flag that turns the children on

    def expand(self, conn: ConnectionSettings) -> dict[str, str]:
        """The `$expand` query parameter for this connection (empty when the option is off)."""
        return {"$expand": self.children} if getattr(conn, self.option) else {}


TRIGGERS: tuple[CreatedTrigger, ...] = (
    CreatedTrigger("items", ITEM_CREATED, QUEUE_ITEMS, "itemVariants", "pull_item_variants"),
    CreatedTrigger("salesShipments", SHIPMENT_CREATED, QUEUE_SALES_SHIPMENTS, "salesShipmentLines",
                   "pull_sales_shipment_lines"),
    CreatedTrigger("salesInvoices", INVOICE_CREATED, QUEUE_SALES_INVOICES, "salesInvoiceLines",
                   "pull_sales_invoice_lines"),
)
BY_ENTITY_SET: dict[str, CreatedTrigger] = {t.entity_set: t for t in TRIGGERS}


@dataclass
class EmitCount:
    """What an emitting pass did: events queued, entities skipped (already announced or being
    announced by another runner), entities that no longer exist, and the ids among the skipped that
    another runner's live claim holds (`busy`: not announced yet, and maybe never by that runner)."""

    emitted: int = 0
    skipped: int = 0
    gone: int = 0
    busy: frozenset[str] = field(default_factory=frozenset)

    def add(self, other: EmitCount) -> None:
        self.emitted += other.emitted
        self.skipped += other.skipped
        self.gone += other.gone
        self.busy |= other.busy


def created_event(trigger: CreatedTrigger, connection: str, company_id: str,
                  entity: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent of a created entity; its id depends only on the entity, so every path that
    announces the same entity produces the same event id."""
    return cloud_event(event_type=trigger.event_type, connection=connection, company_id=company_id,
                       entity=entity, id_parts=[trigger.entity_set, str(entity["id"]).lower()])


def announce(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: CreatedTrigger,
             entities: Iterable[dict[str, Any]], owner: str) -> EmitCount:
    """Queue a created event for every entity not announced yet, then record them as emitted."""
    by_id = {str(e["id"]).lower(): e for e in entities if e.get("id")}
    claims = dedupe.claim(scope, list(by_id), owner)
    count = publish_claimed(dedupe, events, scope, trigger, [by_id[i] for i in by_id if i in claims.won],
                            skipped=len(by_id) - len(claims.won))
    count.busy = claims.busy
    return count


def publish_claimed(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope,
                    trigger: CreatedTrigger, entities: list[dict[str, Any]], *, skipped: int = 0,
                    gone: Iterable[str] = ()) -> EmitCount:
    """Queue the events of claimed entities and record them (and the vanished ones) afterwards, so
    a crash in between re-emits (same event id) rather than loses an event."""
    queued = [created_event(trigger, scope.connection, scope.company_id, e) for e in entities]
    events.publish(trigger.queue, queued)
    dedupe.settle(scope, [str(e["id"]).lower() for e in entities], "emitted")
    gone = list(gone)
    dedupe.settle(scope, gone, "gone")
    if queued or gone:
        log.info("%s %s/%s: %d created event(s) queued, %d skipped, %d gone", trigger.entity_set,
                 scope.connection, scope.company_id, len(queued), skipped, len(gone))
    return EmitCount(emitted=len(queued), skipped=skipped, gone=len(gone))
