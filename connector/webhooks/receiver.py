"""The BC webhook receiver (`/api/webhooks/bc`): acks fast, never with a 4xx.

A `validationToken` is echoed at once (no storage or BC call, so the handshake works before the
subscription row exists). A notification body is checked element by element (known subscriptionId,
clientState compared in constant time); `created` and `collection` elements are queued to
`bc-notifications` in as few messages as fit (`notifications.pack_messages`), and `updated`/`deleted`
ones when the trigger announces that change (`*_CHANGE_TYPES`; otherwise counted and dropped).
BC deletes a subscription that gets any 4xx, so a garbled, oversized or forged body is logged and
acked with 202; when storage fails the answer is 503 at once (no storage retries: BC's 30 s timeout
would run out first, and BC retries a 503 anyway). `processor.py` does the work.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from azure.core.exceptions import AzureError

from connector.errors import ConnectorError
from connector.settings import QUEUE_NOTIFICATIONS, Settings
from connector.signing import queue_signer, seal_json
from connector.telemetry import current_traceparent
from connector.webhooks.context import WebhookContext
from connector.webhooks.directory import KnownSubscription
from connector.webhooks.notifications import pack_messages

log = logging.getLogger(__name__)

MAX_VALIDATION_TOKEN_CHARS = 1024  # BC's tokens are far shorter; a longer one is not echoed
# Elements per POST. BC replaces a subscription's notifications by one `collection` once it has 1,000
# in a run (bc-api.md §7.5), so one subscription contributes at most 999; one POST carries every
# subscription of our URL (three triggers per company and connection). 10,000 leaves room for ten full
# batches at once, and costs a few MB to parse; BC's own bodies stay far under it.
MAX_ELEMENTS = 10_000
# A BC element has 6 members, so its JSON has fewer than 12 commas (its strings are GUIDs, dates,
# URLs and clientState, none with more than a few): a body with more commas than this holds more
# values than MAX_ELEMENTS elements can, and is refused before parsing (4 MiB of `{},` is 1.4 M objects).
MAX_COMMAS = MAX_ELEMENTS * 16
PROCESSED_CHANGES = frozenset({"created", "collection"})
OPTIONAL_CHANGES = frozenset({"updated", "deleted"})  # queued when the trigger announces them


@dataclass(frozen=True)
class Reply:
    """What the receiver answers."""

    status: int
    body: str = ""
    mimetype: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=lambda: {"X-Content-Type-Options": "nosniff"})


ACCEPTED = Reply(202)


class GarbledNotification(ConnectorError, ValueError):
    """A notification body that cannot be read; the message says why (never the body itself)."""

    retryable = False


class OversizedNotification(GarbledNotification):
    """A body over WEBHOOK_MAX_BODY_BYTES or MAX_ELEMENTS: possibly a genuine bundle whose created
    entities are lost unless the sweep finds them, so it is logged as an error."""


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
    if body.count(b",") > MAX_COMMAS:  # priced before parsing: bytes.count is one pass in C
        raise OversizedNotification(f"body of {len(body)} bytes holds more JSON values than "
                                    f"{MAX_ELEMENTS} notifications can; not parsed")
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GarbledNotification(f"body of {len(body)} bytes is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("value"), list):
        raise GarbledNotification('body is not {"value": [...]}')
    if len(parsed["value"]) > MAX_ELEMENTS:
        raise OversizedNotification(f"{len(parsed['value'])} notifications in one body, more than "
                                    f"{MAX_ELEMENTS}")
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


def answer_bc_push(kind: str, params: Mapping[str, str], headers: Mapping[str, str],
                   read_body: Callable[[], bytes], get_context: Callable[[], WebhookContext],
                   handle: Callable[[WebhookContext, bytes], Reply]) -> Reply:
    """The frame of every endpoint BC pushes to, never a 4xx or 500: the handshake; a connector that
    cannot start answers 503 (BC retries); a body declared larger than WEBHOOK_MAX_BODY_BYTES is not
    read (202); anything unexpected in `handle` is logged and acked (202; the same body would fail
    again)."""
    reply = handshake(params)
    if reply is not None:
        return reply
    try:
        ctx = get_context()
    except Exception:
        log.exception("%s: the connector cannot start; answered 503 so BC retries", kind)
        return Reply(503, "not ready")
    try:
        declared = declared_length(headers)
        if declared is not None and declared > ctx.settings.webhook_max_body_bytes:
            log.error("%s: Content-Length %d exceeds WEBHOOK_MAX_BODY_BYTES (%d); acknowledged "
                      "unread (the next sweep announces what it created)", kind, declared,
                      ctx.settings.webhook_max_body_bytes)
            return ACCEPTED
        return handle(ctx, read_body())
    except Exception:
        log.exception("%s: unexpected failure; acknowledged, nothing processed", kind)
        return ACCEPTED


def receive_request(params: Mapping[str, str], headers: Mapping[str, str], read_body: Callable[[], bytes],
                    get_context: Callable[[], WebhookContext]) -> Reply:
    """Answer one request to the webhook endpoint (`answer_bc_push`'s frame around `receive`)."""
    return answer_bc_push("webhook", params, headers, read_body, get_context,
                          lambda ctx, body: receive(params, body, lambda: ctx))


def announced_change(settings: Settings, sub: KnownSubscription, change: str) -> bool:
    """Must the trigger of `sub` read a notification of `change` for its connection (it announces
    it, or it may be a posting of a draft)?"""
    conn = settings.connections.get(sub.connection)
    trigger = conn.trigger(sub.entity_set) if conn is not None else None
    return trigger is not None and trigger.needs(change)


def receive(params: Mapping[str, str], body: bytes, get_context: Callable[[], WebhookContext]) -> Reply:
    """Answer one request to the webhook endpoint (handshake or notifications)."""
    reply = handshake(params)
    if reply is not None:
        return reply
    ctx = get_context()
    try:
        elements = parse_body(body, ctx.settings.webhook_max_body_bytes)
    except OversizedNotification as exc:
        log.error("webhook: %s; acknowledged and dropped unread (the next sweep announces what it "
                  "created)", exc)
        return ACCEPTED
    except GarbledNotification as exc:
        log.warning("webhook: %s; acknowledged, nothing processed", exc)
        return ACCEPTED
    try:
        screening = screen(elements, ctx.subscription_directory.find(subscription_ids(elements)),
                           partial(announced_change, ctx.settings))
        signer = queue_signer(ctx.settings.token_encryption_keys, QUEUE_NOTIFICATIONS)
        messages = [seal_json(signer, m) for m in pack_messages(screening.queued,
                                                                traceparent=current_traceparent())]
        sender = ctx.storage.sender(QUEUE_NOTIFICATIONS, retry_total=0)  # BC retries on a 503
        list(ctx.enqueue_pool.map(lambda text: sender.send(text, retries=0), messages))
    except AzureError as exc:
        log.error("webhook: storage unavailable (%s); answered 503 so BC retries", type(exc).__name__)
        return Reply(503, "storage unavailable")
    if screening.refused:
        log.warning("webhook: refused %s (not processed)", dict(screening.refused))
    log.info("webhook: %d element(s): %d queued in %d message(s), ignored %s", len(elements),
             len(screening.queued), len(messages), dict(screening.ignored))
    return ACCEPTED
