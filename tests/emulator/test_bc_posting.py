"""BC API emulator: draft invoices posted through `Microsoft.NAV.post`, orders through
`Microsoft.NAV.shipAndInvoice`, and external business events (catalogue, subscriptions, notifications
after commit, retries, switch-off) against a real local HTTP receiver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devtools.emulator.bc_api import BCApi
from devtools.emulator.bc_testing import BCClient
from devtools.emulator.seed import CRONUS_UK_ID, WEBSHOP_CUSTOMER
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

RUNTIME = "/v2.0/lmints.io/production/api/microsoft/runtime/v1.0/"


@pytest.fixture
def make(started_api: Callable[..., BCApi]) -> Callable[..., BCClient]:
    def build(**config: Any) -> BCClient:
        config.setdefault("business_event_retry_seconds", (0.05, 0.05, 0.05))
        api = started_api(**config)
        api.business_events.base_url = "https://bc.example"
        return BCClient(api)

    return build


def draft_invoice(bc: BCClient, **extra: Any) -> dict:
    body = {"customerNumber": WEBSHOP_CUSTOMER,
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 2}], **extra}
    response = bc.post(bc.company("salesInvoices"), body)
    assert response.status_code == 201, response.json
    return response.json


def subscribe_event(bc: BCClient, url: str, event: str, **extra: Any) -> dict:
    body = {"companyId": CRONUS_UK_ID, "eventName": event, "notificationUrl": url,
            "appId": "6f2c034f-5ebe-4eae-b34c-90a0d4e87687", "clientState": "s3cr3t", **extra}
    response = bc.post(RUNTIME + "externaleventsubscriptions", body)
    assert response.status_code == 201, response.json
    return response.json


def test_a_draft_invoice_posted_keeps_its_id_and_gets_a_posted_number(make) -> None:
    bc = make()
    draft = draft_invoice(bc)
    assert draft["status"] == "Draft" and draft["number"].startswith("S-INV")
    response = bc.post(bc.company(f"salesInvoices({draft['id']})/Microsoft.NAV.post"))
    assert response.status_code == 204
    posted = bc.get(bc.company(f"salesInvoices({draft['id']})")).json
    assert posted["status"] == "Open" and posted["number"].startswith("PS-INV")
    assert posted["lastModifiedDateTime"] >= draft["lastModifiedDateTime"]
    again = bc.post(bc.company(f"salesInvoices({draft['id']})/Microsoft.NAV.post"))
    assert again.status_code == 400
    assert again.json["error"]["message"].startswith("The action can be applied to a draft invoice only.")


def test_posting_a_draft_notifies_updated_under_the_same_id(make, receiver: Receiver) -> None:
    bc = make()
    bc.post("subscriptions", {"notificationUrl": receiver.url,
                              "resource": f"api/v2.0/companies({CRONUS_UK_ID})/salesInvoices"})
    draft = draft_invoice(bc)
    assert receiver.element(f"salesInvoices({draft['id']})")["changeType"] == "created"
    receiver.notifications.clear()
    bc.post(bc.company(f"salesInvoices({draft['id']})/Microsoft.NAV.post"))
    assert receiver.element(f"salesInvoices({draft['id']})")["changeType"] == "updated"


def test_ship_and_invoice_posts_a_shipment_and_an_invoice_created_posted(make) -> None:
    bc = make()
    order = bc.post(bc.company("salesOrders"), {
        "customerNumber": WEBSHOP_CUSTOMER, "externalDocumentNumber": "WEB-9",
        "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 2}]}).json
    response = bc.post(bc.company(f"salesOrders({order['id']})/Microsoft.NAV.shipAndInvoice"))
    assert response.status_code == 204
    shipments = bc.get(bc.company("salesShipments?$filter=orderNumber eq '" + order["number"] + "'")).json
    invoices = bc.get(bc.company("salesInvoices?$filter=orderNumber eq '" + order["number"] + "'")).json
    assert len(shipments["value"]) == 1 and len(invoices["value"]) == 1
    assert invoices["value"][0]["status"] == "Open"
    assert invoices["value"][0]["externalDocumentNumber"] == "WEB-9"


def test_catalogue_lists_the_posting_events(make) -> None:
    bc = make()
    names = {d["name"] for d in bc.get(RUNTIME + "externalbusinesseventdefinitions").json["value"]}
    assert {"SalesInvoicePosted", "SalesShipmentPosted", "SalesCreditMemoPosted"} <= names


def test_business_events_arrive_after_the_posting_with_the_api_url(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe_event(bc, receiver.url, "SalesInvoicePosted")
    assert sub["subscriptionState"] == "Active"
    draft = draft_invoice(bc)
    bc.post(bc.company(f"salesInvoices({draft['id']})/Microsoft.NAV.post"))
    [note] = receiver.wait(1)
    assert note["eventName"] == "SalesInvoicePosted" and note["clientState"] == "s3cr3t"
    assert note["companyId"] == CRONUS_UK_ID and note["payload"]["SalesInvoiceAPIId"] == draft["id"]
    assert note["payload"]["Url"] == (f"https://bc.example/v2.0/{bc.api.config.tenants['lmints.io']}/production"
                                      f"/api/v2.0/companies({CRONUS_UK_ID})/salesInvoices({draft['id']})")


def test_a_failed_posting_sends_no_business_event(make, receiver: Receiver) -> None:
    bc = make()
    subscribe_event(bc, receiver.url, "SalesInvoicePosted")
    empty = bc.post(bc.company("salesInvoices"), {"customerNumber": WEBSHOP_CUSTOMER}).json
    assert bc.post(bc.company(f"salesInvoices({empty['id']})/Microsoft.NAV.post")).status_code == 400
    bc.api.business_events.run_once(force=True)
    assert receiver.notifications == []


def test_repeated_failures_switch_a_subscription_off(make, receiver: Receiver) -> None:
    bc = make(business_event_failures_to_disable=3)
    sub = subscribe_event(bc, receiver.url, "SalesInvoicePosted")
    receiver.default_status = 400
    draft_id = draft_invoice(bc)["id"]
    bc.post(bc.company(f"salesInvoices({draft_id})/Microsoft.NAV.post"))
    path = RUNTIME + f"externaleventsubscriptions({sub['id']})"
    wait_until(lambda: bc.get(path).json["subscriptionState"] == "Disabled", 10)
    assert len(receiver.notifications) == 3  # the first try and two retries


def test_subscriptions_crud_and_missing_permission(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe_event(bc, receiver.url, "SalesShipmentPosted")
    path = RUNTIME + f"externaleventsubscriptions({sub['id']})"
    changed = bc.patch(path, {"subscriptionState": "Disabled"}, etag=sub["@odata.etag"]).json
    assert changed["subscriptionState"] == "Disabled"
    assert bc.patch(path, {"subscriptionState": "Active"}, etag=sub["@odata.etag"]).status_code == 409
    assert bc.delete(path).status_code == 204
    assert bc.get(RUNTIME + "externaleventsubscriptions").json["value"] == []
    body = {"companyId": CRONUS_UK_ID, "eventName": "NoSuchEvent", "notificationUrl": receiver.url}
    unknown = bc.post(RUNTIME + "externaleventsubscriptions", body)
    assert unknown.status_code == 400
    bc.api.business_events.permitted = False
    refused = bc.get(RUNTIME + "externaleventsubscriptions")
    assert refused.status_code == 403 and "Ext. Events - Subscr" in refused.json["error"]["message"]


def test_blocking_a_customer_raises_customer_blocked_and_unblocking_it_unblocked(make, receiver: Receiver):
    bc = make()
    subscribe_event(bc, receiver.url, "CustomerBlocked")
    subscribe_event(bc, receiver.url, "CustomerUnBlocked")
    customer = bc.get(bc.company("customers?$filter=number eq 'GL00000003'")).json["value"][0]
    path = bc.company(f"customers({customer['id']})")
    assert bc.patch(path, {"blocked": "Invoice"}).status_code == 200
    assert bc.patch(path, {"blocked": "_x0020_"}).status_code == 200
    first, second = receiver.wait(2)
    assert (first["eventName"], first["payload"]["Blocked"]) == ("CustomerBlocked", "Invoice")
    assert second["eventName"] == "CustomerUnBlocked" and first["payload"]["CustomerId"] == customer["id"]
