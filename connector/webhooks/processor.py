"""The `bc-notifications` processor (queue trigger): announce what the notifications say changed.

`created` → hold, GET the entity (children expanded per option) and announce it; `updated` → GET the
entity and announce it if its `lastModifiedDateTime` is newer than the one recorded (BC merges and
repeats notifications); `posted` (a business event, `connector/businessevents/`) → the same, an entity
never seen being created; `deleted` → announce the id (the entity is gone: BC keeps no tombstones);
`collection` → read the resource's `lastModifiedDateTime gt` window page by page and announce what was
never announced or changed since (a bare URL, sent when a delete was among the changes, runs the
trigger's sweep). Only the filter is taken from the resource: the URL that is called is built from the
subscription's company and entity set, so a notification can never send the BC token elsewhere.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

from azure.core.exceptions import AzureError

from connector.bc.errors import BCError, BCNotFound, TokenUnavailable
from connector.bc.keys import is_guid
from connector.bc.timestamps import bc_datetime, parse_iso
from connector.declarations import WatchedEntitySet
from connector.events import cloud_event
from connector.settings import QUEUE_NOTIFICATIONS, QUEUE_NOTIFICATIONS_POISON, Settings, UnknownConnection
from connector.signing import queue_signer
from connector.storage import kept_text
from connector.telemetry import in_this_trace
from connector.webhooks import sweep
from connector.webhooks.context import WebhookContext
from connector.webhooks.dedupe import Change, DedupeScope
from connector.webhooks.notifications import NotificationBatch, read_batch
from connector.webhooks.triggers import (
    EmitCount,
    announce,
    announce_deleted,
    collection_path,
    publish_held,
)

log = logging.getLogger(__name__)

_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_ENTITY_KEY_RE = re.compile(rf"\(\s*'?({_GUID})'?\s*\)\s*/?\s*$")
_SINCE_RE = re.compile(  # `lastDateTimeModified` is the docs' typo of the same field
    r"^\s*(?:lastModifiedDateTime|lastDateTimeModified)\s+gt\s+'?([0-9][0-9T:.+\-Z]*)'?\s*$", re.IGNORECASE)


def entity_id(resource: str) -> str | None:
    """The GUID key at the end of a single-entity resource (`.../items(<guid>)`, leading slash or
    not, absolute or relative), lower-case; None if there is none."""
    match = _ENTITY_KEY_RE.search(unquote(resource.split("?", 1)[0]))
    return match.group(1).lower() if match else None


def collection_since(resource: str) -> datetime | None:
    """The `lastModifiedDateTime gt <t>` of a collection resource; None (a bare URL, or a filter
    this code does not understand) means the sweep must cover it."""
    _, _, query = resource.partition("?")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) == "$filter":
            match = _SINCE_RE.match(unquote(value))
            if match:
                try:
                    return parse_iso(match.group(1))
                except ValueError:
                    return None
    return None


@dataclass
class Plan:
    """What a message asks for, by trigger scope: entity ids per change (`deleted`: id → the
    notification's time, in order), collection resources, and what was skipped and why."""

    created: dict[DedupeScope, list[str]] = field(default_factory=dict)
    updated: dict[DedupeScope, list[str]] = field(default_factory=dict)
    posted: dict[DedupeScope, list[str]] = field(default_factory=dict)  # from BC's business events
    deleted: dict[DedupeScope, dict[str, str | None]] = field(default_factory=dict)
    verbs: dict[tuple[DedupeScope, str], dict[str, str]] = field(default_factory=dict)  # id → BC's time
    collections: list[tuple[DedupeScope, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def trigger_of(settings: Settings, group: DedupeScope) -> WatchedEntitySet | None:
    """The trigger a note's scope names, if its connection (still) declares it."""
    conn = settings.connections.get(group.connection)
    return conn.trigger(group.entity_set) if conn is not None else None


def plan(notes: list[dict[str, Any]], settings: Settings) -> Plan:
    """Group a message's notes by scope and change; each entity once per change."""
    result = Plan()
    for note in notes:
        group = DedupeScope(str(note.get("connection")), str(note.get("companyId")),
                            str(note.get("entitySet")))
        change = note.get("changeType")
        if group.connection not in settings.connections:
            result.skipped["unknown connection"] += 1
        elif trigger_of(settings, group) is None:
            result.skipped["unknown entity set"] += 1
        elif not is_guid(group.company_id):
            result.skipped["companyId not a GUID"] += 1
        elif change == "collection":
            result.collections.append((group, str(note.get("resource", ""))))
        elif isinstance(change, str) and change.startswith("verb:") and change[5:].isalpha():
            key = entity_id(str(note.get("resource", "")))
            if key is None:
                result.skipped["no entity key"] += 1
            else:
                result.verbs.setdefault((group, change[5:]), {})[key] = str(note.get("lastModifiedDateTime"))
        elif change in ("created", "updated", "deleted", "posted"):
            key = entity_id(str(note.get("resource", "")))
            if key is None:
                result.skipped["no entity key"] += 1
            elif change == "deleted":
                result.deleted.setdefault(group, {})[key] = note.get("lastModifiedDateTime")
            elif key not in (ids := getattr(result, change).setdefault(group, [])):
                ids.append(key)
        else:
            result.skipped[str(change)] += 1
    return result


def fetch_entities(ctx: WebhookContext, group: DedupeScope, ids: list[str]
                   ) -> tuple[list[dict[str, Any]], list[str], list[BCError]]:
    """GET each entity (children expanded per option) in parallel: those read, the ids that are
    gone (404) and the other failures."""
    trigger = _trigger(ctx, group)
    bc = ctx.bc(group.connection)
    params = trigger.params()

    def fetch(key: str) -> dict[str, Any] | BCError:
        try:
            return bc.get(collection_path(bc, trigger, group.company_id, key), params)
        except BCError as exc:
            return exc

    results = list(ctx.fetch_pool.map(in_this_trace(fetch), ids))
    return ([r for r in results if isinstance(r, dict)],
            [k for k, r in zip(ids, results, strict=True) if isinstance(r, BCNotFound)],
            [r for r in results if isinstance(r, BCError) and not isinstance(r, BCNotFound)])


def announce_created(ctx: WebhookContext, group: DedupeScope, ids: list[str], owner: str) -> EmitCount:
    """Hold, GET and announce created entities; a 404 is recorded as gone. Entities that were read
    are announced even when others failed; then the first error is raised so the queue retries (the
    holds let this owner carry on)."""
    trigger = _trigger(ctx, group)
    dedupe = ctx.dedupe
    holds = dedupe.hold(group, ids, owner)
    entities, gone, failures = fetch_entities(ctx, group, [i for i in ids if i in holds.won])
    count = publish_held(dedupe, ctx.events, group, trigger, holds, entities, gone=gone)
    count.skipped += len(ids) - len(holds.won)
    if failures:
        raise failures[0]
    return count


def announce_updated(ctx: WebhookContext, group: DedupeScope, ids: list[str], owner: str,
                     absent: Change = "updated") -> EmitCount:
    """GET updated entities and announce those whose `lastModifiedDateTime` is newer than recorded
    (BC's merged and repeated notifications, a change already seen by the sweep, give nothing new);
    one the connector has no row for existed before it watched: `updated`, as BC says.
    A 404 is left to the `deleted` notification that follows it."""
    entities, gone, failures = fetch_entities(ctx, group, ids)
    dedupe = ctx.dedupe
    count = announce(dedupe, ctx.events, group, _trigger(ctx, group), entities, owner, absent=absent)
    count.skipped += len(gone)
    if failures:
        raise failures[0]
    return count


def announce_verb(ctx: WebhookContext, group: DedupeScope, verb: str, times: dict[str, str]) -> EmitCount:
    """A business event's verb (`bc.<entity>.<verb>`, e.g. a customer blocked): GET each entity and
    queue its event, one per BC notification (its id from the entity, the verb and BC's timestamp, so
    BC's retry of the same notification gives the same id). Nothing is claimed: no other channel
    sees these; a 404 is skipped."""
    trigger = _trigger(ctx, group)
    if not trigger.announces(verb):
        return EmitCount(skipped=len(times))
    entities, gone, failures = fetch_entities(ctx, group, list(times))
    events = [cloud_event(event_type=trigger.event_type(verb), connection=group.connection,
                          company_id=group.company_id, entity=e,
                          id_parts=[trigger.key, key, verb, times.get(key, "")])
              for e in entities if (key := str(e["id"]).lower())]
    ctx.events.publish(trigger.queue, events)
    if failures:
        raise failures[0]
    return EmitCount(emitted=len(events), gone=len(gone))


def announce_gone(ctx: WebhookContext, group: DedupeScope, deleted: dict[str, str | None],
                  owner: str) -> EmitCount:
    """Announce deleted entities once BC answers 404 for each: a `deleted` that BC contradicts (the
    entity is still there: a forged or stale message) is not announced. Other failures raise after
    the confirmed ones are announced (the queue retries)."""
    entities, gone, failures = fetch_entities(ctx, group, list(deleted))
    if entities:
        log.warning("notifications %s: %d `deleted` change(s) not announced: BC still has the entity",
                    group.connection, len(entities))
    count = announce_deleted(ctx.dedupe, ctx.events, group, _trigger(ctx, group),
                             {key: deleted[key] for key in gone}, owner)
    count.skipped += len(entities)
    if failures:
        raise failures[0]
    return count


def announce_collection(ctx: WebhookContext, group: DedupeScope, resource: str, owner: str) -> EmitCount:
    """Read a filtered `collection` window page by page and announce the unannounced. A bare URL
    (BC sends one when a delete was among the changes) runs the trigger's sweep instead of a full
    re-read, which could outlast the functionTimeout and restart from page 1 on every retry: what
    was created still carries a `lastModifiedDateTime` past the sweep's cursor, and the sweep reads
    within its time budget and checkpoints. If a sweep of the connection is running, it covers it."""
    trigger = _trigger(ctx, group)
    since = collection_since(resource)
    if since is None:
        log.info("notifications %s: sweeping %s (collection without a filter)", group.connection,
                 trigger.key)
        results = sweep.sweep(ctx, group.connection, (trigger,))
        return EmitCount(emitted=sum(r.emitted for r in results), skipped=sum(r.skipped for r in results))
    bc = ctx.bc(group.connection)
    dedupe = ctx.dedupe
    params = {**trigger.params(), "$filter": f"lastModifiedDateTime gt {bc_datetime(since)}"}
    count = EmitCount()
    for page in bc.iter_pages(collection_path(bc, trigger, group.company_id), params, sweep.PAGE_SIZE):
        count.add(announce(dedupe, ctx.events, group, trigger, page, owner))
    return count


def _trigger(ctx: WebhookContext, group: DedupeScope) -> WatchedEntitySet:
    trigger = trigger_of(ctx.settings, group)
    if trigger is None:  # plan() kept only declared ones
        raise UnknownConnection(group.connection, tuple(ctx.settings.connections))
    return trigger


def read_message(ctx: WebhookContext, text: str, owner: str) -> NotificationBatch:
    """The typed batch of one `bc-notifications` message's text (the only place the text is read)."""
    return read_batch(queue_signer(ctx.settings.token_encryption_keys, QUEUE_NOTIFICATIONS), text, owner)


def process_message(ctx: WebhookContext, text: str, owner: str) -> EmitCount:
    """Process one `bc-notifications` message's text (`owner`: its queue message id)."""
    return process_batch(ctx, read_message(ctx, text, owner))


def process_batch(ctx: WebhookContext, batch: NotificationBatch) -> EmitCount:
    """Process one `bc-notifications` batch; its `message_id` lets a retry reclaim its own holds.
    Raises the first failure after doing everything else, so the queue retries. It runs in the
    trace of the webhook request that queued it."""
    with ctx.telemetry.consume(f"process {QUEUE_NOTIFICATIONS}", batch.traceparent,
                               message_id=batch.message_id):
        return _process_batch(ctx, batch)


def _process_batch(ctx: WebhookContext, batch: NotificationBatch) -> EmitCount:
    owner = batch.message_id
    if batch.refused is not None:
        # kept, not dropped: whatever put it on the queue can be found from the copy
        ctx.storage.sender(QUEUE_NOTIFICATIONS_POISON).send(kept_text(batch.text))
        log.error("notifications: message %s refused: %s; kept on %s", owner, batch.refused,
                  QUEUE_NOTIFICATIONS_POISON)
        return EmitCount()
    asked = plan(list(batch.notes), ctx.settings)
    if asked.skipped:
        log.warning("notifications: skipped %s", dict(asked.skipped))
    total = EmitCount()
    errors: list[Exception] = []
    # created before updated before deleted: an entity never announced is not announced as deleted
    steps = [partial(announce_created, ctx, g, ids, owner) for g, ids in asked.created.items()]
    steps += [partial(announce_updated, ctx, g, ids, owner) for g, ids in asked.updated.items()]
    # a business event's posting: read like an update, and new to the connector means created
    steps += [partial(announce_updated, ctx, g, ids, owner, "created") for g, ids in asked.posted.items()]
    steps += [partial(announce_verb, ctx, g, verb, times) for (g, verb), times in asked.verbs.items()]
    steps += [partial(announce_gone, ctx, g, ids, owner) for g, ids in asked.deleted.items()]
    steps += [partial(announce_collection, ctx, g, r, owner) for g, r in asked.collections]
    for step in steps:
        try:
            total.add(step())
        except UnknownConnection as exc:
            log.error("notifications: %s; dropped", exc)
        except (BCError, AzureError, TokenUnavailable) as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return total
