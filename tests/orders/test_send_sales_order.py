"""Send Created Sales Order end to end: queue → local host → emulator → results/poison queues."""
from __future__ import annotations

import time
from typing import Any

import pytest

from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key

pytestmark = pytest.mark.e2e


def test_seed_example_creates_one_order(order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    queues.send([SEED_EXAMPLE])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["status"] == "created"
    assert result["error"] is None and result["externalDocumentNumber"] is None
    order = bc.order(result["salesOrderId"])
    assert order["number"] == result["number"]
    assert (order["customerNumber"], order["currencyCode"], order["orderDate"]) == ("GL00000008", "GBP",
                                                                                     "2023-09-01")
    assert bc.order_posts() == 1
    assert queues.poison() == []


def test_item_variant_and_account_lines_are_created_with_the_order_in_one_post(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    key = new_key()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key, "salesOrderLines": [
        {"itemNumber": "1896-S", "quantity": 2},
        {"itemNumber": "1900-S", "variantCode": "GREY", "quantity": 1, "unitPrice": 180.5},
        {"lineType": "Item", "lineObjectNumber": "1908-S", "variantCode": "red", "quantity": 3},
        {"lineType": "Account", "lineObjectNumber": "6810", "description": "Freight", "quantity": 1,
         "unitPrice": 25},
    ]}])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["status"] == "created" and result["externalDocumentNumber"] == key
    [order] = bc.orders(key)
    assert order["id"] == result["salesOrderId"]
    lines = sorted(order["salesOrderLines"], key=lambda line: line["sequence"])
    assert [(x["lineType"], x["lineObjectNumber"], x["quantity"]) for x in lines] == [
        ("Item", "1896-S", 2), ("Item", "1900-S", 1), ("Item", "1908-S", 3), ("Account", "6810", 1)]
    assert [x["itemVariantId"] for x in lines[1:3]] == [bc.variant_id("1900-S", "GREY"),
                                                       bc.variant_id("1908-S", "RED")]
    assert lines[1]["unitPrice"] == 180.5 and lines[3]["description"] == "Freight"
    assert bc.order_posts() == 1
    # one look-up per item with variants, one idempotency check, one POST
    assert bc.calls() == [("GET", "items"), ("GET", "items"), ("GET", "salesOrders"), ("POST", "salesOrders")]


def test_same_external_document_number_creates_one_order(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    key = new_key()
    message = SEED_EXAMPLE | {"externalDocumentNumber": key,
                              "salesOrderLines": [{"itemNumber": "1896-S", "quantity": 1}]}
    queues.send([message])
    host.wait_idle(30)
    queues.send([message])
    host.wait_idle(30)

    first, second = queues.results()
    [order] = bc.orders(key)
    assert (first["status"], second["status"]) == ("created", "duplicate")
    assert first["salesOrderId"] == second["salesOrderId"] == order["id"]
    assert first["number"] == second["number"] == order["number"]
    assert bc.order_posts() == 1


def test_concurrent_deliveries_of_one_key_create_one_order(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    key = new_key()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}] * 8)
    host.wait_idle(60)

    results = queues.results()
    [order] = bc.orders(key)
    assert sorted(r["status"] for r in results) == ["created"] + ["duplicate"] * 7
    assert {r["salesOrderId"] for r in results} == {order["id"]}
    assert bc.order_posts() == 1


@pytest.mark.parametrize("fault", [{"action": "timeout_after_commit", "hold_seconds": 3},
                                   {"action": "error_after_commit", "status": 502}],
                         ids=["timeout", "bad-gateway"])
def test_order_committed_before_a_failure_is_found_not_created_again(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC, fault: dict[str, Any]) -> None:
    host = order_host(BC_TIMEOUT_SECONDS="1")
    bc.emulator.faults.add_rule(method="POST", path_regex="/salesOrders$", **fault)
    key = new_key()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    host.wait_idle(60)

    [result] = queues.results()
    [order] = bc.orders(key)
    assert result["status"] in ("created", "duplicate")
    assert result["salesOrderId"] == order["id"]
    assert bc.order_posts(at_least=1) == 1
    assert [r.fault for r in bc.emulator.requests if r.method == "POST"] == [fault["action"]]
    assert queues.poison() == []


def test_order_without_key_whose_outcome_is_unknown_is_kept_not_retried(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host(BC_TIMEOUT_SECONDS="1")
    bc.emulator.faults.add_rule(action="timeout_after_commit", method="POST", path_regex="/salesOrders$",
                                hold_seconds=3)
    before = len(bc.orders())
    [text] = queues.send([SEED_EXAMPLE | {"shipToName": "Outcome unknown"}])
    host.wait_idle(60)

    [result] = queues.results()
    assert result["status"] == "failed" and result["error"]["code"] == "OutcomeUnknown"
    assert queues.poison() == [text]
    assert len(bc.orders()) == before + 1  # BC did create it: replaying blindly would duplicate it
    assert bc.order_posts(at_least=1) == 1


def test_unknown_customer_fails_at_once_and_keeps_the_message(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    key = new_key()
    [text] = queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key, "customerNumber": "NOPE-1"}])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["status"] == "failed" and result["externalDocumentNumber"] == key
    assert result["error"]["code"] == "Internal_RecordNotFound"
    assert "NOPE-1" in result["error"]["message"]
    assert queues.poison() == [text]
    assert bc.order_posts() == 1
    assert [i.outcome for i in host.invocations] == ["succeeded"]
    assert bc.orders(key) == []


def test_unknown_variant_fails_naming_it_without_calling_post(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    [text] = queues.send([SEED_EXAMPLE | {"externalDocumentNumber": new_key(), "salesOrderLines": [
        {"itemNumber": "1900-S", "variantCode": "PURPLE", "quantity": 1}]}])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["error"]["code"] == "UnknownVariant"
    assert "'1900-S'" in result["error"]["message"] and "'PURPLE'" in result["error"]["message"]
    assert queues.poison() == [text]
    assert bc.order_posts() == 0


@pytest.mark.parametrize(("text", "code", "named"), [
    ('{"customerNumber": "GL00000008", ', "MalformedJson", "not valid JSON"),
    ('["GL00000008"]', "InvalidMessage", "JSON object"),
    ('{"customerNumber": "GL00000008", "orderDate": 20230901}', "InvalidMessage", "orderDate"),
    ('{"customerNumber": "GL00000008", "salesOrderLines": [{"itemNumber": "1896-S", "quantity": "2"}]}',
     "InvalidMessage", "salesOrderLines[0].quantity"),
    ('{"customerNumber": "GL00000008", "shoeSize": 44}', "InvalidMessage", "shoeSize: unknown field"),
    ('{"customerNumber": "GL00000008", "number": "S-ORD1"}', "InvalidMessage", "number: read-only"),
    ('{"customerNumber": "GL00000008", "totalAmountIncludingTax": 10}', "InvalidMessage",
     "totalAmountIncludingTax: read-only"),
    ('{"customerNumber": "GL00000008", "salesOrderLines": [{"documentId": '
     '"3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668", "itemNumber": "1896-S"}]}', "InvalidMessage",
     "salesOrderLines[0].documentId: read-only"),
    ('{"customerNumber": "GL00000008", "connection": "emea"}', "UnknownConnection", "'emea'"),
], ids=["malformed", "not-an-object", "wrong-type", "string-number", "unknown-field", "read-only-number",
        "read-only-total", "read-only-line-field", "unknown-connection"])
def test_invalid_message_fails_with_its_reason_and_is_kept_as_sent(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC, text: str, code: str, named: str) -> None:
    host = order_host()
    queues.send([text])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["status"] == "failed"
    assert result["error"]["code"] == code and named in result["error"]["message"]
    assert queues.poison() == [text]
    assert bc.request_count() == 0


def test_order_failing_on_every_attempt_gets_one_failed_result_and_one_poison_copy(
        fast_retry_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = fast_retry_host(BC_MAX_RETRIES="0")
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=503, count=None)
    key = new_key()
    [text] = queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    host.wait_idle(60)

    [result] = queues.results()
    assert result["status"] == "failed" and result["externalDocumentNumber"] == key
    assert result["error"]["code"] == "ServiceUnavailable"
    assert result["error"]["message"].startswith("gave up after 5 attempts")
    assert queues.poison() == [text]
    assert [i.outcome for i in host.invocations] == ["failed"] * 5
    assert bc.order_posts() == 5 and bc.orders(key) == []


def wait_for_invocations(host: Any, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(host.invocations) < count:
        assert time.monotonic() < deadline, f"{len(host.invocations)} of {count} invocations finished"
        time.sleep(0.05)


def test_order_whose_post_may_still_commit_is_not_sent_again_before_the_ambiguity_window(
        fast_retry_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = fast_retry_host(SALES_ORDER_AMBIGUITY_SECONDS="3")
    # 504: ambiguous to the client, and BC wrote nothing (real BC might still commit it minutes later)
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=504)
    key = new_key()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    wait_for_invocations(host, 1)
    time.sleep(1.5)  # the host retries failures at once here: a retry would have POSTed by now

    assert bc.reposted_within(3) == 0  # (a loaded machine may be past the window by now: allowed)
    assert host.invocations[0].outcome == "succeeded"  # deferred, no delivery spent
    host.wait_idle(30)

    [result] = queues.results()
    [order] = bc.orders(key)
    assert (result["status"], result["salesOrderId"]) == ("created", order["id"])
    first, second = [r.time for r in bc.emulator.requests if r.method == "POST"]
    assert (second - first).total_seconds() >= 3
    assert [i.outcome for i in host.invocations] == ["succeeded", "succeeded"]
    assert bc.calls() == [("GET", "salesOrders"), ("POST", "salesOrders"), ("GET", "salesOrders"),
                          ("GET", "salesOrders"), ("POST", "salesOrders")]
    assert queues.poison() == []


def test_same_key_sent_while_an_order_is_uncertain_waits_for_it_and_answers_duplicate(
        fast_retry_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = fast_retry_host(SALES_ORDER_AMBIGUITY_SECONDS="3")
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=504)
    key = new_key()
    message = SEED_EXAMPLE | {"externalDocumentNumber": key}
    queues.send([message])
    wait_for_invocations(host, 1)  # the owner's POST failed ambiguously: deferred
    queues.send([message])
    wait_for_invocations(host, 2)
    time.sleep(1.0)  # the host retries failures at once here: a busy second message would show by now

    assert bc.reposted_within(3) == 0  # (a loaded machine may be past the window by now: allowed)
    assert [i.outcome for i in host.invocations[:2]] == ["succeeded", "succeeded"]  # both deferred
    host.wait_idle(30)

    results = queues.results()
    [order] = bc.orders(key)
    assert sorted(r["status"] for r in results) == ["created", "duplicate"]
    assert {r["salesOrderId"] for r in results} == {order["id"]}
    assert bc.order_posts() == 2  # the owner's ambiguous POST and its retry after the window
    assert all(i.outcome == "succeeded" for i in host.invocations)
    assert queues.poison() == []


def test_order_committed_late_during_the_ambiguity_window_is_found_and_not_posted_again(
        fast_retry_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = fast_retry_host(SALES_ORDER_AMBIGUITY_SECONDS="3")
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=504)
    key = new_key()
    message = SEED_EXAMPLE | {"externalDocumentNumber": key}
    queues.send([message])
    wait_for_invocations(host, 1)
    late = bc.create_order(message)  # BC commits the timed-out POST after the connector looked
    host.wait_idle(30)

    [result] = queues.results()
    assert [o["id"] for o in bc.orders(key)] == [late["id"]]
    assert (result["status"], result["salesOrderId"], result["number"]) == ("created", late["id"],
                                                                            late["number"])
    assert bc.order_posts() == 1
    assert bc.calls() == [("GET", "salesOrders"), ("POST", "salesOrders"), ("GET", "salesOrders"),
                          ("GET", "salesOrders")]
    assert queues.poison() == []


def test_order_whose_every_post_has_an_unknown_outcome_fails_after_as_many_posts_as_deliveries(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host(SALES_ORDER_AMBIGUITY_SECONDS="0")
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=504, count=None)
    key = new_key()
    [text] = queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    host.wait_idle(60)

    [result] = queues.results()
    assert result["status"] == "failed" and result["error"]["code"] == "OutcomeUnknown"
    assert "5 POSTs" in result["error"]["message"]
    assert queues.poison() == [text]
    assert bc.order_posts() == 5 and bc.orders(key) == []
    assert [i.outcome for i in host.invocations] == ["succeeded"] * 5


def test_order_failing_briefly_is_created_once_on_a_later_attempt(
        fast_retry_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = fast_retry_host(BC_MAX_RETRIES="0")
    bc.emulator.faults.add_rule(action="error_before", method="POST", path_regex="/salesOrders$",
                                status=429, count=2)
    key = new_key()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key}])
    host.wait_idle(60)

    [result] = queues.results()
    [order] = bc.orders(key)
    assert (result["status"], result["salesOrderId"]) == ("created", order["id"])
    assert [i.outcome for i in host.invocations] == ["failed", "failed", "succeeded"]
    assert queues.poison() == []


def test_every_order_is_created_exactly_once_while_bc_throttles(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    from connector.runtime import get_runtime

    host = order_host()
    bc.emulator.faults.configure({"rate": 0.2, "statuses": [429, 503], "retry_after": 0.05, "seed": 11,
                                  "latency_seconds": 0.05})
    keys = [new_key("THR") for _ in range(30)]
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key, "salesOrderLines": [
        {"itemNumber": "1908-S", "variantCode": "BLUE", "quantity": 1}, {"itemNumber": "1896-S"}]}
        for key in keys])
    host.wait_idle(120)

    results = queues.results()
    assert sorted(r["externalDocumentNumber"] for r in results) == sorted(keys)
    assert {r["status"] for r in results} == {"created"}
    orders = [o for o in bc.orders() if o["externalDocumentNumber"] in keys]
    assert sorted(o["externalDocumentNumber"] for o in orders) == sorted(keys)
    assert all(len(o["salesOrderLines"]) == 2 for o in orders)
    throttled = bc.statuses()
    assert throttled.count(429) + throttled.count(503) > 0
    assert get_runtime().bc().budget.max_in_flight == 5  # busy enough to use, never exceed, the budget
