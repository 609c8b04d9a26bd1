"""Spans, metrics and `traceparent` for an order and for a created-item event, through the local host
against Azurite and the emulator, read from an in-memory exporter."""
from __future__ import annotations

import json
from typing import Any

import requests
from opentelemetry.trace import SpanKind

from connector.settings import QUEUE_ITEMS
from tests.ops.conftest import Recorded
from tests.orders.support import SEED_EXAMPLE, OrderQueues, new_key
from tests.webhooks.conftest import scenario  # noqa: F401  (the webhook tests' fixture)

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
SECRET_MARKERS = ("Bearer", "eyJ", "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668", "GL00000008")


def ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


def hexid(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def no_secrets_or_bodies(spans: list[Any]) -> None:
    for span in spans:
        for value in span.attributes.values():
            assert not any(marker in str(value) for marker in SECRET_MARKERS), (span.name, value)


def test_an_order_joins_the_senders_trace_and_is_counted(local_host: Any, azurite: Any, emulator: Any,
                                                         otel: Recorded) -> None:
    host = local_host()
    queues = OrderQueues(azurite.connection_string)
    key = new_key("OTEL")
    emulator.faults.clear()
    # BC throttles the first look-up of the key once: retried after its Retry-After.
    emulator.faults.add_rule(action="error_before", method="GET", path_regex="/salesOrders$", status=429,
                             retry_after=0.2, count=1)
    try:
        queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key,
                                     "traceparent": f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"}])
        host.wait_idle(60)
        queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}, {"customerNumber": "X", "color": "red"}])
        host.wait_idle(60)
    finally:
        emulator.faults.clear()

    results = {r["status"]: r for r in queues.results()}
    assert set(results) == {"created", "duplicate", "failed"}
    created = results["created"]
    trace_id, span_id = ids(created["traceparent"])
    assert trace_id == PRODUCER_TRACE and span_id != PRODUCER_SPAN  # the same trace, carried on

    spans = otel.spans()
    in_trace = [s for s in spans if hexid(s.context.trace_id, 32) == PRODUCER_TRACE]
    [process] = [s for s in in_trace if s.name == "process sales-orders"]
    assert process.kind is SpanKind.CONSUMER and hexid(process.parent.span_id, 16) == PRODUCER_SPAN
    assert process.attributes["order_key"] == key and process.attributes["connection"] == "default"
    assert process.attributes["order.status"] == "created"
    assert process.links  # to the invocation it ran in
    bc_calls = [s for s in in_trace if s.kind is SpanKind.CLIENT]
    post = next(s for s in bc_calls if s.name == "BC POST salesOrders")
    assert post.attributes["http.response.status_code"] == 201
    assert post.attributes["connection"] == "default" and post.attributes["bc.entity_set"] == "salesOrders"
    assert post.attributes["bc.company"] and post.attributes["bc.retry_count"] == 0
    throttled = next(s for s in bc_calls if s.name == "BC GET salesOrders")
    assert throttled.attributes["bc.retry_count"] == 1
    assert throttled.attributes["bc.throttle_wait_seconds"] > 0
    assert {hexid(s.context.span_id, 16) for s in in_trace} >= {span_id}  # the result names a real span
    no_secrets_or_bodies(spans)

    points = otel.points()
    for status in ("created", "duplicate", "failed"):
        assert otel.total(points, "bc_connector.orders", connection="default", status=status) == 1
    assert otel.total(points, "bc_connector.bc_throttled", connection="default") == 1
    assert otel.total(points, "bc_connector.bc_requests", connection="default", status_code="429") == 1
    assert otel.total(points, "bc_connector.bc_requests", connection="default", status_code="201") == 1
    assert otel.total(points, "bc_connector.backoff_seconds", connection="default") >= 0.2
    # The status report's recent throughput: the key's one created order.
    [default] = requests.get(f"{host.url}/api/status", timeout=30).json()["connections"]
    assert default["throughput_24h"]["orders"] == {"created": 1}


def test_a_created_item_event_carries_the_trace_of_the_webhook_that_announced_it(
        scenario: Any, otel: Recorded) -> None:  # noqa: F811
    s = scenario()
    s.subscribe()
    item = s.bc.create_item(variants=("RED",))
    [event] = s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))
    s.host.wait_idle(30)

    trace_id, span_id = ids(event["traceparent"])  # the CloudEvents distributed-tracing extension
    spans = otel.spans()
    in_trace = {s.name: s for s in spans if hexid(s.context.trace_id, 32) == trace_id}
    # BC's POST to the receiver, the queue hop, the processing, BC reads and the send: one trace.
    assert {"bc_webhook", "process bc-notifications", "send bc-items"} <= set(in_trace)
    assert hexid(in_trace["send bc-items"].context.span_id, 16) == span_id
    assert in_trace["send bc-items"].kind is SpanKind.PRODUCER
    reads = [s for s in spans if hexid(s.context.trace_id, 32) == trace_id and s.kind is SpanKind.CLIENT]
    assert any(r.attributes["bc.entity_set"].startswith("items") for r in reads)
    assert all(r.attributes["bc.company"] == s.company_id for r in reads)
    no_secrets_or_bodies(spans)

    points = otel.points()
    assert otel.total(points, "bc_connector.events", connection="default", type="bc.item.created") == 1
    [(attrs, latency)] = [(a, p) for a, p in points["bc_connector.change_to_event_seconds"]
                          if a["type"] == "bc.item.created"]
    assert attrs["connection"] == "default" and latency.count == 1 and latency.sum >= 0
    assert ({"connection": "default", "state": "active"}, 3) in points["bc_connector.subscriptions"]
    assert ({"connection": "all", "queue": "sales-orders-poison"}, 0) in points["bc_connector.poison_depth"]
    assert json.dumps(event)  # still a plain JSON event
