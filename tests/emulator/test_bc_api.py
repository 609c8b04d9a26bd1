"""BC API emulator: routing, auth, errors and OData reads (in-process, werkzeug test client)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from devtools.emulator.bc_schema import ITEM
from devtools.emulator.bc_testing import BCClient, make_api
from devtools.emulator.odata import format_datetime, parse_datetime
from devtools.emulator.seed import (
    CRONUS_UK_ID,
    CRONUS_USA_ID,
    PAYMENT_TERMS_30_DAYS_ID,
    SANDBOX_COMPANY_ID,
    WEBSHOP_CUSTOMER,
    bulk_create_items,
)

TENANT_ID = "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"


@pytest.fixture(scope="module")
def bc() -> BCClient:
    return BCClient(make_api())


def error_of(response) -> tuple[int, str, str]:
    body = response.json
    return response.status_code, body["error"]["code"], body["error"]["message"]


def all_pages(bc: BCClient, path: str, **kwargs) -> tuple[list[dict], int]:
    response = bc.get(path, **kwargs)
    values, pages = list(response.json["value"]), 1
    while "@odata.nextLink" in response.json:
        response = bc.get(response.json["@odata.nextLink"], **kwargs)
        assert response.status_code == 200, response.json
        values += response.json["value"]
        pages += 1
    return values, pages


# ---- routing, auth -------------------------------------------------------------------------------


def test_companies_per_environment(bc: BCClient) -> None:
    production = bc.get("companies").json["value"]
    assert [(c["id"], c["name"]) for c in production] == [
        (CRONUS_UK_ID, "CRONUS UK Ltd."),
        (CRONUS_USA_ID, "CRONUS USA, Inc."),
    ]
    assert all(c["@odata.etag"].startswith('W/"') for c in production)
    sandbox = BCClient(bc.api, environment="sandbox").get("companies").json["value"]
    assert [c["id"] for c in sandbox] == [SANDBOX_COMPANY_ID]


def test_tenant_by_guid_and_without_tenant_segment(bc: BCClient) -> None:
    by_guid = BCClient(bc.api, tenant=TENANT_ID).get("companies")
    assert by_guid.status_code == 200 and len(by_guid.json["value"]) == 2
    no_tenant = bc.get("/v2.0/production/api/v2.0/companies")
    assert no_tenant.status_code == 200 and len(no_tenant.json["value"]) == 2


def test_missing_or_invalid_token_is_401(bc: BCClient) -> None:
    response = bc.client.get(bc.base + "companies")
    assert error_of(response)[:2] == (401, "Authentication_InvalidCredentials")
    response = bc.client.get(bc.base + "companies", headers={"Authorization": "Bearer nope"})
    assert error_of(response)[:2] == (401, "Authentication_InvalidCredentials")


def test_token_of_another_tenant_is_401() -> None:
    api = make_api(
        tenants={"lmints.io": TENANT_ID, "other.io": "11111111-2222-4333-8444-555555555555"},
        tid="11111111-2222-4333-8444-555555555555",
    )
    assert error_of(BCClient(api).get("companies"))[:2] == (401, "Authentication_InvalidCredentials")


def test_unknown_tenant_and_environment(bc: BCClient) -> None:
    assert error_of(BCClient(bc.api, tenant="nobody.io").get("companies"))[:2] == (
        404,
        "Internal_TenantUnavailable",
    )
    assert error_of(BCClient(bc.api, environment="qa").get("companies"))[0] == 404


def test_error_envelope_has_correlation_id(bc: BCClient) -> None:
    status, code, message = error_of(bc.get(bc.company("nothings")))
    assert (status, code) == (404, "BadRequest_ResourceNotFound")
    assert re.search(r"  CorrelationId:  [0-9a-f-]{36}\.$", message)


def test_unknown_company_and_missing_company(bc: BCClient) -> None:
    assert (
        error_of(bc.get(bc.company("items", "00000000-0000-0000-0000-000000000001")))[1]
        == "Internal_CompanyNotFound"
    )
    assert error_of(bc.get("items"))[1] == "Internal_CompanyNotFound"


def test_company_query_parameter(bc: BCClient) -> None:
    by_query = bc.get(f"items?company={CRONUS_UK_ID}&$top=3").json["value"]
    by_path = bc.get(bc.company("items?$top=3")).json["value"]
    assert by_query == by_path and len(by_query) == 3


def test_method_not_allowed_on_read_only_sets(bc: BCClient) -> None:
    assert error_of(bc.post("companies", {}))[:2] == (405, "BadRequest_MethodNotAllowed")
    assert error_of(bc.post(bc.company("salesShipments"), {}))[:2] == (405, "BadRequest_MethodNotAllowed")
    assert error_of(bc.patch(bc.company("items"), {}))[:2] == (405, "BadRequest_MethodNotAllowed")


# ---- entities ------------------------------------------------------------------------------------


def test_item_has_every_al_field_and_etag(bc: BCClient) -> None:
    item = bc.get(bc.company("items?$filter=number eq '1896-S'")).json["value"][0]
    assert list(item) == ["@odata.etag", *ITEM.fields]
    assert re.fullmatch(r'W/"[A-Za-z0-9+/=]+"', item["@odata.etag"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["lastModifiedDateTime"])


def test_single_entity_and_not_found(bc: BCClient) -> None:
    item = bc.get(bc.company("items?$top=1")).json["value"][0]
    one = bc.get(bc.company(f"items({item['id']})")).json
    assert one["id"] == item["id"] and one["@odata.context"].endswith("/items/$entity")
    missing = bc.get(bc.company("items(00000000-0000-0000-0000-00000000abcd)"))
    assert error_of(missing)[:2] == (404, "Internal_RecordNotFound")
    assert error_of(bc.get(bc.company("items('1896-S')")))[:2] == (400, "BadRequest_NotFound")


def test_seeded_master_data(bc: BCClient) -> None:
    customer = bc.get(bc.company(f"customers?$filter=number eq '{WEBSHOP_CUSTOMER}'")).json["value"][0]
    assert customer["currencyCode"] == "GBP"
    codes = {c["code"] for c in bc.get(bc.company("currencies")).json["value"]}
    assert {"GBP", "EUR", "USD"} <= codes
    terms = bc.get(bc.company(f"paymentTerms({PAYMENT_TERMS_30_DAYS_ID})"))
    assert terms.status_code == 200
    accounts = bc.get(bc.company("accounts?$filter=number eq '6110'")).json["value"]
    assert len(accounts) == 1
    items = bc.get(bc.company("items?$expand=itemVariants")).json["value"]
    assert len(items) >= 20 and {len(i["itemVariants"]) for i in items} == {0, 1, 2, 3}
    shipments = bc.get(bc.company("salesShipments?$expand=salesShipmentLines")).json["value"]
    invoices = bc.get(bc.company("salesInvoices?$expand=salesInvoiceLines")).json["value"]
    assert shipments and all(s["salesShipmentLines"] for s in shipments)
    assert invoices and all(i["salesInvoiceLines"] for i in invoices)


def test_variants_under_item_and_standalone(bc: BCClient) -> None:
    item = bc.get(bc.company("items?$filter=number eq '1908-S'")).json["value"][0]
    nested = bc.get(bc.company(f"items({item['id']})/itemVariants")).json["value"]
    standalone = bc.get(bc.company(f"itemVariants?$filter=itemId eq {item['id']}")).json["value"]
    assert [v["code"] for v in nested] == ["BLUE", "RED", "GREEN"] and nested == standalone
    one = bc.get(bc.company(f"items({item['id']})/itemVariants({nested[0]['id']})")).json
    assert one["itemNumber"] == "1908-S"


# ---- query options -------------------------------------------------------------------------------


def test_filter_operators(bc: BCClient) -> None:
    def numbers(flt: str) -> list[str]:
        response = bc.get(bc.company(f"items?$filter={flt}&$select=number"))
        assert response.status_code == 200, response.json
        return [i["number"] for i in response.json["value"]]

    assert numbers("number eq '1896-S'") == ["1896-S"]
    assert numbers("number eq '1896-S' or number eq '1900-S'") == ["1896-S", "1900-S"]
    assert "1896-S" not in numbers("number ne '1896-S'")
    assert set(numbers("unitPrice gt 1000")) == {"1896-S", "1996-S"}
    assert numbers("unitPrice ge 1000 and unitPrice lt 1100") == ["1896-S"]
    assert numbers("unitPrice le 54.9") == ["1928-S"]
    assert numbers("blocked eq true") == []
    assert numbers("(number eq '1896-S' or number eq '1906-S') and unitPrice gt 500") == ["1896-S"]
    assert numbers("startswith(number,'18') and contains(displayName,'Desk')") == ["1896-S"]


def test_filter_datetime_unquoted_and_guid(bc: BCClient) -> None:
    items = bc.get(bc.company("items")).json["value"]
    stamp = parse_datetime(items[0]["lastModifiedDateTime"])
    before = format_datetime(stamp - timedelta(seconds=1))
    after = format_datetime(stamp + timedelta(hours=1))
    assert len(bc.get(bc.company(f"items?$filter=lastModifiedDateTime gt {before}")).json["value"]) == len(
        items
    )
    assert bc.get(bc.company(f"items?$filter=lastModifiedDateTime gt {after}")).json["value"] == []
    by_id = bc.get(bc.company(f"items?$filter=id eq {items[3]['id'].upper()}")).json["value"]
    assert [i["id"] for i in by_id] == [items[3]["id"]]


@pytest.mark.parametrize(
    "flt, code",
    [
        ("number eq '1896-S' or unitPrice gt 5", "BadRequest_NotSupported"),
        ("number eq", "BadRequest_NotFound"),
        ("number eq '1896-S' and", "BadRequest_NotFound"),
        ("nosuchfield eq 1", "BadRequest_NotFound"),
        ("lastModifiedDateTime gt '2020-01-01T00:00:00Z'", "BadRequest"),
        ("number eq 1896", "BadRequest"),
        ("(number eq '1896-S'", "BadRequest_NotFound"),
    ],
)
def test_filter_errors(bc: BCClient, flt: str, code: str) -> None:
    status, got, message = error_of(bc.get(bc.company(f"items?$filter={flt}")))
    assert (status, got) == (400, code)
    if code == "BadRequest_NotSupported":
        assert "The 'OR' operator is not supported on distinct fields" in message


def test_select_expand_top_orderby(bc: BCClient) -> None:
    rows = bc.get(bc.company("items?$select=number,unitPrice&$expand=itemVariants($select=code)&$top=2"))
    first = rows.json["value"][0]
    assert set(first) == {"@odata.etag", "number", "unitPrice", "itemVariants"}
    assert len(rows.json["value"]) == 2 and "@odata.nextLink" not in rows.json
    variants = bc.get(bc.company("items?$filter=number eq '1908-S'&$expand=itemVariants($select=code)")).json
    assert variants["value"][0]["itemVariants"][0].keys() == {"@odata.etag", "code"}
    ordered = bc.get(bc.company("items?$orderby=unitPrice desc&$top=2&$select=number")).json["value"]
    assert [i["number"] for i in ordered] == ["1996-S", "1896-S"]
    assert error_of(bc.get(bc.company("items?$expand=nothing")))[1] == "BadRequest_NotFound"
    assert error_of(bc.get(bc.company("items?$select=nothing")))[1] == "BadRequest_NotFound"
    assert error_of(bc.get(bc.company("items?$top=-1")))[1] == "BadRequest_NotFound"


def test_order_lines_expand_and_standalone_rules(bc: BCClient) -> None:
    order = bc.get(bc.company("salesOrders?$expand=salesOrderLines($select=sequence,lineType)")).json[
        "value"
    ][0]
    assert [line["sequence"] for line in order["salesOrderLines"]][:2] == [10000, 20000]
    status, code, message = error_of(bc.get(bc.company("salesOrderLines")))
    assert (status, code) == (400, "Application_DialogException")
    assert message.startswith("You must specify an Id or a Document Id to get the lines.")
    lines = bc.get(bc.company(f"salesOrderLines?$filter=documentId eq {order['id']}")).json["value"]
    assert [line["sequence"] for line in lines] == [line["sequence"] for line in order["salesOrderLines"]]
    assert "lastModifiedDateTime" not in lines[0]
    one = bc.get(bc.company(f"salesOrderLines({lines[0]['id']})"))
    assert one.status_code == 200


def test_paging_with_prefer_and_skiptoken_keeps_options(bc: BCClient) -> None:
    path = bc.company(
        "items?$filter=unitPrice gt 100&$select=number,unitPrice&$expand=itemVariants($select=code)"
    )
    first = bc.get(path, headers={"Prefer": "odata.maxpagesize=4"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=4"
    link = first.json["@odata.nextLink"]
    query = parse_qs(urlsplit(link).query)
    assert query["$filter"] == ["unitPrice gt 100"] and "$skiptoken" in query
    assert query["$expand"] == ["itemVariants($select=code)"] and query["$select"] == ["number,unitPrice"]
    values, pages = all_pages(bc, path, headers={"Prefer": "odata.maxpagesize=4"})
    unpaged = bc.get(path).json["value"]
    assert values == unpaged and pages == -(-len(unpaged) // 4)
    assert all(v["unitPrice"] > 100 and "itemVariants" in v for v in values)


def test_server_page_size_from_config() -> None:
    bc = BCClient(make_api(page_size=5))
    response = bc.get(bc.company("items"), headers={"Prefer": "odata.maxpagesize=50"})
    assert (
        len(response.json["value"]) == 5 and response.headers["Preference-Applied"] == "odata.maxpagesize=5"
    )
    values, _ = all_pages(bc, bc.company("items"))
    assert len(values) == 20 and len({v["id"] for v in values}) == 20


def test_top_larger_than_page_is_continued(bc: BCClient) -> None:
    values, pages = all_pages(bc, bc.company("items?$top=7"), headers={"Prefer": "odata.maxpagesize=3"})
    assert len(values) == 7 and pages == 3


def test_webhook_supported_resources(bc: BCClient) -> None:
    url = (
        f"/v2.0/lmints.io/production/api/microsoft/runtime/beta/companies({CRONUS_UK_ID})"
        "/webhookSupportedResources"
    )
    listed = {r["resource"] for r in bc.get(url + "?$filter=resource eq 'v2.0*'").json["value"]}
    # BC's rule: a non-temporary source table with a single key that is not a system table
    assert {"v2.0/items", "v2.0/itemVariants", "v2.0/salesShipments", "v2.0/salesInvoices",
            "v2.0/currencies", "v2.0/paymentTerms", "v2.0/salesShipmentLines"} <= listed
    assert not {"v2.0/salesOrderLines", "v2.0/salesInvoiceLines", "v2.0/companies"} & listed


def test_bulk_catalogue_pages_to_the_last_item_by_skiptoken() -> None:
    """Correctness at catalogue scale; the speed (100,000 items, last page as cheap as the first)
    is measured by `python -m bench emulator`."""
    api = make_api()
    company = api.store.company(TENANT_ID, "production", CRONUS_UK_ID)
    ids = bulk_create_items(api.store, company, 3000, 3)
    bc = BCClient(api)
    prefer = {"Prefer": "odata.maxpagesize=1000"}
    first = bc.get(bc.company("items?$expand=itemVariants"), headers=prefer)
    assert len(first.json["value"]) == 1000
    before_last_page = company.sets["items"].order[-1001].seq
    token_link = re.sub(r"\$skiptoken=\d+", f"$skiptoken={before_last_page}", first.json["@odata.nextLink"])
    last = bc.get(token_link, headers=prefer)
    assert [i["id"] for i in last.json["value"]] == ids[-1000:] and "@odata.nextLink" not in last.json
    assert all(len(i["itemVariants"]) == 3 for i in last.json["value"])


def test_skip_then_paging(bc: BCClient) -> None:
    everything = [i["number"] for i in bc.get(bc.company("items?$select=number")).json["value"]]
    values, _ = all_pages(
        bc, bc.company("items?$select=number&$skip=5"), headers={"Prefer": "odata.maxpagesize=4"}
    )
    assert [v["number"] for v in values] == everything[5:]
    ordered = bc.get(bc.company("items?$select=number&$orderby=number&$skip=1&$top=2")).json["value"]
    assert [v["number"] for v in ordered] == sorted(everything)[1:3]


def test_seed_none_has_the_companies_but_no_data() -> None:
    bc = BCClient(make_api(seed=None))
    assert [c["id"] for c in bc.get("companies").json["value"]] == [CRONUS_UK_ID, CRONUS_USA_ID]
    assert bc.get(bc.company("items")).json["value"] == []
