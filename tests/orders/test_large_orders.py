"""Large orders by claim check, end to end: a `sales-orders` message references a blob in
`sales-order-payloads` → local host → emulator → results; a bad reference fails and loses nothing."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobServiceClient

from connector.__main__ import main
from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key

pytestmark = pytest.mark.e2e
QUEUE_MESSAGE_LIMIT = 64 * 1024


@pytest.fixture
def payload_blob(azurite: Any) -> Callable[[str, str], BlobClient]:
    """Upload a blob to `sales-order-payloads` as a producer would; returns its client (`.url`)."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)

    def upload(name: str, text: str, container: str = "sales-order-payloads") -> BlobClient:
        try:
            service.create_container(container)
        except ResourceExistsError:
            pass
        blob = service.get_blob_client(container, name)
        blob.upload_blob(text.encode(), overwrite=True)
        return blob

    return upload


def claim(blob: BlobClient, **fields: Any) -> dict[str, Any]:
    """A claim-check message for `blob` as a producer sends it: its URL, SHA-256 and size."""
    data = blob.download_blob().readall() if blob.exists() else b""
    return {"dataref": blob.url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **fields}


def large_order(key: str, lines: int = 500) -> dict[str, Any]:
    return SEED_EXAMPLE | {"externalDocumentNumber": key, "salesOrderLines": [
        {"itemNumber": "1896-S", "quantity": n, "description": f"line {n:04d} " + "x" * 90}
        for n in range(1, lines + 1)]}


def test_an_order_too_large_for_a_queue_message_is_created_from_its_blob(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC,
        payload_blob: Callable[..., BlobClient]) -> None:
    key = new_key("BIG")
    order = json.dumps(large_order(key))
    assert len(order.encode()) > QUEUE_MESSAGE_LIMIT
    with pytest.raises(HttpResponseError):  # why the claim check exists
        queues.send([order])
    blob = payload_blob(f"{key}.json", order)
    host = order_host()

    queues.send([claim(blob, externalDocumentNumber=key)])
    host.wait_idle(60)

    [result] = queues.results()
    [created] = bc.orders(key)
    assert (result["status"], result["salesOrderId"]) == ("created", created["id"])
    lines = sorted(created["salesOrderLines"], key=lambda line: line["sequence"])
    assert [line["quantity"] for line in lines] == list(range(1, 501))
    assert lines[499]["description"].startswith("line 0500 ")
    assert bc.order_posts() == 1
    assert queues.poison() == []
    assert blob.exists()  # the producer's blob: the connector never deletes it


def test_a_bad_reference_fails_with_a_clear_code_and_keeps_the_message(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC,
        payload_blob: Callable[..., BlobClient]) -> None:
    foreign = payload_blob("order.json", json.dumps(SEED_EXAMPLE), container="bc-event-payloads")
    big = payload_blob("big.json", json.dumps(large_order("TOO-BIG", lines=20)))
    missing = big.url.replace("big.json", "missing.json")
    messages = {"FOREIGN-1": claim(foreign, externalDocumentNumber="FOREIGN-1"),
                "BIG-1": claim(big, externalDocumentNumber="BIG-1"),
                "MISSING-1": claim(big, externalDocumentNumber="MISSING-1") | {"dataref": missing}}
    host = order_host(SALES_ORDER_MAX_PAYLOAD_BYTES="2048")

    sent = queues.send(messages.values())
    host.wait_idle(30)

    codes = {r["externalDocumentNumber"]: (r["status"], r["error"]["code"]) for r in queues.results()}
    assert codes == {"FOREIGN-1": ("failed", "InvalidDataRef"), "BIG-1": ("failed", "DataRefTooLarge"),
                     "MISSING-1": ("failed", "DataRefNotFound")}
    assert sorted(queues.poison()) == sorted(sent)  # the references, unchanged
    assert bc.order_posts() == 0


def test_an_order_whose_blob_came_late_is_created_by_replaying_it(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC,
        payload_blob: Callable[..., BlobClient]) -> None:
    key = new_key("LATE")
    early = payload_blob("placeholder.json", "{}")
    dataref = early.url.replace("placeholder.json", f"{key}.json")
    host = order_host()
    body = json.dumps(large_order(key, lines=3)).encode()
    queues.send([{"dataref": dataref, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                  "externalDocumentNumber": key}])
    host.wait_idle(30)
    [failed] = queues.results()
    assert (failed["externalDocumentNumber"], failed["error"]["code"]) == (key, "DataRefNotFound")

    payload_blob(f"{key}.json", body.decode())  # the fix
    assert main(["replay-poison", "sales-orders"]) == 0
    host.wait_idle(30)

    [result] = queues.results()
    [created] = bc.orders(key)
    assert (result["status"], result["salesOrderId"]) == ("created", created["id"])
    assert len(created["salesOrderLines"]) == 3
    assert queues.poison() == []


def test_a_blob_swapped_after_the_message_was_sent_fails_and_keeps_the_message(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC,
        payload_blob: Callable[..., BlobClient]) -> None:
    """Anyone with write on the container (another producer) replaces the body: same size or not,
    the SHA-256 the producer sent does not match, so nothing reaches BC."""
    key, other = new_key("SWAP"), new_key("SWAP")
    genuine = payload_blob(f"shop-a/{key}.json", json.dumps(large_order(key, lines=3)))
    same_size = payload_blob(f"shop-a/{other}.json", json.dumps(large_order(other, lines=3)))
    sent = queues.send([claim(genuine, externalDocumentNumber=key),
                        claim(same_size, externalDocumentNumber=other)])
    payload_blob(f"shop-a/{key}.json", json.dumps(large_order(key, lines=4)))  # another size
    swapped = json.dumps(large_order(other, lines=3)).replace('"quantity": 1,', '"quantity": 9,')
    payload_blob(f"shop-a/{other}.json", swapped)  # the same size, another body
    host = order_host()
    host.wait_idle(30)

    codes = {r["externalDocumentNumber"]: (r["status"], r["error"]["code"]) for r in queues.results()}
    assert codes == {key: ("failed", "DataRefMismatch"), other: ("failed", "DataRefMismatch")}
    assert sorted(queues.poison()) == sorted(sent)
    assert bc.order_posts() == 0


def test_a_claim_check_without_its_digest_is_refused(order_host: Any, queues: OrderQueues, bc: EmulatorBC,
                                                    payload_blob: Callable[..., BlobClient]) -> None:
    key = new_key("NODIGEST")
    blob = payload_blob(f"{key}.json", json.dumps(large_order(key, lines=3)))
    host = order_host()
    queues.send([{"dataref": blob.url, "externalDocumentNumber": key}])
    host.wait_idle(30)
    [failed] = queues.results()
    assert (failed["status"], failed["error"]["code"]) == ("failed", "InvalidDataRef")
    assert "sha256" in failed["error"]["message"] and bc.order_posts() == 0


def test_an_order_with_more_lines_than_the_cap_fails_clearly_before_any_bc_call(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC,
        payload_blob: Callable[..., BlobClient]) -> None:
    """30,000 variant lines once meant 30,000 BC GETs (variant lookups) before the claim."""
    from connector.orders.schema import MAX_ORDER_LINES

    key = new_key("LINES")
    lines = [{"itemNumber": "1896-S", "variantCode": f"V{n}", "quantity": 1} for n in range(30_000)]
    blob = payload_blob(f"{key}.json", json.dumps(SEED_EXAMPLE | {"externalDocumentNumber": key,
                                                                  "salesOrderLines": lines}))
    host = order_host()
    bc.emulator.clear_requests()
    sent = queues.send([claim(blob, externalDocumentNumber=key)])
    host.wait_idle(60)

    [result] = queues.results()
    assert (result["status"], result["externalDocumentNumber"]) == ("failed", key)
    assert result["error"]["code"] == "TooManyLines"
    assert "30000 lines" in result["error"]["message"] and str(MAX_ORDER_LINES) in result["error"]["message"]
    assert [r for r in bc.emulator.requests if "/companies(" in r.path] == []  # not one GET
    assert queues.poison() == sent
