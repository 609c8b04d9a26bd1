"""How each change of an entity a declared trigger watches (`connector/declarations.py`) is announced
exactly once, whichever path saw it (webhook `created`/`updated`/`deleted`, `collection`, sweep):
hold the change in the dedupe table, queue its CloudEvent, then record it.

A change the trigger does not announce (its change types; an update that left every watched field
as it was) is still recorded, so that a later change is judged against it. A set where BC keeps drafts
beside posted documents (the trigger's `draft`: sales invoices) announces a document as `created` when
it is first seen posted, whatever BC's change type said, and its drafts only as `drafted`
(docs/architecture.md, "Posted documents").
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.bc.client import BCClient
from connector.declarations import WatchedEntitySet
from connector.events import EventPublisher, cloud_event
from connector.webhooks.dedupe import Change, DedupeLog, DedupeScope, Holds, Recorded

log = logging.getLogger(__name__)


def collection_path(bc: BCClient, trigger: WatchedEntitySet, company_id: str, key: str | None = None) -> str:
    """The URL path of a trigger's entity set in a company (one entity with `key`): relative to the
    standard API, absolute on BC's host for a custom API page."""
    return bc.api_path(trigger.api, company_id, trigger.entity_set + (f"({key})" if key else ""))


@dataclass
class EmitCount:
    """What an emitting pass did: events queued, entities skipped (already announced, a change not
    announced, or being announced by another runner), entities that no longer exist, and the ids
    among the skipped that another runner's live hold holds (`busy`: not announced yet, and maybe
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


def change_event(trigger: WatchedEntitySet, change: str, connection: str, company_id: str,
                 entity: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent of a created, updated or drafted entity. A creation's id depends only on the
    entity, an update's on the entity and its `lastModifiedDateTime`, so every path that announces
    the same change (webhook, sweep, business event) produces the same event id."""
    parts = [trigger.key, str(entity["id"]).lower()]
    if change == "updated":
        parts.append(str(entity.get("lastModifiedDateTime", "")))
    elif change == "drafted":
        parts.append(change)
    return cloud_event(event_type=trigger.event_type(change), connection=connection,
                       company_id=company_id, entity=entity, id_parts=parts)


def deleted_event(trigger: WatchedEntitySet, connection: str, company_id: str, entity_id: str,
                  recorded: Recorded, time: str | None) -> dict[str, Any]:
    """The CloudEvent of a deleted entity: its id, and the number last seen when there is one."""
    data = {"id": entity_id} | ({"number": recorded.number} if recorded.number else {})
    event = cloud_event(event_type=trigger.event_type("deleted"), connection=connection,
                        company_id=company_id, entity=data, id_parts=[trigger.key, entity_id])
    return event | {"time": time}


def seen(trigger: WatchedEntitySet, entity: dict[str, Any]) -> dict[str, str]:
    """What the dedupe row keeps of an entity read: its `lastModifiedDateTime`, number, and a digest of
    the watched fields (when the trigger watches some)."""
    row = {"modified": str(entity.get("lastModifiedDateTime") or ""),
           "number": str(entity.get(trigger.number_field) or "") if trigger.number_field else ""}
    if trigger.watch:
        row["digest"] = trigger.digest(entity)
    if trigger.draft is not None:
        row["draft"] = "1" if trigger.is_draft(entity) else ""
    return row


def change_of(trigger: WatchedEntitySet, recorded: Recorded, entity: Mapping[str, Any]) -> str | None:
    """The change an entity read announces, given what its row recorded (None: nothing to announce).
    Where BC mixes drafts and posted documents, a document first seen posted (no row, or a draft's
    row) is `created`, a new draft `drafted`, a draft's later changes nothing."""
    if trigger.draft is None:
        return recorded.change
    if trigger.is_draft(entity):
        return "drafted" if recorded.new else None
    return "created" if recorded.new or recorded.draft else recorded.change


def announced(trigger: WatchedEntitySet, recorded: Recorded, entity: dict[str, Any]) -> str | None:
    """The change the trigger announces for this hold (None: none). Its change types say; an update of
    a trigger with watched fields only when their digest differs from the recorded one (none
    recorded: yes); the draft rule first (`change_of`)."""
    change = change_of(trigger, recorded, entity)
    if change is None or not trigger.announces(change):
        return None
    if change == "updated" and trigger.watch and recorded.digest \
            and trigger.digest(entity) == recorded.digest:
        return None
    return change


def announce(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: WatchedEntitySet,
             entities: Iterable[dict[str, Any]], owner: str, absent: Change = "created") -> EmitCount:
    """Announce every entity read whose change was not announced yet (without a row: `absent`, BC's
    change type when a notification said it, else created; newer than recorded: updated), then
    record them."""
    by_id = {str(e["id"]).lower(): e for e in entities if e.get("id")}
    modified = {i: str(e.get("lastModifiedDateTime") or "") for i, e in by_id.items()}
    holds = dedupe.hold(scope, list(by_id), owner, modified, absent=absent)
    count = publish_held(dedupe, events, scope, trigger, holds,
                         [by_id[i] for i in by_id if i in holds.won])
    count.skipped += len(by_id) - len(holds.won)
    count.busy = holds.busy
    return count


def publish_held(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: WatchedEntitySet,
                 holds: Holds, entities: list[dict[str, Any]],
                 gone: Iterable[str] = ()) -> EmitCount:
    """Queue the events of claimed entities read (the changes the trigger announces) and record them
    (and the vanished ones) afterwards, so a crash in between re-emits (same event id) rather than
    loses an event."""
    by_id = {str(e["id"]).lower(): e for e in entities}
    changes = {i: announced(trigger, holds.recorded[i], e) for i, e in by_id.items()}
    loud = [i for i in by_id if changes[i]]
    quiet = [i for i in by_id if i not in loud]
    events.publish(trigger.queue, [change_event(trigger, changes[i] or "", scope.connection,
                                                scope.company_id, by_id[i]) for i in loud])
    dedupe.settle(scope, loud, "emitted", values={i: seen(trigger, by_id[i]) for i in loud})
    dedupe.settle(scope, quiet, "known", values={i: seen(trigger, by_id[i]) for i in quiet})
    gone = list(gone)
    dedupe.settle(scope, gone, "gone")
    if by_id or gone:
        log.info("%s %s/%s: %d event(s) queued, %d change(s) not announced, %d gone", trigger.key,
                 scope.connection, scope.company_id, len(loud), len(quiet), len(gone))
    return EmitCount(emitted=len(loud), skipped=len(quiet), gone=len(gone))


def announce_deleted(dedupe: DedupeLog, events: EventPublisher, scope: DedupeScope, trigger: WatchedEntitySet,
                     deleted: Mapping[str, str | None], owner: str) -> EmitCount:
    """Announce deleted entities (id → the notification's time) not announced as deleted yet, then
    record them as gone (the number kept until the marker expires)."""
    holds = dedupe.hold(scope, list(deleted), owner, deleting=True)
    won = [i for i in deleted if i in holds.won]
    queued = [deleted_event(trigger, scope.connection, scope.company_id, i, holds.recorded[i], deleted[i])
              for i in won if trigger.announces("deleted")
              and (not holds.recorded[i].draft or trigger.announces("drafted"))]
    events.publish(trigger.queue, queued)
    dedupe.settle(scope, won, "gone", values={i: {"number": holds.recorded[i].number} for i in won})
    if won:
        log.info("%s %s/%s: %d deleted event(s) queued", trigger.key, scope.connection,
                 scope.company_id, len(queued))
    return EmitCount(emitted=len(queued), skipped=len(deleted) - len(queued), busy=holds.busy)
