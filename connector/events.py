"""CloudEvents 1.0 for the out queues: building them with stable ids, and publishing them fast.

One shape per entity, whatever the path that read it: `data` is the BC entity without OData
annotations (`@odata.*`), children in the same form. Documents that BC posted from a sales order
also carry the order's key as the extension attributes `bcexternaldocno` and
`bcordernumber`, so consumers can filter without parsing `data`.

An event whose JSON would not fit in a queue message carries its `data` in blob storage instead,
referenced by the CloudEvents `dataref` extension attribute (consumers read the blob). Every event
carries the distributed-tracing extension `traceparent` of the span that queued it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from connector.bc.timestamps import utc_now
from connector.storage import Storage
from connector.telemetry import Telemetry, get_telemetry

log = logging.getLogger(__name__)

ITEM_PULLED = "bc.item.pulled"
# extension attribute -> the entity field it repeats (set only when the field has a value)
EXTENSIONS = {"bcexternaldocno": "externalDocumentNumber", "bcordernumber": "orderNumber"}


def event_id(*parts: str) -> str:
    """A stable id: the same BC change always gives the same id, so consumers can dedupe."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def cloud_event(*, event_type: str, connection: str, company_id: str, entity: dict[str, Any],
                id_parts: Iterable[str]) -> dict[str, Any]:
    """A structured-mode CloudEvent for one BC entity (`data` is the entity as BC returned it, less
    its OData annotations)."""
    data = plain_entity(entity)
    event = {
        "specversion": "1.0",
        "id": event_id(event_type, connection, company_id, *id_parts),
        "source": f"bc-connector/{connection}/{company_id}",
        "type": event_type,
        "time": entity.get("lastModifiedDateTime"),
        "subject": str(entity.get("id", "")),
        "datacontenttype": "application/json",
        "data": data,
    }
    event.update({name: data[field] for name, field in EXTENSIONS.items() if data.get(field)})
    return event


def plain_entity(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity without `@odata.*` annotations, its children (lists of entities) likewise."""
    plain = {}
    for key, value in entity.items():  # a loop: on the pull's hot path, a third faster than a comprehension
        if key[:1] == "@" and key.startswith("@odata."):
            continue
        if type(value) is list:
            value = [plain_entity(c) if type(c) is dict else c for c in value]
        plain[key] = value
    return plain


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class EventPublisher:
    """Sends events to a queue with bounded concurrency; oversized data goes to blob storage."""

    def __init__(self, storage: Storage, *, container: str, max_inline_bytes: int,
                 concurrency: int, telemetry: Telemetry | None = None):
        self._storage = storage
        self._telemetry = telemetry or get_telemetry()
        self._container = container
        self._max_inline = max_inline_bytes
        self._concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="events")

    def close(self) -> None:
        """Let the publishing threads end once idle."""
        self._pool.shutdown(wait=False)

    def prepare(self, event: dict[str, Any]) -> str:
        """The message text; moves `data` to a blob when the event is too large."""
        text = encode(event)
        if len(text.encode()) <= self._max_inline:
            return text
        blob_name = f"{event['type']}/{event['id']}.json"
        blob = self._storage.container(self._container).get_blob_client(blob_name)
        blob.upload_blob(json.dumps(event["data"], ensure_ascii=False).encode(), overwrite=True)
        slim = {k: v for k, v in event.items() if k != "data"}
        slim["dataref"] = blob.url
        log.info("event %s: %d bytes of data stored in blob %s", event["id"], len(text), blob_name)
        return encode(slim)

    def publish(self, queue_name: str, events: Iterable[dict[str, Any]]) -> int:
        """Send every event; returns how many. Raises if any send failed (after the rest finished),
        so a caller's cursor never moves past an event that was not queued."""
        sender = self._storage.sender(queue_name)
        events = list(events)
        with self._telemetry.produce(queue_name, len(events)):
            stamped = [self._telemetry.stamp(e) for e in events]
            failures: list[Exception | None] = [None] * len(stamped)
            lanes = min(self._concurrency, len(stamped))

            def lane(first: int) -> None:  # every `lanes`-th event: one task per lane, not per event
                for index in range(first, len(stamped), lanes):
                    try:
                        sender.send(self.prepare(stamped[index]))
                    except Exception as exc:  # noqa: BLE001 - raised below, once the rest are sent
                        failures[index] = exc

            wait([self._pool.submit(lane, first) for first in range(lanes)])  # together
            self._telemetry.events_queued((e for e, failure in zip(stamped, failures, strict=True)
                                           if failure is None), utc_now())
            errors = [failure for failure in failures if failure is not None]
            if errors:
                raise errors[0]
        return len(stamped)
