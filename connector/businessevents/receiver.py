"""The business-event receiver (`POST /api/webhooks/bc/events?connection=<name>`): acks fast, never with
a 4xx (BC switches a subscription off after repeated failures).

Each notification (BC's body: `companyId`, `eventName`, `payload` with the document's API id and `Url`,
`clientState`, `timestamp`, ...) is checked: a subscribed event of an enabled connection, clientState
compared in constant time, `Url` resolved on BC's origin under the API root (`connector.bc.links`;
never another host) and naming the payload's document. It is then queued to `bc-notifications` as a
`posted` note, so the processor reads the document (children per option) and announces it through
the same dedupe row as the webhook: one event with one id, whichever source came first. A forged or
garbled body is logged and acked (202); when storage fails the answer is 503 (BC retries).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import AzureError

from connector.bc.errors import BCError
from connector.businessevents.catalog import (
    BY_NAME,
    accepts,
    document_of,
    on_our_root,
    refusal,
    wanted_events,
)
from connector.settings import QUEUE_NOTIFICATIONS, UnknownConnection
from connector.signing import queue_signer, seal_json
from connector.telemetry import current_traceparent
from connector.webhooks.context import WebhookContext
from connector.webhooks.notifications import pack_messages
from connector.webhooks.receiver import ACCEPTED, Reply, answer_bc_push

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # notifications per POST (BC sends one)


def notifications_of(body: bytes) -> list[dict[str, Any]]:
    """The notifications of a body: one object, a JSON array of them, or `{"value": [...]}`; ValueError
    for anything else."""
    try:
        parsed = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if isinstance(parsed, dict) and isinstance(parsed.get("value"), list):
        parsed = parsed["value"]
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or len(items) > MAX_EVENTS or not all(isinstance(i, dict) for i in items):
        raise ValueError("not a business-event notification")
    return items


def screen(ctx: WebhookContext, connection: str, items: list[dict[str, Any]]
           ) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The `bc-notifications` notes of the acceptable notifications, and why the others were refused."""
    refused: Counter[str] = Counter()
    try:
        conn = ctx.settings.connection(connection)
    except UnknownConnection:
        refused["unknown connection"] += len(items)
        return [], refused
    subscribed = {e.name: e for e in wanted_events(conn)}
    keys = ctx.settings.token_encryption_keys
    notes = []
    for item in items:
        name, company_id = str(item.get("eventName", "")), str(item.get("companyId", ""))
        event = subscribed.get(name) if name in BY_NAME else None
        payload: dict[str, Any] = item["payload"] if isinstance(item.get("payload"), dict) else {}
        if event is not None and not accepts(keys, item.get("clientState"), conn.name, company_id, name):
            refused["clientState mismatch"] += 1
            continue
        bc = ctx.bc(conn.name)
        try:
            given = on_our_root(str(payload.get("Url", "")), conn.environment, bc.api_root.root)
            url = bc.resolve(given, what="business event Url")
        except BCError:
            refused["Url off BC's API root"] += 1
            continue
        why = refusal(event, company_id, document_of(url),
                      payload.get(event.id_parameter) if event else None)
        if why is not None or event is None:
            refused[why or "event not subscribed"] += 1
            continue
        notes.append({"connection": conn.name, "companyId": company_id.lower(), "entitySet": event.entity_set,
                      "subscriptionId": "", "changeType": f"verb:{event.verb}" if event.verb else "posted",
                      "resource": url,
                      "lastModifiedDateTime": item.get("timestamp")})
    return notes, refused


def receive_request(params: Mapping[str, str], headers: Mapping[str, str], read_body: Callable[[], bytes],
                    get_context: Callable[[], WebhookContext]) -> Reply:
    """Answer one business-event request, never with a 4xx or 500 (`answer_bc_push`'s frame)."""
    return answer_bc_push("business event", params, headers, read_body, get_context,
                          lambda ctx, body: queue_notifications(ctx, params, body))


def queue_notifications(ctx: WebhookContext, params: Mapping[str, str], body: bytes) -> Reply:
    """Screen a business-event body and queue its notifications; 503 when storage is down."""
    try:
        items = notifications_of(body)
    except ValueError as exc:
        log.warning("business event: %s; acknowledged, nothing processed", exc)
        return ACCEPTED
    notes, refused = screen(ctx, params.get("connection", ""), items)
    if refused:
        log.warning("business event: refused %s (not processed)", dict(refused))
    try:
        signer = queue_signer(ctx.settings.token_encryption_keys, QUEUE_NOTIFICATIONS)
        sender = ctx.storage.sender(QUEUE_NOTIFICATIONS, retry_total=0)  # BC retries a 503
        for text in pack_messages(notes, traceparent=current_traceparent()):
            sender.send(seal_json(signer, text), retries=0)
    except AzureError as exc:
        log.error("business event: storage unavailable (%s); answered 503 so BC retries",
                  type(exc).__name__)
        return Reply(503, "storage unavailable")
    log.info("business event: %d notification(s), %d queued", len(items), len(notes))
    return ACCEPTED
