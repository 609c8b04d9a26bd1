"""BC emulator admin API under /_emulator/bc/ (in-process) and one run through the real https server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from werkzeug.test import Client

from devtools.emulator.bc_documents import SHIPMENT_LINE_TYPES
from devtools.emulator.bc_schema import SALES_ORDER_LINE
from devtools.emulator.bc_testing import BCClient, make_api
from devtools.emulator.seed import CRONUS_UK, CRONUS_UK_ID, WEBSHOP_CUSTOMER

BASE = f"/_emulator/bc/lmints.io/production/{CRONUS_UK_ID}"


@pytest.fixture
def bc() -> Iterator[BCClient]:
    api = make_api(webhook_debounce_seconds=3600)
    yield BCClient(api)
    api.stop()


def admin(bc: BCClient) -> Client:
    return Client(bc.api.admin_app)


def journal(bc: BCClient) -> list[tuple[str, str]]:
    """(entity set, changeType) of every change waiting for the debounce, via the admin API."""
    pending = admin(bc).get("/_emulator/bc/webhooks/pending").json["value"]
    return [(p["entitySet"], p["changeType"]) for p in pending]


def watch(bc: BCClient, *sets: str) -> None:
    """Subscribe to `sets` without a handshake (in-process) so changes are journalled."""
    engine = bc.api.webhooks
    engine.handshake = lambda url: None
    for set_name in sets:
        engine.create(
            bc.api.config.tenants["lmints.io"],
            "production",
            {"notificationUrl": "http://127.0.0.1:9/x", "resource": f"companies({CRONUS_UK_ID})/{set_name}"},
            "",
        )


def test_list_companies_and_sets(bc: BCClient) -> None:
    companies = admin(bc).get("/_emulator/bc/companies").json["value"]
    assert {c["environment"] for c in companies} == {"production", "sandbox"} and len(companies) == 3
    by_name = admin(bc).get(f"/_emulator/bc/lmints.io/production/{quote(CRONUS_UK)}/customers").json["value"]
    assert WEBSHOP_CUSTOMER in {c["number"] for c in by_name}
    orders = admin(bc).get(f"{BASE}/salesOrders").json["value"]
    assert orders and all("salesOrderLines" in o for o in orders)


def test_create_update_delete_item_with_webhook_changes(bc: BCClient) -> None:
    watch(bc, "items", "itemVariants")
    created = admin(bc).post(
        f"{BASE}/items",
        json={"number": "ADM-1", "displayName": "Admin item", "itemVariants": [{"code": "A"}, {"code": "B"}]},
    )
    assert created.status_code == 201 and [v["code"] for v in created.json["itemVariants"]] == ["A", "B"]
    variant = admin(bc).post(f"{BASE}/itemVariants", json={"itemNumber": "ADM-1", "code": "C"})
    assert variant.status_code == 201
    item_id = created.json["id"]
    updated = admin(bc).patch(f"{BASE}/items/{item_id}", json={"unitPrice": 12.5})
    assert updated.json["unitPrice"] == 12.5 and updated.json["@odata.etag"] != created.json["@odata.etag"]
    assert admin(bc).delete(f"{BASE}/itemVariants/{variant.json['id']}").status_code == 204
    assert admin(bc).delete(f"{BASE}/items/{item_id}").status_code == 204
    assert journal(bc) == [
        ("items", "created"),
        ("itemVariants", "created"),
        ("itemVariants", "created"),
        ("itemVariants", "created"),
        ("items", "updated"),
        ("itemVariants", "deleted"),
        ("itemVariants", "deleted"),
        ("itemVariants", "deleted"),
        ("items", "deleted"),
    ]


def test_admin_errors_are_bc_errors(bc: BCClient) -> None:
    response = admin(bc).post(f"{BASE}/items", json={"displayName": "X", "inventory": 3})
    assert response.status_code == 400 and response.json["error"]["code"] == "Application_DialogException"
    assert admin(bc).get("/_emulator/bc/lmints.io/production/nope/items").status_code == 404


def test_bulk_create(bc: BCClient) -> None:
    response = admin(bc).post(f"{BASE}/items/bulk", json={"count": 50, "variants": 2, "prefix": "BLK"})
    assert response.status_code == 201 and response.json["created"] == 50
    found = bc.get(bc.company("items?$filter=startswith(number,'BLK')&$expand=itemVariants")).json["value"]
    assert len(found) == 50 and all(len(i["itemVariants"]) == 2 for i in found)


def post_order(bc: BCClient) -> dict[str, Any]:
    body = {
        "customerNumber": WEBSHOP_CUSTOMER,
        "externalDocumentNumber": "WEB-1001",
        "salesOrderLines": [
            {"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 3},
            {"lineType": "Comment", "description": "fragile"},
            {"lineType": "Item", "lineObjectNumber": "1900-S", "quantity": 1},
        ],
    }
    return bc.post(bc.company("salesOrders"), body).json


def test_post_shipment_and_invoice_from_an_order(bc: BCClient) -> None:
    order = post_order(bc)
    watch(bc, "salesShipments", "salesInvoices", "salesOrders")
    stock = bc.get(bc.company("items?$filter=number eq '1896-S'")).json["value"][0]
    shipment = admin(bc).post(
        f"{BASE}/salesShipments",
        json={"orderNumber": order["number"], "lines": [{"sequence": 10000, "quantity": 2}]},
    )
    assert shipment.status_code == 201
    assert shipment.json["orderNumber"] == order["number"] and "orderId" not in shipment.json
    assert shipment.json["externalDocumentNumber"] == "WEB-1001"  # copied from the order, as BC does
    assert shipment.json["id"] != order["id"]  # a posted shipment has an id of its own
    assert shipment.json["number"].startswith("S-SHPT") and shipment.json["paymentTermsCode"]
    lines = shipment.json["salesShipmentLines"]
    assert [(line["lineType"], line["lineObjectNumber"], line["quantity"], line["sequence"])
            for line in lines] == [("Item", "1896-S", 2, 10000), ("_x0020_", "", 0, 20000)]
    assert lines[1]["description"] == "fragile"  # comment lines are copied on posting
    after = bc.get(bc.company("items?$filter=number eq '1896-S'")).json["value"][0]
    assert after["inventory"] == stock["inventory"] - 2 and after["@odata.etag"] == stock["@odata.etag"]
    order_lines = bc.get(bc.company(f"salesOrderLines?$filter=documentId eq {order['id']}")).json["value"]
    assert order_lines[0]["shippedQuantity"] == 2 and order_lines[0]["shipQuantity"] == 1
    invoice = admin(bc).post(f"{BASE}/salesInvoices", json={"orderId": order["id"]})
    assert invoice.status_code == 201 and invoice.json["status"] == "Open"
    assert invoice.json["orderNumber"] == order["number"] and invoice.json["orderId"] == order["id"]
    assert invoice.json["externalDocumentNumber"] == "WEB-1001"
    assert invoice.json["id"] not in (order["id"], shipment.json["id"])
    assert [(line["lineType"], line["quantity"], line["description"])
            for line in invoice.json["salesInvoiceLines"]] == [
        ("Item", 2, lines[0]["description"]), ("Comment", 0, "fragile")]
    assert ("salesShipments", "created") in journal(bc) and ("salesInvoices", "created") in journal(bc)
    assert ("salesOrders", "updated") in journal(bc)


def test_shipment_lines_carry_bc_s_sales_line_type_names(bc: BCClient) -> None:
    order = bc.post(bc.company("salesOrders"), {
        "customerNumber": WEBSHOP_CUSTOMER,
        "salesOrderLines": [
            {"lineType": "Account", "lineObjectNumber": "6110", "quantity": 1, "unitPrice": 5},
            {"lineType": "Comment", "description": "by hand"},
            {"lineType": "Item", "lineObjectNumber": "1900-S", "quantity": 1},
        ],
    }).json
    shipment = admin(bc).post(f"{BASE}/salesShipments", json={"orderId": order["id"]}).json
    assert [line["lineType"] for line in shipment["salesShipmentLines"]] == [
        "G_x002F_L_x0020_Account", "_x0020_", "Item"]
    # every order line type has its posted counterpart, e.g. Charge → "Charge (Item)"
    assert set(SHIPMENT_LINE_TYPES) == set(SALES_ORDER_LINE.enums["lineType"])
    assert SHIPMENT_LINE_TYPES["Charge"] == "Charge_x0020__x0028_Item_x0029_"


def test_fully_invoiced_order_is_deleted(bc: BCClient) -> None:
    order = post_order(bc)
    watch(bc, "salesOrders")
    admin(bc).post(f"{BASE}/salesShipments", json={"orderId": order["id"]})
    invoice = admin(bc).post(f"{BASE}/salesInvoices", json={"orderId": order["id"]}).json
    assert (
        invoice["orderId"] == "00000000-0000-0000-0000-000000000000"
        and invoice["orderNumber"] == order["number"]
    )
    assert bc.get(bc.company(f"salesOrders({order['id']})")).status_code == 404
    assert journal(bc)[-1] == ("salesOrders", "deleted")


def test_ad_hoc_shipment_and_invoice(bc: BCClient) -> None:
    shipment = admin(bc).post(
        f"{BASE}/salesShipments",
        json={"customerNumber": WEBSHOP_CUSTOMER, "lines": [{"itemNumber": "1906-S", "quantity": 4}]},
    )
    assert shipment.status_code == 201 and shipment.json["orderNumber"] == ""
    invoice = admin(bc).post(
        f"{BASE}/salesInvoices",
        json={
            "customerNumber": WEBSHOP_CUSTOMER,
            "lines": [{"accountNumber": "6110", "quantity": 1, "unitPrice": 50}],
        },
    )
    assert invoice.json["totalAmountExcludingTax"] == 50 and invoice.json["remainingAmount"] == 60


def test_webhook_admin_routes(bc: BCClient) -> None:
    watch(bc, "items")
    subs = admin(bc).get("/_emulator/bc/subscriptions").json["value"]
    assert len(subs) == 1 and subs[0]["environment"] == "production"
    supported = admin(bc).put("/_emulator/bc/webhooks/supported", json={"resources": ["items", "noSuchSet"]})
    assert supported.status_code == 400
    supported = admin(bc).put(
        "/_emulator/bc/webhooks/supported", json={"resources": ["items", "salesOrderLines"]}
    )
    assert supported.json["value"] == ["items", "salesOrderLines"]
    listed = bc.get(
        f"/v2.0/lmints.io/production/api/microsoft/runtime/beta/companies({CRONUS_UK_ID})/"
        "webhookSupportedResources"
    ).json["value"]
    assert listed == [{"resource": "v2.0/items"}, {"resource": "v2.0/salesOrderLines"}]
    assert admin(bc).post("/_emulator/bc/webhooks/flush").status_code == 200
    deliveries = admin(bc).get("/_emulator/bc/webhooks/deliveries").json["value"]
    assert deliveries == []  # nothing pending, handshake was stubbed
    assert admin(bc).delete(f"/_emulator/bc/subscriptions/{subs[0]['subscriptionId']}").status_code == 204
    assert bc.get("subscriptions").json["value"] == []
    assert admin(bc).delete("/_emulator/bc/subscriptions/nope").status_code == 404


def test_through_the_real_https_server() -> None:
    from devtools.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(webhook_debounce_seconds=0.05)) as emulator:
        token = emulator.entra.issue_access_token("5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60", "lmints.io")
        session = requests.Session()
        session.trust_env = False
        session.verify = emulator.ca_bundle
        session.headers["Authorization"] = f"Bearer {token}"
        base = emulator.bc_base("lmints.io", "production")
        companies = session.get(f"{base}/companies").json()["value"]
        assert CRONUS_UK_ID in {c["id"] for c in companies}
        page = session.get(
            f"{base}/companies({CRONUS_UK_ID})/items?$expand=itemVariants",
            headers={"Prefer": "odata.maxpagesize=5"},
        )
        assert page.headers["Preference-Applied"] == "odata.maxpagesize=5"
        assert page.json()["@odata.nextLink"].startswith(
            f"{emulator.url}/v2.0/lmints.io/production/api/v2.0/"
        )
        assert session.get(page.json()["@odata.nextLink"]).status_code == 200
        assert session.get(f"{base}/companies", headers={"Authorization": "Bearer junk"}).status_code == 401
        bulk = session.post(
            f"{emulator.url}/_emulator/bc/lmints.io/production/{CRONUS_UK_ID}/items/bulk", json={"count": 3}
        )
        assert bulk.status_code == 201


def test_read_only_sets_via_admin(bc: BCClient) -> None:
    created = admin(bc).post(f"{BASE}/accounts", json={"number": "9999"})
    assert created.status_code == 405 and created.json["error"]["code"] == "BadRequest_MethodNotAllowed"
    shipment = bc.get(bc.company("salesShipments?$top=1")).json["value"][0]
    assert admin(bc).delete(f"{BASE}/salesShipments/{shipment['id']}").status_code == 204
    lines = bc.get(bc.company(f"salesShipmentLines?$filter=documentId eq {shipment['id']}")).json["value"]
    assert lines == []


def test_a_posted_shipments_header_changes_via_admin_as_update_document_does(bc: BCClient) -> None:
    watch(bc, "salesShipments")
    shipment = bc.get(bc.company("salesShipments?$top=1")).json["value"][0]
    changed = admin(bc).patch(f"{BASE}/salesShipments/{shipment['id']}", json={"shipToName": "Dock 4"})
    assert changed.status_code == 200, changed.json
    assert changed.json["shipToName"] == "Dock 4"
    assert changed.json["lastModifiedDateTime"] > shipment["lastModifiedDateTime"]
    assert journal(bc) == [("salesShipments", "updated")]
    refused = admin(bc).patch(f"{BASE}/salesShipments/{shipment['id']}", json={"id": "x", "nope": 1})
    assert refused.status_code == 400 and "id, nope" in refused.json["error"]["message"]
    through_api = bc.patch(bc.company(f"salesShipments({shipment['id']})"), json={"shipToName": "x"})
    assert through_api.status_code == 405  # read-only for API clients, as in BC
