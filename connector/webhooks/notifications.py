"""BC webhook notifications: the receiver acks fast, the processor does the work.

Receiver (`/api/webhooks/bc`): a `validationToken` is echoed at once (no storage or BC call, so the
handshake works before the subscription row exists). A notification body is checked element by
element (known subscriptionId, clientState compared in constant time); `created` and `collection`
elements are queued to `bc-notifications` in as few messages as fit (compact form: see
`pack_messages`), and `updated`/`deleted` ones when the trigger announces that change
(`*_CHANGE_TYPES`; otherwise they are counted and dropped).
BC deletes a subscription that gets any 4xx, so the receiver never answers one: a garbled,
oversized or forged body is logged and acked with 202; when storage fails it answers 503 at once (no
storage retries: BC's 30 s timeout would run out first, and BC retries a 503 anyway).

Processor (queue trigger): `created` → claim, GET the entity (children expanded per option) and
announce it; `updated` → GET the entity and announce it if its `lastModifiedDateTime` is newer than
the one recorded (BC merges and repeats notifications); `deleted` → announce the id (the entity is
gone: BC keeps no tombstones); `collection` → read the resource's `lastModifiedDateTime gt` window
page by page and announce what was never announced or changed since (a bare URL, sent when a delete
was among the changes, runs the trigger's sweep). Only the filter is taken from the resource: the
URL that is called is built from the subscription's company and entity set, so a notification can
never send the BC token elsewhere.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

from azure.core.exceptions import AzureError

from connector.bc.errors import BCError, BCNotFound, TokenUnavailable
from connector.bc.keys import is_guid
from connector.bc.timestamps import bc_datetime, parse_iso
from connector.runtime import Runtime
from connector.settings import QUEUE_NOTIFICATIONS, QUEUE_NOTIFICATIONS_POISON, Settings, UnknownConnection
from connector.storage import kept_text
from connector.telemetry import current_traceparent, in_this_trace
from connector.webhooks import sweep
from connector.webhooks.dedupe import DedupeScope
from connector.webhooks.directory import KnownSubscription
from connector.webhooks.triggers import (
    BY_ENTITY_SET,
    EmitCount,
    Trigger,
    announce,
    announce_deleted,
    publish_claimed,
)

log = logging.getLogger(__name__)

MAX_VALIDATION_TOKEN_CHARS = 1024  # BC's tokens are far shorter; a longer one is not echoed
QUEUE_MESSAGE_BUDGET = 48 * 1024  # bytes of JSON per queue message (the service allows 64 KiB)
PROCESSED_CHANGES = frozenset({"created", "collection"})
OPTIONAL_CHANGES = frozenset({"updated", "deleted"})  # queued when the trigger announces them
_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_ENTITY_KEY_RE = re.compile(rf"\(\s*'?({_GUID})'?\s*\)\s*/?\s*$")
_SINCE_RE = re.compile(  # `lastDateTimeModified` is the docs' typo of the same field
    r"^\s*(?:lastModifiedDateTime|lastDateTimeModified)\s+gt\s+'?([0-9][0-9T:.+\-Z]*)'?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    """What the receiver answers."""

    status: int
    body: str = ""
    mimetype: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=lambda: {"X-Content-Type-Options": "nosniff"})


ACCEPTED = Reply(202)


class GarbledNotification(ValueError):
    """A notification body that cannot be read; the message says why (never the body itself)."""


class OversizedNotification(GarbledNotification):
    """A body over WEBHOOK_MAX_BODY_BYTES: possibly a genuine bundle whose created entities are lost
    unless the sweep finds them, so it is logged as an error."""


# ---- receiver decisions ---------------------------------------------------------------------------

def handshake(params: Mapping[str, str]) -> Reply | None:
    """The reply to BC's validation request: exactly the token, 200, text/plain (nosniff). A token
    longer than BC ever sends is not echoed (202, empty): the endpoint reflects nothing large."""
    token = params.get("validationToken")
    if token is None:
        return None
    if len(token) > MAX_VALIDATION_TOKEN_CHARS:
        log.warning("webhook: validationToken of %d characters not echoed (more than %d)", len(token),
                    MAX_VALIDATION_TOKEN_CHARS)
        return ACCEPTED
    return Reply(200, token, "text/plain")


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The request's `Content-Length` (None when absent or unreadable)."""
    value = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_body(body: bytes, max_bytes: int) -> list[Any]:
    """The elements of `{"value": [...]}`; raises GarbledNotification."""
    if len(body) > max_bytes:
        raise OversizedNotification(f"body of {len(body)} bytes exceeds WEBHOOK_MAX_BODY_BYTES ({max_bytes})")
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GarbledNotification(f"body of {len(body)} bytes is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("value"), list):
        raise GarbledNotification('body is not {"value": [...]}')
    return parsed["value"]


@dataclass
class Screening:
    """The outcome of checking a body's elements."""

    queued: list[dict[str, Any]] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)


def subscription_ids(elements: list[Any]) -> set[str]:
    return {e["subscriptionId"] for e in elements
            if isinstance(e, dict) and isinstance(e.get("subscriptionId"), str)}


def screen(elements: list[Any], known: Mapping[str, KnownSubscription],
           wanted: Callable[[KnownSubscription, str], bool] = lambda sub, change: False) -> Screening:
    """Keep the elements of known subscriptions whose clientState matches and whose change a trigger
    needs (`wanted` says which `updated`/`deleted` ones), as queue notes (without the clientState)."""
    result = Screening()
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("resource"), str):
            result.refused["malformed"] += 1
            continue
        sub_id = element.get("subscriptionId")
        sub = known.get(sub_id) if isinstance(sub_id, str) else None
        if sub is None:
            result.refused["unknown subscription"] += 1
        elif not sub.accepts(element.get("clientState")):
            result.refused["clientState mismatch"] += 1
        elif element.get("changeType") in PROCESSED_CHANGES or (
                element.get("changeType") in OPTIONAL_CHANGES and wanted(sub, element["changeType"])):
            result.queued.append({
                "connection": sub.connection, "companyId": sub.company_id, "entitySet": sub.entity_set,
                "subscriptionId": sub.subscription_id, "changeType": element["changeType"],
                "resource": element["resource"], "lastModifiedDateTime": element.get("lastModifiedDateTime"),
            })
        elif element.get("changeType") in OPTIONAL_CHANGES:
            result.ignored[element["changeType"]] += 1
        else:
            result.refused["unknown changeType"] += 1
    return result


NOTE_SCOPE = ("connection", "companyId", "entitySet", "subscriptionId")  # once per message
NOTE_CHANGE = ("changeType", "resource", "lastModifiedDateTime")  # once per notification


def pack_messages(notes: list[dict[str, Any]], budget: int = QUEUE_MESSAGE_BUDGET,
                  traceparent: str | None = None) -> list[str]:
    """Queue message texts, each within `budget` bytes, in the compact form
    `{"traceparent", "subscriptions": [[connection, companyId, entitySet, subscriptionId]],
    "changes": [[index into subscriptions, changeType, resource, lastModifiedDateTime]]}`: a note's
    scope once per message, not once per note, so storage takes less than half the bytes and the ack
    comes sooner (`traceparent`: the receiving request's trace, which the processing joins)."""
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one, not one a note
    head = f'{{"traceparent":{encode(traceparent)},"subscriptions":[' if traceparent else '{"subscriptions":['
    frame = len(head) + len('],"changes":[]}')
    messages: list[str] = []
    scopes: dict[tuple[Any, ...], int] = {}
    scope_texts: list[str] = []
    changes: list[str] = []
    size = frame
    for note in notes:
        scope = tuple(note.get(k) for k in NOTE_SCOPE)
        while True:
            index = scopes.get(scope, len(scopes))
            scope_text = encode(list(scope)) if index == len(scopes) else ""
            text = encode([index, *(note.get(k) for k in NOTE_CHANGE)])
            length = _utf8_length(text) + 1 + (_utf8_length(scope_text) + 1 if scope_text else 0)
            if not changes or size + length <= budget:
                break
            messages.append(head + ",".join(scope_texts) + '],"changes":[' + ",".join(changes) + "]}")
            scopes, scope_texts, changes, size = {}, [], [], frame
        if scope_text:
            scopes[scope] = index
            scope_texts.append(scope_text)
        changes.append(text)
        size += length
    if changes:
        messages.append(head + ",".join(scope_texts) + '],"changes":[' + ",".join(changes) + "]}")
    return messages


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def receive_request(params: Mapping[str, str], headers: Mapping[str, str], read_body: Callable[[], bytes],
                    get_runtime: Callable[[], Runtime]) -> Reply:
    """Answer one request to the webhook endpoint, never with a 4xx or 500: a body declared larger
    than WEBHOOK_MAX_BODY_BYTES is not read (202), anything unexpected is logged and acked (202; the
    same body would fail again), a runtime that cannot start answers 503 (BC retries)."""
    reply = handshake(params)
    if reply is not None:
        return reply
    try:
        runtime = get_runtime()
    except Exception:
        log.exception("webhook: the connector cannot start; answered 503 so BC retries")
        return Reply(503, "not ready")
    try:
        declared = declared_length(headers)
        if declared is not None and declared > runtime.settings.webhook_max_body_bytes:
            log.error("webhook: Content-Length %d exceeds WEBHOOK_MAX_BODY_BYTES (%d); acknowledged "
                      "unread (the next sweep announces what it created)", declared,
                      runtime.settings.webhook_max_body_bytes)
            return ACCEPTED
        return receive(params, read_body(), lambda: runtime)
    except Exception:
        log.exception("webhook: unexpected failure; acknowledged, nothing processed")
        return ACCEPTED


def announced_change(settings: Settings, sub: KnownSubscription, change: str) -> bool:
    """Does the trigger of `sub` announce `change` for its connection?"""
    trigger = BY_ENTITY_SET.get(sub.entity_set)
    conn = settings.connections.get(sub.connection)
    return trigger is not None and conn is not None and trigger.announces(conn, change)


def receive(params: Mapping[str, str], body: bytes, get_runtime: Callable[[], Runtime]) -> Reply:
    """Answer one request to the webhook endpoint (handshake or notifications)."""
    reply = handshake(params)
    if reply is not None:
        return reply
    runtime = get_runtime()
    try:
        elements = parse_body(body, runtime.settings.webhook_max_body_bytes)
    except OversizedNotification as exc:
        log.error("webhook: %s; acknowledged and dropped unread (the next sweep announces what it "
                  "created)", exc)
        return ACCEPTED
    except GarbledNotification as exc:
        log.warning("webhook: %s; acknowledged, nothing processed", exc)
        return ACCEPTED
    try:
        screening = screen(elements, runtime.subscription_directory.find(subscription_ids(elements)),
                           partial(announced_change, runtime.settings))
        messages = pack_messages(screening.queued, traceparent=current_traceparent())
        sender = runtime.storage.sender(QUEUE_NOTIFICATIONS, retry_total=0)  # BC retries on a 503
        list(runtime.enqueue_pool.map(lambda text: sender.send(text, retries=0), messages))
    except AzureError as exc:
        log.error("webhook: storage unavailable (%s); answered 503 so BC retries", type(exc).__name__)
        return Reply(503, "storage unavailable")
    if screening.refused:
        log.warning("webhook: refused %s (not processed)", dict(screening.refused))
    log.info("webhook: %d element(s): %d queued in %d message(s), ignored %s", len(elements),
             len(screening.queued), len(messages), dict(screening.ignored))
    return ACCEPTED


# ---- processor decisions -------------------------------------------------------------------------

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


def parse_queued(text: str) -> list[dict[str, Any]]:
    """The notes of a `bc-notifications` message; raises ValueError if it is not one (also for text
    that is not UTF-8 or nested too deeply to parse)."""
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for undecodable bytes
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if isinstance(message, dict) and "changes" in message:
        return unpack_changes(message)
    notes = message.get("notifications") if isinstance(message, dict) else None  # before the compact form
    if not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes):
        raise ValueError("not a bc-notifications message")
    return notes


def unpack_changes(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The notes of a compact message (`pack_messages`); raises ValueError if it is malformed."""
    scopes, changes = message.get("subscriptions"), message.get("changes")
    if not isinstance(scopes, list) or not isinstance(changes, list) or not all(
            isinstance(s, list) and len(s) == len(NOTE_SCOPE) for s in scopes) or not all(
            isinstance(c, list) and len(c) == 1 + len(NOTE_CHANGE) and type(c[0]) is int
            and 0 <= c[0] < len(scopes) for c in changes):
        raise ValueError("not a bc-notifications message")
    return [dict(zip(NOTE_SCOPE, scopes[c[0]], strict=True)) | dict(zip(NOTE_CHANGE, c[1:], strict=True))
            for c in changes]


@dataclass
class Plan:
    """What a message asks for, by trigger scope: entity ids per change (`deleted`: id → the
    notification's time, in order), collection resources, and what was skipped and why."""

    created: dict[DedupeScope, list[str]] = field(default_factory=dict)
    updated: dict[DedupeScope, list[str]] = field(default_factory=dict)
    deleted: dict[DedupeScope, dict[str, str | None]] = field(default_factory=dict)
    collections: list[tuple[DedupeScope, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def plan(notes: list[dict[str, Any]]) -> Plan:
    """Group a message's notes by scope and change; each entity once per change."""
    result = Plan()
    for note in notes:
        group = DedupeScope(str(note.get("connection")), str(note.get("companyId")),
                            str(note.get("entitySet")))
        change = note.get("changeType")
        if group.entity_set not in BY_ENTITY_SET:
            result.skipped["unknown entity set"] += 1
        elif not is_guid(group.company_id):
            result.skipped["companyId not a GUID"] += 1
        elif change == "collection":
            result.collections.append((group, str(note.get("resource", ""))))
        elif change in ("created", "updated", "deleted"):
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


# ---- processor edges ------------------------------------------------------------------------------

def fetch_entities(runtime: Runtime, group: DedupeScope, ids: list[str]
                   ) -> tuple[list[dict[str, Any]], list[str], list[BCError]]:
    """GET each entity (children expanded per option) in parallel: those read, the ids that are
    gone (404) and the other failures."""
    trigger = BY_ENTITY_SET[group.entity_set]
    bc = runtime.bc(group.connection)
    params = trigger.expand(runtime.settings.connection(group.connection))

    def fetch(key: str) -> dict[str, Any] | BCError:
        try:
            return bc.get(bc.company_path(group.company_id, f"{trigger.entity_set}({key})"), params)
        except BCError as exc:
            return exc

    results = list(runtime.fetch_pool.map(in_this_trace(fetch), ids))
    return ([r for r in results if isinstance(r, dict)],
            [k for k, r in zip(ids, results, strict=True) if isinstance(r, BCNotFound)],
            [r for r in results if isinstance(r, BCError) and not isinstance(r, BCNotFound)])


def announce_created(runtime: Runtime, group: DedupeScope, ids: list[str], owner: str) -> EmitCount:
    """Claim, GET and announce created entities; a 404 is recorded as gone. Entities that were read
    are announced even when others failed; then the first error is raised so the queue retries (the
    claims let this owner carry on)."""
    trigger: Trigger = BY_ENTITY_SET[group.entity_set]
    conn = runtime.settings.connection(group.connection)
    dedupe = runtime.dedupe
    claims = dedupe.claim(group, ids, owner)
    entities, gone, failures = fetch_entities(runtime, group, [i for i in ids if i in claims.won])
    count = publish_claimed(dedupe, runtime.events, group, trigger, conn, claims, entities, gone=gone)
    count.skipped += len(ids) - len(claims.won)
    if failures:
        raise failures[0]
    return count


def announce_updated(runtime: Runtime, group: DedupeScope, ids: list[str], owner: str) -> EmitCount:
    """GET updated entities and announce those whose `lastModifiedDateTime` is newer than recorded
    (BC's merged and repeated notifications, a change already seen by the sweep, give nothing new).
    A 404 is left to the `deleted` notification that follows it."""
    conn = runtime.settings.connection(group.connection)
    entities, gone, failures = fetch_entities(runtime, group, ids)
    dedupe = runtime.dedupe
    count = announce(dedupe, runtime.events, group, BY_ENTITY_SET[group.entity_set], conn, entities, owner)
    count.skipped += len(gone)
    if failures:
        raise failures[0]
    return count


def announce_gone(runtime: Runtime, group: DedupeScope, deleted: dict[str, str | None],
                  owner: str) -> EmitCount:
    """Announce deleted entities (no BC call: the entity no longer exists)."""
    conn = runtime.settings.connection(group.connection)
    dedupe = runtime.dedupe
    return announce_deleted(dedupe, runtime.events, group, BY_ENTITY_SET[group.entity_set], conn,
                            deleted, owner)


def announce_collection(runtime: Runtime, group: DedupeScope, resource: str, owner: str) -> EmitCount:
    """Read a filtered `collection` window page by page and announce the unannounced. A bare URL
    (BC sends one when a delete was among the changes) runs the trigger's sweep instead of a full
    re-read, which could outlast the functionTimeout and restart from page 1 on every retry: what
    was created still carries a `lastModifiedDateTime` past the sweep's cursor, and the sweep reads
    within its time budget and checkpoints. If a sweep of the connection is running, it covers it."""
    trigger = BY_ENTITY_SET[group.entity_set]
    since = collection_since(resource)
    if since is None:
        log.info("notifications %s: sweeping %s (collection without a filter)", group.connection,
                 trigger.entity_set)
        results = sweep.sweep(runtime, group.connection, (trigger,))
        return EmitCount(emitted=sum(r.emitted for r in results), skipped=sum(r.skipped for r in results))
    conn = runtime.settings.connection(group.connection)
    bc = runtime.bc(conn.name)
    dedupe = runtime.dedupe
    params = {**trigger.expand(conn), "$filter": f"lastModifiedDateTime gt {bc_datetime(since)}"}
    count = EmitCount()
    for page in bc.iter_pages(bc.company_path(group.company_id, trigger.entity_set), params, sweep.PAGE_SIZE):
        count.add(announce(dedupe, runtime.events, group, trigger, conn, page, owner))
    return count


def queued_traceparent(text: str) -> str | None:
    """The trace a `bc-notifications` message was queued in (None if it names none)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = message.get("traceparent") if isinstance(message, dict) else None
    return value if isinstance(value, str) else None


def process_message(runtime: Runtime, text: str, owner: str) -> EmitCount:
    """Process one `bc-notifications` message; `owner` (the queue message id) lets a retry reclaim
    its own claims. Raises the first failure after doing everything else, so the queue retries.
    It runs in the trace of the webhook request that queued it."""
    with runtime.telemetry.consume(f"process {QUEUE_NOTIFICATIONS}", queued_traceparent(text),
                                   message_id=owner):
        return _process_message(runtime, text, owner)


def _process_message(runtime: Runtime, text: str, owner: str) -> EmitCount:
    try:
        notes = parse_queued(text)
    except ValueError:
        # kept, not dropped: whatever put it on the queue can be found from the copy
        runtime.storage.queue(QUEUE_NOTIFICATIONS_POISON).send_message(kept_text(text))
        log.error("notifications: message %s is not a bc-notifications message; kept on %s", owner,
                  QUEUE_NOTIFICATIONS_POISON)
        return EmitCount()
    asked = plan(notes)
    if asked.skipped:
        log.warning("notifications: skipped %s", dict(asked.skipped))
    total = EmitCount()
    errors: list[Exception] = []
    # created before updated before deleted: an entity never announced is not announced as deleted
    steps = [partial(announce_created, runtime, g, ids, owner) for g, ids in asked.created.items()]
    steps += [partial(announce_updated, runtime, g, ids, owner) for g, ids in asked.updated.items()]
    steps += [partial(announce_gone, runtime, g, ids, owner) for g, ids in asked.deleted.items()]
    steps += [partial(announce_collection, runtime, g, r, owner) for g, r in asked.collections]
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
