"""What the webhook tests do to the emulator (through its admin API) and read from the out queues."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
from azure.storage.queue import QueueClient

from tests.event_schemas import checked
from tests.queue_drain import drain_texts

TENANT = "lmints.io"
ENVIRONMENT = "production"
NEVER = "0 0 0 1 1 *"  # timers fire only when a test fires them
QUIET_TIMERS = {"ITEM_PULL_SCHEDULE": NEVER, "SUBSCRIPTION_RENEWAL_SCHEDULE": NEVER, "SWEEP_SCHEDULE": NEVER}


class EmulatedBC:
    """One company of the emulator, driven like a BC user would (every change fires webhooks)."""

    def __init__(self, emulator: Any, company_id: str):
        self.emulator = emulator
        self.company_id = company_id
        self.session = requests.Session()

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        # per request: REQUESTS_CA_BUNDLE in the environment would override Session.verify
        r = self.session.request(method, f"{self.emulator.url}/_emulator/bc/{path}", json=body, timeout=60,
                                 verify=self.emulator.ca_bundle)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    def _company(self, method: str, path: str, body: Any = None) -> Any:
        return self._admin(method, f"{TENANT}/{ENVIRONMENT}/{self.company_id}/{path}", body)

    def create_item(self, variants: tuple[str, ...] = ("RED", "BLUE")) -> dict[str, Any]:
        number = f"T{uuid.uuid4().hex[:8].upper()}"
        return self._company("POST", "items", {
            "number": number, "displayName": f"Webhook test {number}",
            "itemVariants": [{"code": v, "description": v.title()} for v in variants]})

    def bulk_items(self, count: int) -> list[str]:
        before = {i["id"] for i in self._company("GET", "items")["value"]}
        self._company("POST", "items/bulk", {"count": count, "prefix": f"B{uuid.uuid4().hex[:4].upper()}"})
        return [i["id"] for i in self._company("GET", "items")["value"] if i["id"] not in before]

    def post_document(self, entity_set: str, lines: int = 2) -> dict[str, Any]:
        specs = [{"itemNumber": "1896-S", "quantity": i + 1} for i in range(lines)]
        return self._company("POST", entity_set, {"customerNumber": "GL00000008", "lines": specs})

    def draft_invoice(self) -> dict[str, Any]:
        """A draft sales invoice, as `POST .../salesInvoices` makes it."""
        return self._company("POST", "salesInvoices/drafts", {
            "customerNumber": "GL00000008",
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 1}]})

    def post_draft(self, invoice_id: str) -> dict[str, Any]:
        """`Microsoft.NAV.post` on a draft invoice; the posted invoice."""
        return self._company("POST", f"salesInvoices/{invoice_id}/post")

    def ship_and_invoice(self, order_id: str) -> None:
        """`Microsoft.NAV.shipAndInvoice` on a sales order."""
        self._company("POST", f"salesOrders/{order_id}/shipAndInvoice")

    def create_order(self, external_document_number: str) -> dict[str, Any]:
        return self._company("POST", "salesOrders", {
            "customerNumber": "GL00000008", "externalDocumentNumber": external_document_number,
            "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 1}]})

    def list(self, entity_set: str) -> list[dict[str, Any]]:
        return self._company("GET", entity_set)["value"]

    def event_subscriptions(self) -> list[dict[str, Any]]:
        """BC's business-event subscriptions (externaleventsubscriptions)."""
        return self._admin("GET", "businessevents/subscriptions")["value"]

    def switch_off_event_subscription(self, subscription_id: str) -> None:
        """What BC does to a business-event subscription after repeated failed deliveries."""
        self._admin("POST", f"businessevents/subscriptions/{subscription_id}/disable")

    def event_deliveries(self) -> list[dict[str, Any]]:
        return self._admin("GET", "businessevents/deliveries")["value"]

    def flush_events(self) -> None:
        self._admin("POST", "businessevents/flush")

    def grant_event_permission(self, granted: bool) -> None:
        self._admin("PUT", "businessevents/permission", {"granted": granted})

    def update(self, entity_set: str, entity_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._company("PATCH", f"{entity_set}/{entity_id}", changes)

    def delete(self, entity_set: str, entity_id: str) -> None:
        self._company("DELETE", f"{entity_set}/{entity_id}")

    def subscriptions(self, url: str | None = None) -> list[dict[str, Any]]:
        subs = self._admin("GET", "subscriptions")["value"]
        return [s for s in subs if url is None or s["notificationUrl"] == url]

    def delete_subscription(self, subscription_id: str) -> None:
        self._admin("DELETE", f"subscriptions/{subscription_id}")

    def deliveries(self, url: str) -> list[dict[str, Any]]:
        return self._admin("GET", f"webhooks/deliveries?url={requests.utils.quote(url, safe='')}")["value"]

    def forget_url(self, prefix: str) -> None:
        """Drop the subscriptions and delivery log an earlier host left for a URL starting with `prefix`."""
        for sub in self.subscriptions():
            if sub["notificationUrl"].startswith(prefix):
                self.delete_subscription(sub["id"])
        self._admin("DELETE", "webhooks/deliveries")

    def notification_about(self, url: str, entity_id: str) -> dict[str, Any]:
        """The first notification BC sent to `url` about `entity_id` (a busy machine may split one
        change's notifications over several deliveries, or retry one)."""
        return next(n for d in self.deliveries(url) if d["kind"] == "notification"
                    for n in d["body"]["value"] if entity_id in n["resource"])

    def flush(self) -> None:
        self._admin("POST", "webhooks/flush")


class OutQueues:
    """Events taken off the out queues, remembered per queue."""

    def __init__(self, connection_string: str):
        self._connection_string = connection_string
        self.events: dict[str, list[dict[str, Any]]] = {}

    def take(self, queue: str) -> list[dict[str, Any]]:
        """Every event queued since the last call (also kept in `events`), each checked against its
        published schema."""
        client = QueueClient.from_connection_string(self._connection_string, queue)
        got = [checked(json.loads(text)) for text in drain_texts(client)]
        self.events.setdefault(queue, []).extend(got)
        return got

    def wait_for(self, queue: str, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll `queue` until `done(all events so far)`; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            self.take(queue)
            events = self.events.get(queue, [])
            if done(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue}: condition not met after {timeout}s; {len(events)} event(s)")
            time.sleep(0.2)

    def about(self, queue: str, subject: str) -> list[dict[str, Any]]:
        return [e for e in self.events.get(queue, []) if e["subject"] == subject]
