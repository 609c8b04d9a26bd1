"""The pure core of Send Created Sales Order: validation, the BC body, claims, error classes, results."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.bc.companies import CompanyNotFound
from connector.bc.errors import BCError, TokenUnavailable, error_from_response
from connector.orders.claims import (
    CLAIM_TTL,
    MAX_DEFER_SECONDS,
    Claim,
    ClaimBusy,
    ClaimState,
    ClaimStep,
    ambiguous_since,
    defer_seconds,
    next_claim_step,
)
from connector.orders.schema import (
    LINE_READ_ONLY,
    ORDER_READ_ONLY,
    OrderRejected,
    SalesOrderResult,
    json_schemas,
    parse_order,
    schema_text,
)
from connector.orders.send import (
    OrderDelivery,
    deep_insert_body,
    failure_error,
    is_permanent,
    key_hint,
    order_result,
)
from connector.orders.variants import odata_string, variant_wanted
from connector.settings import UnknownConnection, host_max_dequeue_count
from tests.orders.support import SEED_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
VARIANT_ID = "0f4c8a52-8d3e-4f6b-9a1c-2b3d4e5f6a7b"


def rejected(message: dict | str) -> OrderRejected:
    with pytest.raises(OrderRejected) as caught:
        parse_order(message if isinstance(message, str) else json.dumps(message))
    return caught.value


# ------------------------------------------------------------------------------ the message

def test_seed_example_is_accepted_and_sent_to_bc_unchanged() -> None:
    order = parse_order(json.dumps(SEED_EXAMPLE))
    assert deep_insert_body(order, {}) == SEED_EXAMPLE


def test_item_number_and_variant_code_become_bc_line_fields() -> None:
    order = parse_order(json.dumps(SEED_EXAMPLE | {"connection": "default", "company": "CRONUS UK Ltd.",
                                                   "salesOrderLines": [
        {"itemNumber": "1900-S", "variantCode": "grey", "quantity": 2},
        {"lineType": "Account", "lineObjectNumber": "6810", "quantity": 1, "unitPrice": 25.5},
        {"lineType": "Comment", "description": "Back door", "sequence": 40000},
    ]}))
    assert variant_wanted(order.salesOrderLines) == {("1900-S", "GREY")}
    body = deep_insert_body(order, {("1900-S", "GREY"): VARIANT_ID})
    assert "connection" not in body and "company" not in body
    assert body["salesOrderLines"] == [
        {"lineType": "Item", "lineObjectNumber": "1900-S", "itemVariantId": VARIANT_ID, "quantity": 2.0},
        {"lineType": "Account", "lineObjectNumber": "6810", "quantity": 1.0, "unitPrice": 25.5},
        {"lineType": "Comment", "description": "Back door", "sequence": 40000},
    ]


def test_variant_code_on_an_item_line_named_by_line_object_number_is_resolved() -> None:
    order = parse_order(json.dumps(SEED_EXAMPLE | {"salesOrderLines": [
        {"lineType": "Item", "lineObjectNumber": "1908-s", "variantCode": "RED"}]}))
    assert variant_wanted(order.salesOrderLines) == {("1908-S", "RED")}
    [line] = deep_insert_body(order, {("1908-S", "RED"): VARIANT_ID})["salesOrderLines"]
    assert line == {"lineType": "Item", "lineObjectNumber": "1908-s", "itemVariantId": VARIANT_ID}


def test_null_fields_are_left_out_of_the_bc_body() -> None:
    order = parse_order(json.dumps(SEED_EXAMPLE | {"shipToName": None, "externalDocumentNumber": None}))
    assert deep_insert_body(order, {}) == SEED_EXAMPLE


@pytest.mark.parametrize("field", sorted(ORDER_READ_ONLY))
def test_read_only_order_field_is_refused_by_name_with_the_reason(field: str) -> None:
    error = rejected(SEED_EXAMPLE | {field: "x"})
    assert error.code == "InvalidMessage"
    assert error.message == f"{field}: read-only field, not accepted ({ORDER_READ_ONLY[field]})"


@pytest.mark.parametrize("field", sorted(LINE_READ_ONLY))
def test_read_only_line_field_is_refused_by_name_with_the_reason(field: str) -> None:
    error = rejected(SEED_EXAMPLE | {"salesOrderLines": [{"itemNumber": "1896-S"}, {field: 1}]})
    reason = LINE_READ_ONLY[field]
    assert error.message == f"salesOrderLines[1].{field}: read-only field, not accepted ({reason})"


def test_every_problem_of_a_message_is_named() -> None:
    error = rejected({"customerNumber": 8, "colour": "red", "salesOrderLines": [{"quantity": "two"}]})
    assert error.message.split("; ") == [
        "customerNumber: Input should be a valid string (got 8)",
        'salesOrderLines[0].quantity: Input should be a valid number (got "two")',
        "colour: unknown field",
    ]


@pytest.mark.parametrize(("message", "expected"), [
    ("", "MalformedJson"), ("{'single': 'quotes'}", "MalformedJson"), ('{"a": 1', "MalformedJson"),
    ("42", "InvalidMessage"), ("null", "InvalidMessage"),
])
def test_text_that_is_not_a_json_object_is_refused(message: str, expected: str) -> None:
    assert rejected(message).code == expected


@pytest.mark.parametrize(("change", "reason"), [
    ({"customerNumber": None}, "customerNumber or customerId is required"),
    ({"orderDate": "01/09/2023"}, "orderDate: Input should be a valid date"),
    ({"paymentTermsId": "30 DAYS"}, "paymentTermsId: Input should be a valid UUID"),
    ({"pricesIncludeTax": "true"}, "pricesIncludeTax: Input should be a valid boolean"),
    ({"externalDocumentNumber": "X" * 36}, "externalDocumentNumber: String should have at most 35"),
    ({"salesOrderLines": [{"itemNumber": "1896-S", "lineType": "Account"}]},
     'itemNumber is for item lines, but lineType is "Account"'),
    ({"salesOrderLines": [{"itemId": VARIANT_ID, "accountId": VARIANT_ID}]}, '"itemId" and "accountId"'),
    ({"salesOrderLines": [{"itemNumber": "1896-S", "lineObjectNumber": "1900-S"}]}, "name different items"),
    ({"salesOrderLines": [{"variantCode": "RED", "quantity": 1}]}, "variantCode needs the item number"),
    ({"salesOrderLines": [{"itemNumber": "1908-S", "variantCode": "RED", "itemVariantId": VARIANT_ID}]},
     "variantCode or itemVariantId"),
    ({"salesOrderLines": [{"lineType": "Fixed Asset"}]}, "salesOrderLines[0].lineType: Input should be"),
    ({"salesOrderLines": [{"sequence": 0}]}, "salesOrderLines[0].sequence: Input should be greater than 0"),
])
def test_order_breaking_a_bc_rule_is_refused_with_the_rule(change: dict, reason: str) -> None:
    assert reason in rejected(SEED_EXAMPLE | change).message


@pytest.mark.parametrize(("text", "key"), [
    ('{"externalDocumentNumber": "WEB-1", "number": 1}', "WEB-1"),
    ('{"externalDocumentNumber": 7}', None), ("[1]", None), ("{oops", None),
])
def test_failed_result_names_the_key_of_even_an_invalid_message(text: str, key: str | None) -> None:
    assert key_hint(text) == key


lines = st.lists(st.fixed_dictionaries({"itemNumber": st.sampled_from(["1896-S", "1908-S"])}, optional={
    "quantity": st.integers(0, 50), "variantCode": st.just("RED"), "sequence": st.integers(1, 10**6),
    "description": st.text(max_size=20)}), max_size=5)


@settings(max_examples=50, deadline=None)
@given(lines=lines, key=st.none() | st.text(min_size=1, max_size=35))
def test_bc_body_holds_only_writable_bc_fields(lines: list[dict], key: str | None) -> None:
    order = parse_order(json.dumps(SEED_EXAMPLE | {"externalDocumentNumber": key, "salesOrderLines": lines}))
    body = deep_insert_body(order, dict.fromkeys(variant_wanted(order.salesOrderLines), VARIANT_ID))
    assert not set(body) & (set(ORDER_READ_ONLY) | {"connection", "company"})
    for sent, line in zip(lines, body.get("salesOrderLines", []), strict=True):
        assert not set(line) & (set(LINE_READ_ONLY) | {"itemNumber", "variantCode"})
        assert ("sequence" in line) == ("sequence" in sent)
        assert (line["lineType"], line["lineObjectNumber"]) == ("Item", sent["itemNumber"])
    assert parse_order(json.dumps(body)).externalDocumentNumber == key


def test_odata_string_literal_doubles_single_quotes() -> None:
    assert odata_string("O'Brien's #1") == "'O''Brien''s #1'"


# ------------------------------------------------------------------------------ results and schemas

def test_result_message_has_exactly_the_contract_fields() -> None:
    result = order_result("created", "WEB-1", {"id": "abc", "number": "S-ORD101005"})
    assert json.loads(result.to_message()) == {"externalDocumentNumber": "WEB-1", "status": "created",
                                               "salesOrderId": "abc", "number": "S-ORD101005",
                                               "error": None, "traceparent": None}
    failed = order_result("failed", None, error=failure_error(OrderRejected("MalformedJson", "bad")))
    assert json.loads(failed.to_message()) == {"externalDocumentNumber": None, "status": "failed",
                                               "salesOrderId": None, "number": None,
                                               "error": {"code": "MalformedJson", "message": "bad"},
                                               "traceparent": None}
    assert set(SalesOrderResult.model_json_schema()["required"]) == set(json.loads(result.to_message()))


def test_published_schema_files_are_the_generated_ones() -> None:
    for name, schema in json_schemas().items():
        assert (ROOT / "schemas" / name).read_text(encoding="utf-8") == schema_text(schema), (
            f"schemas/{name} is stale: run `python -m connector schema`")


# ------------------------------------------------------------------------------ errors

@pytest.mark.parametrize(("error", "permanent"), [
    (OrderRejected("UnknownVariant", "x"), True),
    (UnknownConnection("emea", ("default",)), True),
    (CompanyNotFound("company 'X' not found"), True),
    (error_from_response(400, {"error": {"code": "Internal_RecordNotFound", "message": "no"}}), True),
    (error_from_response(401, None), True),
    (error_from_response(429, None), False),
    (error_from_response(503, None), False),
    (error_from_response(504, None, idempotent=False), False),
    (BCError("no response within 100s", retryable=True, ambiguous=True), False),
    (TokenUnavailable("default", "refresh-failed"), False),
    (ClaimBusy("busy"), False),
    (ConnectionResetError("storage went away"), False),
])
def test_only_errors_that_a_retry_cannot_fix_are_permanent(error: Exception, permanent: bool) -> None:
    assert is_permanent(error) is permanent


def test_failure_error_carries_bc_code_and_message() -> None:
    error = error_from_response(400, {"error": {"code": "Internal_RecordNotFound",
                                                "message": "The Customer does not exist."}})
    assert failure_error(error).model_dump() == {"code": "Internal_RecordNotFound",
                                                 "message": "The Customer does not exist."}
    assert failure_error(UnknownConnection("emea", ("default",))).model_dump() == {
        "code": "UnknownConnection", "message": "unknown connection 'emea' (configured: default)"}
    assert failure_error(KeyError("id")).code == "InternalError"


def test_last_attempt_follows_the_host_max_dequeue_count() -> None:
    assert host_max_dequeue_count() == json.loads((ROOT / "host.json").read_text())["extensions"]["queues"][
        "maxDequeueCount"]
    assert [OrderDelivery("{}", "m", n, 5).last_attempt for n in (1, 4, 5, 6)] == [False, False, True, True]


# ------------------------------------------------------------------------------ claims

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("claim", "step"), [
    (None, ClaimStep.CLAIM),
    (Claim("me", ClaimState.CREATED, NOW), ClaimStep.REPEAT),
    (Claim("me", ClaimState.DUPLICATE, NOW), ClaimStep.REPEAT),
    (Claim("other", ClaimState.CREATED, NOW - timedelta(days=30)), ClaimStep.DUPLICATE),
    (Claim("me", ClaimState.CREATING, NOW), ClaimStep.RESUME),
    (Claim("me", ClaimState.UNCERTAIN, NOW), ClaimStep.RESUME),
    (Claim("other", ClaimState.CREATING, NOW - timedelta(seconds=5)), ClaimStep.WAIT),
    (Claim("other", ClaimState.UNCERTAIN, NOW - CLAIM_TTL + timedelta(seconds=1)), ClaimStep.DEFER),
    (Claim("other", ClaimState.CREATING, NOW - CLAIM_TTL - timedelta(seconds=1)), ClaimStep.TAKE_OVER),
])
def test_claim_step_for_what_a_delivery_finds(claim: Claim | None, step: ClaimStep) -> None:
    assert next_claim_step(claim, "me", NOW) is step


EARLIER = NOW - timedelta(minutes=3)


@pytest.mark.parametrize(("claim", "since"), [
    (None, None),
    (Claim("me", ClaimState.CREATED, EARLIER), None),
    (Claim("me", ClaimState.UNCERTAIN, NOW, uncertain_since=EARLIER), EARLIER),
    (Claim("me", ClaimState.UNCERTAIN, EARLIER), EARLIER),  # a row from before `uncertainSince`
    (Claim("gone", ClaimState.CREATING, EARLIER), EARLIER),  # its owner may have died mid-POST
], ids=["none", "done", "uncertain", "uncertain-old-row", "creating"])
def test_a_post_may_still_commit_since_the_last_ambiguous_attempt(claim: Claim | None,
                                                                  since: datetime | None) -> None:
    assert ambiguous_since(claim) == since


@pytest.mark.parametrize(("since", "window", "seconds"), [
    (None, 600, 0),
    (NOW - timedelta(seconds=30), 600, 570),
    (NOW - timedelta(seconds=599.2), 600, 1),  # rounded up: never POST a moment too early
    (NOW - timedelta(seconds=600), 600, 0),
    (NOW - timedelta(hours=1), 600, 0),
    (NOW, 30 * 24 * 3600, MAX_DEFER_SECONDS),  # a queue message is invisible for 7 days at most
])
def test_an_uncertain_order_waits_out_the_ambiguity_window(since: datetime | None, window: float,
                                                           seconds: int) -> None:
    assert defer_seconds(since, NOW, window) == seconds


def test_a_huge_invalid_message_still_gets_a_result_that_fits_a_queue_message() -> None:
    message = {f"field{n:05d}" * 500: "x" for n in range(25)} | {"externalDocumentNumber": "K" * 30000}
    error = rejected(message)
    result = order_result("failed", key_hint(json.dumps(message)), error=failure_error(error))
    assert len(result.to_message().encode()) < 8000
    assert error.message.endswith("and 6 more problem(s)")
    assert 'externalDocumentNumber: String should have at most 35 characters (got "KKK' in error.message
