"""BC API emulator, issue 23: a partner's custom API page, item ledger entries written by postings,
vendors, sales quotes with lines, `$metadata` and the runtime's `apiRoutes` (in-process)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from devtools.emulator.bc_testing import BCClient, make_api
from devtools.emulator.seed import CRONUS_UK_ID

SHOP = "/v2.0/lmints.io/production/api/contoso/shop/v1.0/"
RUNTIME = f"/v2.0/lmints.io/production/api/microsoft/runtime/beta/companies({CRONUS_UK_ID})/"


@pytest.fixture
def bc() -> BCClient:
    return BCClient(make_api())


def test_the_partner_page_lives_on_its_own_route_only(bc: BCClient) -> None:
    created = bc.post(SHOP + bc.company("webOrders"), {"customerNumber": "GL00000008", "amount": 12.5})
    assert created.status_code == 201, created.json
    order = created.json
    assert order["number"].startswith("WEB") and order["amount"] == 12.5
    assert "contoso/shop/v1.0" in order["@odata.context"]
    assert bc.get(SHOP + bc.company(f"webOrders({order['id']})")).json["id"] == order["id"]
    missing = bc.get(bc.company("webOrders"))  # not a page of the standard API
    assert missing.status_code == 404 and missing.json["error"]["code"] == "BadRequest_ResourceNotFound"
    assert bc.get(SHOP + bc.company("items")).status_code == 404


def test_the_runtime_lists_the_routes_and_what_can_be_watched_custom_pages_included(bc: BCClient) -> None:
    routes = [r["route"] for r in bc.get(RUNTIME + "apiRoutes").json["value"]]
    assert routes[0] == "v2.0" and "contoso/shop/v1.0" in routes
    resources = {r["resource"] for r in bc.get(RUNTIME + "webhookSupportedResources").json["value"]}
    assert {"v2.0/customers", "v2.0/itemLedgerEntries", "v2.0/vendors", "v2.0/salesQuotes",
            "contoso/shop/v1.0/webOrders"} <= resources
    assert "v2.0/salesQuoteLines" not in resources  # a temporary source table
    only = bc.get(RUNTIME + "webhookSupportedResources", query_string={"$filter": "resource eq 'contoso*'"})
    assert only.json["value"] == [{"resource": "contoso/shop/v1.0/webOrders"}]


def test_a_subscription_to_a_custom_page_is_made_on_its_route(bc: BCClient) -> None:
    resource = f"/api/contoso/shop/v1.0/companies({CRONUS_UK_ID})/webOrders"
    body = {"notificationUrl": "http://127.0.0.1:9/hook", "resource": resource, "clientState": "x"}
    bc.api.webhooks.handshake = lambda url: None  # nobody listens in this test
    wrong = bc.post("subscriptions", body)
    assert wrong.status_code == 400 and "api/v2.0/" in wrong.json["error"]["message"]
    made = bc.post(SHOP + "subscriptions", body)
    assert made.status_code == 201, made.json
    assert made.json["resource"] == resource


def test_a_posted_shipment_writes_one_negative_sale_entry_per_item_line(bc: BCClient) -> None:
    before = len(bc.get(bc.company("itemLedgerEntries")).json["value"])
    api = bc.api
    company = api.store.company(next(iter(api.config.tenants.values())), "production", CRONUS_UK_ID)
    shipment = api.documents.post_shipment(company, None, "GL00000008",
                                           [{"itemNumber": "1896-S", "quantity": 3}])
    entries = bc.get(bc.company("itemLedgerEntries")).json["value"][before:]
    [entry] = entries
    assert (entry["itemNumber"], entry["quantity"], entry["entryType"]) == ("1896-S", -3, "Sale")
    assert entry["documentNumber"] == shipment.data["number"]
    assert entry["documentType"] == "Sales_x0020_Shipment"
    assert entry["entryNumber"] == before + 1 and entry["lastModifiedDateTime"]
    refused = bc.post(bc.company("itemLedgerEntries"), {"itemNumber": "1896-S"})
    assert refused.status_code == 405  # read-only page


def posted_with_lines(bc: BCClient, entity_set: str, lines: str, quantity: int, **fields: Any) -> dict:
    """A sales document of customer GL00000008 created with one item line in one POST, lines expanded."""
    created = bc.post(bc.company(entity_set), {
        "customerNumber": "GL00000008", **fields,
        lines: [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": quantity}]},
        query_string={"$expand": lines})
    assert created.status_code == 201, created.json
    return created.json


def test_a_sales_quote_is_created_with_its_lines_in_one_post(bc: BCClient) -> None:
    quote = posted_with_lines(bc, "salesQuotes", "salesQuoteLines", 2, externalDocumentNumber="Q-1")
    assert quote["number"].startswith("S-QUO") and quote["status"] == "Draft"
    assert [line["quantity"] for line in quote["salesQuoteLines"]] == [2]
    assert quote["totalAmountIncludingTax"] > 0


def test_vendors_and_customers_are_created_and_updated(bc: BCClient) -> None:
    vendor = bc.post(bc.company("vendors"), {"displayName": "Fabrikam"}).json
    assert vendor["number"] and vendor["currencyCode"]
    assert bc.post(bc.company("vendors"), {"number": "V9"}).status_code == 201  # no name needed
    nameless = bc.post(bc.company("customers"), {"number": "C9"})
    assert nameless.json["error"]["code"] == "Application_DialogException"
    customer = bc.post(bc.company("customers"), {"displayName": "Adatum", "email": "a@adatum.example"}).json
    changed = bc.patch(bc.company(f"customers({customer['id']})"), {"email": "b@adatum.example"})
    assert changed.json["email"] == "b@adatum.example"


def test_metadata_describes_every_entity_set_a_route_serves(bc: BCClient) -> None:
    response = bc.get("$metadata")
    assert response.status_code == 200 and response.content_type.startswith("application/xml")
    ns = {"e": "http://docs.oasis-open.org/odata/ns/edm"}
    doc = ET.fromstring(response.data)
    sets = {s.get("Name") for s in doc.iterfind(".//e:EntitySet", ns)}
    assert {"customers", "items", "itemLedgerEntries", "salesQuotes", "salesOrders"} <= sets
    assert "webOrders" not in sets
    [customer] = [t for t in doc.iterfind(".//e:EntityType", ns) if t.get("Name") == "customer"]
    types = {p.get("Name"): p.get("Type") for p in customer.iterfind("e:Property", ns)}
    assert types["id"] == "Edm.Guid" and types["email"] == "Edm.String"
    assert types["lastModifiedDateTime"] == "Edm.DateTimeOffset"
    shop = ET.fromstring(bc.get(SHOP + "$metadata").data)
    assert {s.get("Name") for s in shop.iterfind(".//e:EntitySet", ns)} == {"companies", "webOrders"}


def test_a_sales_credit_memo_is_created_with_its_lines(bc: BCClient) -> None:
    memo = posted_with_lines(bc, "salesCreditMemos", "salesCreditMemoLines", 1,
                             externalDocumentNumber="RMA-1")
    assert memo["number"].startswith("S-CR") and memo["creditMemoDate"] and memo["dueDate"]
    assert [line["quantity"] for line in memo["salesCreditMemoLines"]] == [1]
    assert "shipToName" not in memo  # page 30038 has no ship-to fields


def test_a_purchase_order_needs_a_vendor_and_prices_its_lines_at_the_items_cost(bc: BCClient) -> None:
    missing = bc.post(bc.company("purchaseOrders"), {"orderDate": "2026-12-01"})
    assert missing.json["error"]["message"].startswith('A "vendorNumber" or a "vendorId" must be provided.')
    vendor = bc.post(bc.company("vendors"), {"displayName": "Fabrikam", "city": "Leeds"}).json
    created = bc.post(bc.company("purchaseOrders"), {
        "vendorNumber": vendor["number"],
        "purchaseOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 4}]},
        query_string={"$expand": "purchaseOrderLines"})
    assert created.status_code == 201, created.json
    order = created.json
    assert order["number"].startswith("P-ORD") and order["vendorName"] == "Fabrikam"
    assert order["buyFromCity"] == order["payToCity"] == "Leeds"
    [line] = order["purchaseOrderLines"]
    item = next(i for i in bc.get(bc.company("items")).json["value"] if i["number"] == "1896-S")
    assert line["directUnitCost"] == item["unitCost"] and line["receiveQuantity"] == 4
    assert "unitPrice" not in line
