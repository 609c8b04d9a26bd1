"""Claim-checked orders: which messages reference a blob, which references are refused, how the blob's
order and the message's fields combine (pure), and reading the blob from Azurite."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from jsonschema import Draft202012Validator, FormatChecker

from connector.orders.payloads import (
    blob_name,
    claim_check,
    expected_blob,
    merged_order,
    order_text,
    read_payload,
)
from connector.orders.schema import OrderRejected, parse_order
from tests.conftest import clear_storage
from tests.orders.support import SEED_EXAMPLE

HOME = "https://stabc.blob.core.windows.net/sales-order-payloads"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def rejected(call: Any, *args: Any) -> OrderRejected:
    with pytest.raises(OrderRejected) as caught:
        call(*args)
    return caught.value


# ------------------------------------------------------------------------------ which messages

def test_an_inline_order_is_not_a_claim_check() -> None:
    assert claim_check(json.dumps(SEED_EXAMPLE)) is None
    assert claim_check(json.dumps(SEED_EXAMPLE | {"shipToName": "dataref"})) is None
    assert claim_check('{"dataref": ') is None  # malformed: parse_order will say so


def test_a_message_with_dataref_is_a_claim_check() -> None:
    fields = {"dataref": f"{HOME}/WEB-1.json", "externalDocumentNumber": "WEB-1"}
    assert claim_check(json.dumps(fields)) == fields


def claim_check_validator() -> Draft202012Validator:
    schema = json.loads((SCHEMAS / "sales-order-claim-check.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_the_published_claim_check_schema_accepts_what_the_connector_reads_as_one() -> None:
    validator = claim_check_validator()
    for message in [*validator.schema["examples"],
                    {"dataref": f"{HOME}/WEB-1.json", "sha256": "ab" * 32, "size": 10,
                     "externalDocumentNumber": "WEB-1", "connection": "default",
                     "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}]:
        assert not list(validator.iter_errors(message)), message
        assert claim_check(json.dumps(message)) == message


@pytest.mark.parametrize("message", [
    SEED_EXAMPLE,  # inline: the other schema
    {"dataref": f"{HOME}/WEB-1.json", "externalDocumentNumber": "WEB-1"},  # no sha256 and size
    {"dataref": f"{HOME}/WEB-1.json", "sha256": "ab" * 32, "size": 10, "shipToNmae": "typo"},  # unknown field
    {"dataref": f"{HOME}/WEB-1.json", "externalDocumentNumber": "K" * 36},
    {"dataref": 42},
])
def test_the_claim_check_schema_refuses_what_the_connector_refuses(message: dict[str, Any]) -> None:
    assert not claim_check_validator().is_valid(message)


# ------------------------------------------------------------------------------ which references

@pytest.mark.parametrize("dataref, name", [
    (f"{HOME}/WEB-1.json", "WEB-1.json"),
    (f"{HOME}/2026/11/WEB%201.json", "2026/11/WEB 1.json"),
    (f"{HOME}/WEB-1.json?sv=2023&sig=abc", "WEB-1.json"),
    ("https://STABC.blob.core.windows.net/sales-order-payloads/a", "a"),
])
def test_a_blob_in_the_payload_container_is_named(dataref: str, name: str) -> None:
    assert blob_name(dataref, HOME) == name


@pytest.mark.parametrize("dataref", [
    "https://other.blob.core.windows.net/sales-order-payloads/WEB-1.json",
    "https://stabc.blob.core.windows.net/bc-event-payloads/WEB-1.json",
    "https://stabc.blob.core.windows.net/sales-order-payloads-old/WEB-1.json",
    f"{HOME}/",
    f"{HOME}/../bc-event-payloads/secret.json",
    f"{HOME}/a/%2E%2E/%2E%2E/x.json",
    "WEB-1.json",
    "",
    42,
    None,
])
def test_any_other_reference_is_refused_naming_the_container(dataref: Any) -> None:
    error = rejected(blob_name, dataref, HOME)
    assert error.code == "InvalidDataRef"
    assert f"{HOME}/<blob name>" in error.message


def test_a_refused_reference_is_quoted_only_so_far() -> None:
    error = rejected(blob_name, "https://evil.example/" + "x" * 100_000, HOME)
    assert len(error.message) < 500


# ------------------------------------------------------------------------------ blob + message

def test_the_messages_fields_are_added_to_the_blobs_order() -> None:
    blob = json.dumps(SEED_EXAMPLE | {"salesOrderLines": [{"itemNumber": "1896-S", "quantity": 1}]})
    text = merged_order({"dataref": "x", "externalDocumentNumber": "WEB-1", "company": "CRONUS UK Ltd."},
                        blob.encode(), "WEB-1.json")

    order = parse_order(text)
    assert (order.externalDocumentNumber, order.company, order.customerNumber) == (
        "WEB-1", "CRONUS UK Ltd.", "GL00000008")
    assert len(order.salesOrderLines) == 1


def test_a_field_given_in_both_must_agree() -> None:
    blob = json.dumps(SEED_EXAMPLE | {"externalDocumentNumber": "WEB-1"}).encode()
    assert parse_order(merged_order({"dataref": "x", "externalDocumentNumber": "WEB-1"}, blob, "b"))

    error = rejected(merged_order, {"dataref": "x", "externalDocumentNumber": "WEB-2"}, blob, "b")
    assert (error.code, error.message) == ("InvalidMessage", "externalDocumentNumber: the message and blob "
                                                             "'b' give different values")


def test_a_byte_order_mark_and_non_ascii_text_are_read() -> None:
    blob = "\ufeff" + json.dumps(SEED_EXAMPLE | {"shipToName": "Zoë Ærø"}, ensure_ascii=False)
    assert parse_order(merged_order({"dataref": "x"}, blob.encode(), "b")).shipToName == "Zoë Ærø"


@pytest.mark.parametrize("payload, code, says", [
    (b"\xff\xfe{}", "DataRefUnreadable", "blob 'b' is not UTF-8 text"),
    (b'{"customerNumber": ', "MalformedJson", "blob 'b' is not valid JSON"),
    (b"[1, 2]", "InvalidMessage", "blob 'b' must hold a JSON object"),
    (b'{"dataref": "https://x/y"}', "InvalidMessage", "blob 'b' has a dataref itself"),
])
def test_a_blob_that_holds_no_order_is_refused(payload: bytes, code: str, says: str) -> None:
    error = rejected(merged_order, {"dataref": "x"}, payload, "b")
    assert error.code == code and says in error.message


def test_the_orders_own_problems_are_named_as_for_an_inline_order() -> None:
    text = merged_order({"dataref": "x"}, json.dumps(SEED_EXAMPLE | {"colour": "red"}).encode(), "b")
    error = rejected(parse_order, text)
    assert (error.code, error.message) == ("InvalidMessage", "colour: unknown field")


# ------------------------------------------------------------------------------ Azurite

@pytest.fixture
def container(azurite: Any) -> ContainerClient:
    clear_storage(azurite.connection_string)
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "sales-order-payloads")
    try:
        client.create_container()
    except ResourceExistsError:
        pass
    return client


def test_an_order_is_read_from_its_blob(container: ContainerClient) -> None:
    order = SEED_EXAMPLE | {"salesOrderLines": [{"itemNumber": "1896-S", "quantity": n} for n in range(1, 9)]}
    container.upload_blob("in/WEB 1.json", json.dumps(order))
    blob = container.get_blob_client("in/WEB 1.json")

    data = json.dumps(order).encode()
    message = {"dataref": blob.url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
               "externalDocumentNumber": "WEB-1"}
    text = order_text(container, json.dumps(message), 10_000)

    assert json.loads(text) == order | {"externalDocumentNumber": "WEB-1"}


def test_an_inline_order_is_passed_through_as_it_is(container: ContainerClient) -> None:
    text = json.dumps(SEED_EXAMPLE)
    assert order_text(container, text, 10) is text


def test_a_missing_blob_is_named(container: ContainerClient) -> None:
    error = rejected(read_payload, container, "nowhere.json", 10_000)
    assert (error.code, error.message) == (
        "DataRefNotFound", "blob 'nowhere.json' does not exist in container 'sales-order-payloads'")


def test_a_missing_container_is_a_missing_blob(azurite: Any) -> None:
    clear_storage(azurite.connection_string)
    absent = ContainerClient.from_connection_string(azurite.connection_string, "sales-order-payloads")
    assert rejected(read_payload, absent, "WEB-1.json", 10_000).code == "DataRefNotFound"


def test_a_blob_over_the_limit_is_not_downloaded(container: ContainerClient) -> None:
    container.upload_blob("big.json", b"x" * 2049)
    error = rejected(read_payload, container, "big.json", 2048)
    assert error.code == "DataRefTooLarge"
    assert "2049 bytes" in error.message and "at most 2048" in error.message
    assert read_payload(container, "big.json", 2049) == b"x" * 2049


def test_a_blob_the_connector_may_not_read_is_refused(container: ContainerClient, azurite: Any) -> None:
    container.upload_blob("WEB-1.json", json.dumps(SEED_EXAMPLE))
    wrong_key = azurite.connection_string.replace("AccountKey=", "AccountKey=AAAA")
    stranger = ContainerClient.from_connection_string(wrong_key, "sales-order-payloads")

    error = rejected(read_payload, stranger, "WEB-1.json", 10_000)

    assert error.code == "DataRefUnreadable"
    assert "HTTP 403" in error.message


# ------------------------------------------------------------------------------ integrity

@pytest.mark.parametrize("fields", [
    {"dataref": "x"}, {"dataref": "x", "sha256": "ab" * 32}, {"dataref": "x", "size": 3},
    {"dataref": "x", "sha256": "zz" * 32, "size": 3}, {"dataref": "x", "sha256": "ab" * 31, "size": 3},
    {"dataref": "x", "sha256": "ab" * 32, "size": -1}, {"dataref": "x", "sha256": "ab" * 32, "size": "3"},
    {"dataref": "x", "sha256": "ab" * 32, "size": True}, {"dataref": "x", "sha256": ["ab" * 32], "size": 3},
])
def test_a_claim_check_must_carry_the_blobs_sha256_and_size(fields: dict[str, Any]) -> None:
    error = rejected(expected_blob, fields)
    assert error.code == "InvalidDataRef" and "sha256" in error.message and "size" in error.message


def test_the_digest_and_size_are_not_added_to_the_order() -> None:
    text = merged_order({"dataref": "x", "sha256": "ab" * 32, "size": 3}, json.dumps(SEED_EXAMPLE).encode(),
                        "b")
    assert json.loads(text) == SEED_EXAMPLE


def test_a_blob_of_another_size_or_digest_is_a_mismatch(container: ContainerClient) -> None:
    data = json.dumps(SEED_EXAMPLE).encode()
    container.upload_blob("shop-a/WEB-1.json", data)
    digest = hashlib.sha256(data).hexdigest()
    assert read_payload(container, "shop-a/WEB-1.json", 10_000, (digest, len(data))) == data
    assert read_payload(container, "shop-a/WEB-1.json", 10_000, (digest.upper().lower(), len(data))) == data
    other_size = rejected(read_payload, container, "shop-a/WEB-1.json", 10_000, (digest, len(data) + 1))
    other_body = rejected(read_payload, container, "shop-a/WEB-1.json", 10_000, ("0" * 64, len(data)))
    assert (other_size.code, other_body.code) == ("DataRefMismatch", "DataRefMismatch")
    assert "bytes, the message says" in other_size.message and "SHA-256" in other_body.message
