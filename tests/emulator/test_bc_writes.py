"""BC API emulator: POST/PATCH/DELETE rules, ETags and sales order deep insert (in-process)."""

from __future__ import annotations

import re

import pytest

from devtools.emulator.bc_testing import BCClient, make_api
from devtools.emulator.seed import PAYMENT_TERMS_30_DAYS_ID, WEBSHOP_CUSTOMER

EMPTY = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def bc() -> BCClient:
    return BCClient(make_api())


def error_of(response) -> tuple[int, str, str]:
    assert response.status_code >= 400, response.json
    body = response.json
    return response.status_code, body["error"]["code"], body["error"]["message"]


def item(bc: BCClient, number: str) -> dict:
    return bc.get(bc.company(f"items?$filter=number eq '{number}'&$expand=itemVariants")).json["value"][0]


def order_count(bc: BCClient) -> int:
    return len(bc.get(bc.company("salesOrders")).json["value"])


# ---- generic writes ------------------------------------------------------------------------------


def test_post_item_returns_201_entity(bc: BCClient) -> None:
    response = bc.post(bc.company("items"), {"number": "new-1", "displayName": "New", "unitPrice": 5})
    assert response.status_code == 201
    body = response.json
    assert body["number"] == "NEW-1" and body["type"] == "Inventory" and body["@odata.etag"].startswith('W/"')
    assert response.headers["Location"].endswith(f"/items({body['id']})")
    assert bc.get(bc.company(f"items({body['id']})")).json["displayName"] == "New"


def test_item_post_with_inventory_is_rejected(bc: BCClient) -> None:
    status, code, message = error_of(bc.post(bc.company("items"), {"displayName": "X", "inventory": 5}))
    assert (status, code) == (400, "Application_DialogException")
    assert message.startswith("Inventory cannot be changed during on insert.")


@pytest.mark.parametrize(
    "body, code, text",
    [
        ({"displayName": "X", "colour": "red"}, "BadRequest", "The property 'colour' does not exist"),
        (
            {"displayName": "X", "lastModifiedDateTime": "2024-01-01T00:00:00Z"},
            "BadRequest_InvalidOperation",
            "Control 'lastModifiedDateTime' is read-only.",
        ),
        ({"displayName": 5}, "BadRequest", "Invalid Request Body"),
        ({"displayName": "X", "itemCategoryId": "not-a-guid"}, "BadRequest", "Invalid Request Body"),
        ({"displayName": "X", "type": "Gadget"}, "BadRequest", "is not valid for 'type'"),
        ({"displayName": "X" * 101}, "Application_StringExceededLength", "The length of the string is 101"),
        ({"number": "1896-S"}, "Internal_EntityWithSameKeyExists", "The Item already exists."),
    ],
)
def test_item_post_body_errors(bc: BCClient, body: dict, code: str, text: str) -> None:
    status, got, message = error_of(bc.post(bc.company("items"), body))
    assert (status, got) == (400, code) and text in message


def test_invalid_json_body(bc: BCClient) -> None:
    response = bc.request(
        "POST", bc.company("items"), data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert error_of(response)[:2] == (400, "BadRequest")


def test_patch_needs_if_match_and_rejects_stale_etag(bc: BCClient) -> None:
    desk = item(bc, "1896-S")
    path = bc.company(f"items({desk['id']})")
    assert error_of(bc.patch(path, {"unitPrice": 1}, etag=None))[:2] == (400, "BadRequest_InvalidToken")
    assert error_of(bc.patch(path, {"unitPrice": 1}, etag='W/\\"abc\\"'))[:2] == (
        400,
        "BadRequest_InvalidToken",
    )
    bc.api.clock.advance(1)  # a later lastModifiedDateTime without waiting
    updated = bc.patch(path, {"unitPrice": 1}, etag=desk["@odata.etag"])
    assert updated.status_code == 200 and updated.json["unitPrice"] == 1
    assert updated.json["@odata.etag"] != desk["@odata.etag"]
    assert updated.json["lastModifiedDateTime"] > desk["lastModifiedDateTime"]
    stale = bc.patch(path, {"unitPrice": 2}, etag=desk["@odata.etag"])
    assert error_of(stale)[:2] == (409, "Request_EntityChanged")
    assert bc.patch(path, {"unitPrice": 3}, etag="*").status_code == 200


def test_patch_inventory_does_not_touch_the_item(bc: BCClient) -> None:
    desk = item(bc, "1896-S")
    response = bc.patch(bc.company(f"items({desk['id']})"), {"inventory": 7}, etag=desk["@odata.etag"])
    assert response.json["inventory"] == 7
    assert response.json["@odata.etag"] == desk["@odata.etag"]
    assert response.json["lastModifiedDateTime"] == desk["lastModifiedDateTime"]


def test_delete_with_if_match(bc: BCClient) -> None:
    lamp = item(bc, "1928-S")
    path = bc.company(f"items({lamp['id']})")
    assert error_of(bc.delete(path, etag=None))[:2] == (400, "BadRequest_InvalidToken")
    assert error_of(bc.delete(path, etag='W/"stale"'))[:2] == (409, "Request_EntityChanged")
    assert bc.delete(path, etag=lamp["@odata.etag"]).status_code == 204
    assert bc.get(path).status_code == 404
    variant_ids = [v["id"] for v in lamp["itemVariants"]]
    assert all(bc.get(bc.company(f"itemVariants({v})")).status_code == 404 for v in variant_ids)


def test_item_rename_keeps_id_and_renames_variants(bc: BCClient) -> None:
    chair = item(bc, "1900-S")
    renamed = bc.patch(bc.company(f"items({chair['id']})"), {"number": "1900-X"}).json
    assert renamed["id"] == chair["id"] and renamed["number"] == "1900-X"
    assert {v["itemNumber"] for v in item(bc, "1900-X")["itemVariants"]} == {"1900-X"}


def test_item_deep_insert_with_variants(bc: BCClient) -> None:
    body = {"number": "DEEP-1", "displayName": "Deep", "itemVariants": [{"code": "A"}, {"code": "B"}]}
    created = bc.post(bc.company("items?$expand=itemVariants"), body)
    assert created.status_code == 201
    assert [v["code"] for v in created.json["itemVariants"]] == ["A", "B"]


def test_variant_rules(bc: BCClient) -> None:
    desk, chair = item(bc, "1896-S"), item(bc, "1900-S")
    nested = bc.post(bc.company(f"items({desk['id']})/itemVariants"), {"code": "oak", "description": "Oak"})
    assert nested.status_code == 201 and nested.json["itemId"] == desk["id"] and nested.json["code"] == "OAK"
    standalone = bc.post(bc.company("itemVariants"), {"itemNumber": "1896-S", "code": "ASH"})
    assert standalone.json["itemId"] == desk["id"]
    assert "does not match to an Item" in error_of(bc.post(bc.company("itemVariants"), {"code": "Z"}))[2]
    mismatch = bc.post(bc.company(f"items({desk['id']})/itemVariants"), {"itemId": chair["id"], "code": "Q"})
    assert "The item values do not match to a specific Item." in error_of(mismatch)[2]
    assert (
        error_of(bc.post(bc.company("itemVariants"), {"itemNumber": "1896-S", "code": "OAK"}))[1]
        == "Internal_EntityWithSameKeyExists"
    )


def test_customer_rules(bc: BCClient) -> None:
    assert (
        'A "displayName" must be provided.' in error_of(bc.post(bc.company("customers"), {"email": "a@b"}))[2]
    )
    created = bc.post(bc.company("customers"), {"displayName": "New Shop", "currencyCode": "EUR"}).json
    assert re.fullmatch(r"GL\d{8}", created["number"]) and created["currencyCode"] == "EUR"
    assert created["currencyId"] != EMPTY
    assert (
        error_of(bc.post(bc.company("customers"), {"displayName": "X", "currencyCode": "XYZ"}))[1]
        == "Internal_RecordNotFound"
    )


# ---- sales orders --------------------------------------------------------------------------------


def order_body(**extra) -> dict:
    return {
        "customerNumber": WEBSHOP_CUSTOMER,
        "externalDocumentNumber": "SHOP-1",
        "salesOrderLines": [
            {"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 2},
            {"lineType": "Item", "lineObjectNumber": "1908-S", "quantity": 1, "unitPrice": 100},
        ],
        **extra,
    }


def test_sales_order_deep_insert(bc: BCClient) -> None:
    response = bc.post(bc.company("salesOrders?$expand=salesOrderLines"), order_body())
    assert response.status_code == 201
    order = response.json
    assert re.fullmatch(r"S-ORD\d{6}", order["number"]) and order["status"] == "Draft"
    assert order["customerNumber"] == WEBSHOP_CUSTOMER and order["currencyCode"] == "GBP"
    assert order["paymentTermsId"] == PAYMENT_TERMS_30_DAYS_ID
    lines = order["salesOrderLines"]
    assert [line["sequence"] for line in lines] == [10000, 20000]
    assert lines[0]["unitPrice"] == 1000.8 and lines[0]["description"] == "ATHENS Desk"
    assert all("lastModifiedDateTime" not in line and line["documentId"] == order["id"] for line in lines)
    assert order["totalAmountExcludingTax"] == pytest.approx(2101.6)
    assert order["totalAmountIncludingTax"] == pytest.approx(2101.6 * 1.2)
    plain = bc.post(bc.company("salesOrders"), order_body()).json
    assert "salesOrderLines" not in plain
    assert int(plain["number"][5:]) == int(order["number"][5:]) + 1


def test_sales_order_line_identified_by_item_id_with_variant(bc: BCClient) -> None:
    chair = item(bc, "1908-S")
    body = {
        "customerId": bc.get(bc.company(f"customers?$filter=number eq '{WEBSHOP_CUSTOMER}'")).json["value"][
            0
        ]["id"],
        "salesOrderLines": [
            {"itemId": chair["id"], "itemVariantId": chair["itemVariants"][1]["id"], "quantity": 3},
            {"lineType": "Account", "lineObjectNumber": "6110", "quantity": 1, "unitPrice": 9},
            {"lineType": "Comment", "description": "Gift wrap"},
        ],
    }
    order = bc.post(bc.company("salesOrders?$expand=salesOrderLines"), body).json
    first, account, comment = order["salesOrderLines"]
    assert first["lineType"] == "Item" and first["lineObjectNumber"] == "1908-S"
    assert first["itemVariantId"] == chair["itemVariants"][1]["id"]
    assert account["accountId"] != EMPTY and account["itemId"] == EMPTY
    assert comment["lineType"] == "Comment" and comment["amountExcludingTax"] == 0


@pytest.mark.parametrize(
    "body, code, text",
    [
        (
            {"externalDocumentNumber": "X"},
            "Application_DialogException",
            'A "customerNumber" or a "customerId" must be provided.',
        ),
        ({"customerNumber": "NOPE"}, "Internal_RecordNotFound", "The Customer does not exist."),
        (
            {"customerId": "9d9d9d9d-0000-4000-8000-000000000000"},
            "Application_DialogException",
            "The sell-to customer cannot be found.",
        ),
        (
            {"customerNumber": WEBSHOP_CUSTOMER, "number": "S-ORD999"},
            "Application_DialogException",
            "You may not enter numbers manually",
        ),
        ({"customerNumber": WEBSHOP_CUSTOMER, "currencyCode": "XYZ"}, "Internal_RecordNotFound", "Currency"),
        (
            {"customerNumber": WEBSHOP_CUSTOMER, "paymentTermsId": "9d9d9d9d-0000-4000-8000-000000000000"},
            "Application_DialogException",
            '"paymentTermsId" does not match',
        ),
        ({"customerNumber": WEBSHOP_CUSTOMER, "status": "Open"}, "BadRequest_InvalidOperation", "read-only"),
        ({"customerNumber": "GL00000010"}, "Application_DialogException", "blocked"),
        (
            {"customerNumber": WEBSHOP_CUSTOMER, "externalDocumentNumber": "X" * 36},
            "Application_StringExceededLength",
            "less than or equal to 35",
        ),
    ],
)
def test_sales_order_header_errors(bc: BCClient, body: dict, code: str, text: str) -> None:
    status, got, message = error_of(bc.post(bc.company("salesOrders"), body))
    assert (status, got) == (400, code) and text in message


@pytest.mark.parametrize(
    "line, code, text",
    [
        (
            {"lineType": "Item", "lineObjectNumber": "NOPE", "quantity": 1},
            "Internal_RecordNotFound",
            "The Item does not exist.",
        ),
        (
            {"itemId": "9d9d9d9d-0000-4000-8000-000000000000", "quantity": 1},
            "Application_DialogException",
            "Item does not exist.",
        ),
        (
            {
                "documentId": "9d9d9d9d-0000-4000-8000-000000000000",
                "lineType": "Item",
                "lineObjectNumber": "1896-S",
            },
            "Application_DialogException",
            "documentId",
        ),
        ({"itemId": "ITEM-NUMBER", "quantity": 1}, "BadRequest", "Invalid Request Body"),
        (
            {"lineType": "Item", "lineObjectNumber": "1896-S", "itemVariantId": "WRONG-VARIANT"},
            "Application_DialogException",
            "itemVariantId",
        ),
        ({"lineType": "Account", "lineObjectNumber": "9999"}, "Internal_RecordNotFound", "G/L Account"),
        ({"lineObjectNumber": "1896-S", "quantity": 1}, "Internal_RecordNotFound", "Standard Text"),
        (
            {"lineType": "Item", "lineObjectNumber": "1896-S", "amountExcludingTax": 1},
            "BadRequest_InvalidOperation",
            "read-only",
        ),
    ],
)
def test_deep_insert_line_errors_create_nothing(bc: BCClient, line: dict, code: str, text: str) -> None:
    chair = item(bc, "1908-S")
    if line.get("itemVariantId") == "WRONG-VARIANT":
        line = line | {"itemVariantId": chair["itemVariants"][0]["id"]}
    before = order_count(bc)
    body = order_body()
    body["salesOrderLines"].append(line)
    status, got, message = error_of(bc.post(bc.company("salesOrders"), body))
    assert (status, got) == (400, code) and text in message
    assert order_count(bc) == before


def test_item_and_account_on_one_line(bc: BCClient) -> None:
    desk = item(bc, "1896-S")
    account = bc.get(bc.company("accounts?$filter=number eq '6110'")).json["value"][0]
    body = order_body()
    body["salesOrderLines"] = [{"itemId": desk["id"], "accountId": account["id"]}]
    assert (
        'Both "itemId" and "accountId" are specified.'
        in error_of(bc.post(bc.company("salesOrders"), body))[2]
    )


def test_lines_after_insert_update_header(bc: BCClient) -> None:
    order = bc.post(bc.company("salesOrders"), order_body()).json
    bc.api.clock.advance(1)  # a later lastModifiedDateTime without waiting
    lines_path = bc.company(f"salesOrders({order['id']})/salesOrderLines")
    added = bc.post(lines_path, {"lineType": "Item", "lineObjectNumber": "1906-S", "quantity": 1})
    assert added.status_code == 201 and added.json["sequence"] == 30000
    header = bc.get(bc.company(f"salesOrders({order['id']})")).json
    assert header["@odata.etag"] != order["@odata.etag"]
    assert header["lastModifiedDateTime"] > order["lastModifiedDateTime"]
    assert header["totalAmountExcludingTax"] == pytest.approx(2101.6 + 281.4)
    line_path = bc.company(f"salesOrders({order['id']})/salesOrderLines({added.json['id']})")
    assert error_of(bc.patch(line_path, {"sequence": 99}))[2].startswith(
        "The value for sequence cannot be modified."
    )
    assert (
        'The value for "lineObjectNumber" cannot be modified.'
        in error_of(bc.patch(line_path, {"lineObjectNumber": "1896-S"}))[2]
    )
    assert bc.patch(line_path, {"quantity": 2}).json["amountExcludingTax"] == pytest.approx(562.8)
    assert bc.delete(line_path).status_code == 204
    after = bc.get(bc.company(f"salesOrders({order['id']})")).json
    assert after["totalAmountExcludingTax"] == pytest.approx(2101.6)
    duplicate = bc.post(lines_path, {"sequence": 10000, "lineType": "Comment"})
    assert "a line already exists" in error_of(duplicate)[2]


def test_standalone_line_post_needs_document_id(bc: BCClient) -> None:
    order = bc.post(bc.company("salesOrders"), order_body()).json
    assert (
        "You must specify a document id"
        in error_of(bc.post(bc.company("salesOrderLines"), {"quantity": 1}))[2]
    )
    unknown = bc.post(bc.company("salesOrderLines"), {"documentId": "9d9d9d9d-0000-4000-8000-000000000000"})
    assert "No document with the specified ID exists." in error_of(unknown)[2]
    created = bc.post(
        bc.company("salesOrderLines"),
        {"documentId": order["id"], "lineType": "Comment", "description": "note"},
    )
    assert created.status_code == 201 and created.json["sequence"] == 30000


def test_order_patch_and_delete(bc: BCClient) -> None:
    order = bc.post(bc.company("salesOrders"), order_body()).json
    path = bc.company(f"salesOrders({order['id']})")
    patched = bc.patch(
        path, {"discountAmount": 101.6, "externalDocumentNumber": "SHOP-2"}, etag=order["@odata.etag"]
    )
    assert patched.json["totalAmountExcludingTax"] == pytest.approx(2000)
    assert patched.json["externalDocumentNumber"] == "SHOP-2"
    assert error_of(bc.patch(path, {"salesOrderLines": []}))[1] == "BadRequest"
    assert bc.delete(path, etag=patched.json["@odata.etag"]).status_code == 204
    assert bc.get(bc.company(f"salesOrderLines?$filter=documentId eq {order['id']}")).json["value"] == []


def test_draft_sales_invoice(bc: BCClient) -> None:
    body = {
        "customerNumber": WEBSHOP_CUSTOMER,
        "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 1}],
    }
    invoice = bc.post(bc.company("salesInvoices?$expand=salesInvoiceLines"), body)
    assert invoice.status_code == 201 and invoice.json["status"] == "Draft"
    assert (
        len(invoice.json["salesInvoiceLines"]) == 1 and invoice.json["dueDate"] > invoice.json["invoiceDate"]
    )
    posted = [i for i in bc.get(bc.company("salesInvoices")).json["value"] if i["status"] == "Open"][0]
    assert "posted" in error_of(bc.patch(bc.company(f"salesInvoices({posted['id']})"), {"email": "x@y"}))[2]


def test_failed_deep_insert_does_not_use_a_number(bc: BCClient) -> None:
    first = bc.post(bc.company("salesOrders"), order_body()).json
    bad = order_body()
    bad["salesOrderLines"].append({"lineType": "Item", "lineObjectNumber": "NOPE"})
    assert bc.post(bc.company("salesOrders"), bad).status_code == 400
    second = bc.post(bc.company("salesOrders"), order_body()).json
    assert int(second["number"][5:]) == int(first["number"][5:]) + 1
