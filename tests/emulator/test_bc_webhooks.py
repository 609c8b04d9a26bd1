"""BC API emulator webhooks (bc-api.md §7) against a real local HTTP receiver."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from devtools.emulator.bc_api import BCApi
from devtools.emulator.bc_testing import BCClient
from devtools.emulator.odata import format_datetime, parse_datetime
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID, bulk_create_items
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

TENANT_ID = "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"


@pytest.fixture
def make(started_api: Callable[..., BCApi]) -> Callable[..., BCClient]:
    def build(**config: Any) -> BCClient:
        config.setdefault("retry_delays_seconds", (0.05, 0.05, 0.1, 0.1, 0.1))
        return BCClient(started_api(**config))

    return build


def subscribe(
    bc: BCClient, url: str, resource: str = "items", company: str = CRONUS_UK_ID, **extra: Any
) -> dict:
    body = {
        "notificationUrl": url,
        "resource": f"api/v2.0/companies({company})/{resource}",
        "clientState": "s3cr3t",
        **extra,
    }
    response = bc.post("subscriptions", body)
    assert response.status_code == 201, response.json
    return response.json


def new_item(bc: BCClient, number: str) -> dict:
    response = bc.post(bc.company("items"), {"number": number, "displayName": number})
    assert response.status_code == 201
    return response.json





# ---- subscriptions -------------------------------------------------------------------------------


def test_subscription_create_with_handshake(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe(bc, receiver.url)
    assert re.fullmatch(r"[0-9a-f]{32}", sub["subscriptionId"]) and sub["@odata.etag"].startswith('W/"')
    assert receiver.handshakes == ["POST"]
    expires = parse_datetime(sub["expirationDateTime"]) - bc.api.clock.now()
    assert timedelta(days=3) - timedelta(seconds=60) < expires <= timedelta(days=3)
    assert sub["clientState"] == "s3cr3t" and sub["notificationUrl"] == receiver.url
    listed = bc.get("subscriptions").json["value"]
    assert [s["subscriptionId"] for s in listed] == [sub["subscriptionId"]]
    assert bc.get(f"subscriptions('{sub['subscriptionId']}')").json["resource"] == sub["resource"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda token: Response(f'"{token}"'),  # quoted
        lambda token: Response(token, status=202),
        lambda token: Response("nope", status=404),
    ],
)
def test_failed_handshake_stores_nothing(make, receiver: Receiver, answer) -> None:
    bc = make()
    receiver.handshake = answer
    response = bc.post(
        "subscriptions", {"notificationUrl": receiver.url, "resource": f"companies({CRONUS_UK_ID})/items"}
    )
    assert response.status_code == 400 and response.json["error"]["code"] == "BadRequest"
    assert bc.get("subscriptions").json["value"] == []


def test_handshake_timeout_and_unreachable(make, receiver: Receiver) -> None:
    bc = make(handshake_timeout=0.2)
    receiver.handshake = lambda token: (time.sleep(0.5), Response(token))[1]
    slow = bc.post(
        "subscriptions", {"notificationUrl": receiver.url, "resource": f"companies({CRONUS_UK_ID})/items"}
    )
    assert slow.status_code == 400
    dead = bc.post(
        "subscriptions",
        {"notificationUrl": "http://127.0.0.1:9/hook", "resource": f"companies({CRONUS_UK_ID})/items"},
    )
    assert dead.status_code == 400 and bc.get("subscriptions").json["value"] == []


def test_subscription_validation(make, receiver: Receiver) -> None:
    bc = make(max_subscriptions=2)
    bad = [
        {"notificationUrl": receiver.url, "resource": f"companies({CRONUS_UK_ID})/salesOrderLines"},
        {
            "notificationUrl": receiver.url,
            "resource": "companies(9d9d9d9d-0000-4000-8000-000000000000)/items",
        },
        {"notificationUrl": receiver.url, "resource": "items"},
        {
            "notificationUrl": receiver.url,
            "resource": f"companies({CRONUS_UK_ID})/items",
            "clientState": "x" * 2049,
        },
        {"resource": f"companies({CRONUS_UK_ID})/items"},
    ]
    for body in bad:
        assert bc.post("subscriptions", body).status_code == 400, body
    assert receiver.handshakes == []
    subscribe(bc, receiver.url, resource="items")
    subscribe(bc, receiver.url, resource="customers", company=CRONUS_USA_ID)
    capped = bc.post(
        "subscriptions", {"notificationUrl": receiver.url, "resource": f"companies({CRONUS_UK_ID})/items"}
    )
    assert capped.status_code == 400 and "maximum number of subscriptions" in capped.json["error"]["message"]


@pytest.mark.parametrize("entity_set", ["currencies", "paymentTerms", "salesShipmentLines"])
def test_every_set_bc_s_rule_admits_takes_a_subscription(make, receiver: Receiver, entity_set) -> None:
    bc = make()
    assert subscribe(bc, receiver.url, entity_set)["resource"].endswith(f"/{entity_set}")


def test_absolute_and_slash_resources_are_accepted(make, receiver: Receiver) -> None:
    bc = make()
    absolute = f"https://api.businesscentral.dynamics.com/v2.0/lmints.io/production/api/v2.0/companies({CRONUS_UK_ID})/items"
    for resource in (absolute, f"/api/v2.0/companies({CRONUS_UK_ID})/customers"):
        assert (
            bc.post("subscriptions", {"notificationUrl": receiver.url, "resource": resource}).status_code
            == 201
        )


def test_renew_needs_if_match_and_handshakes_again(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe(bc, receiver.url)
    path = f"subscriptions('{sub['subscriptionId']}')"
    assert (
        bc.patch(path, {"clientState": "new"}, etag=None).json["error"]["code"] == "BadRequest_InvalidToken"
    )
    bc.api.clock.advance(24 * 3600)
    renewed = bc.patch(path, {"clientState": "new"}, etag=sub["@odata.etag"])
    assert renewed.status_code == 200 and renewed.json["clientState"] == "new"
    assert parse_datetime(renewed.json["expirationDateTime"]) > parse_datetime(sub["expirationDateTime"])
    assert renewed.json["@odata.etag"] != sub["@odata.etag"] and len(receiver.handshakes) == 2
    assert bc.patch(path, {}, etag=sub["@odata.etag"]).status_code == 409
    receiver.handshake = lambda token: Response("down", status=503)
    failed = bc.patch(path, {}, etag="*")
    assert failed.status_code == 400
    assert bc.get(path).json["expirationDateTime"] == renewed.json["expirationDateTime"]


def test_delete_subscription(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe(bc, receiver.url)
    path = f"subscriptions('{sub['subscriptionId']}')"
    assert bc.delete(path, etag=None).status_code == 400
    assert bc.delete(path, etag=sub["@odata.etag"]).status_code == 204
    assert bc.get(path).status_code == 404
    assert bc.get(f"subscriptions({sub['subscriptionId']})").status_code == 400  # key must be quoted


# ---- notifications -------------------------------------------------------------------------------


def test_created_notification_shape(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe(bc, receiver.url)
    item = new_item(bc, "HOOK-1")
    body = receiver.wait(1)[0]
    assert body == {
        "value": [
            {
                "subscriptionId": sub["subscriptionId"],
                "clientState": "s3cr3t",
                "expirationDateTime": sub["expirationDateTime"],
                "resource": f"api/v2.0/companies({CRONUS_UK_ID})/items({item['id']})",
                "changeType": "created",
                "lastModifiedDateTime": item["lastModifiedDateTime"],
            }
        ]
    }
    headers = receiver.headers[0]
    assert headers["Clientrequestid"] == headers["X-Ms-Correlation-Id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["Clientrequestid"])
    assert headers["Content-Type"] == "application/json"


def test_debounce_merges_consecutive_updates(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)  # every change lands in one batch, however slow the box
    subscribe(bc, receiver.url)
    item = new_item(bc, "HOOK-2")
    path = bc.company(f"items({item['id']})")
    last = None
    for price in (1, 2, 3):
        last = bc.patch(path, {"unitPrice": price}).json
    assert receiver.notifications == []  # held back by the debounce
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert [v["changeType"] for v in values] == ["created", "updated"]
    assert values[1]["lastModifiedDateTime"] == last["lastModifiedDateTime"]
    bc.api.flush_webhooks()
    assert len(receiver.notifications) == 1


def test_update_after_delete_is_not_merged_and_deleted_is_sent(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    subscribe(bc, receiver.url)
    item = new_item(bc, "HOOK-3")
    bc.patch(bc.company(f"items({item['id']})"), {"unitPrice": 1})
    bc.delete(bc.company(f"items({item['id']})"))
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert [v["changeType"] for v in values] == ["created", "updated", "deleted"]


def test_bundled_per_notification_url(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    items_sub = subscribe(bc, receiver.url, "items")
    customers_sub = subscribe(bc, receiver.url, "customers")
    other = subscribe(bc, receiver.url, "items", company=CRONUS_USA_ID)
    new_item(bc, "HOOK-4")
    bc.post(bc.company("customers"), {"displayName": "Hooked"})
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert {v["subscriptionId"] for v in values} == {
        items_sub["subscriptionId"],
        customers_sub["subscriptionId"],
    }
    assert other["subscriptionId"] not in {v["subscriptionId"] for v in values}
    assert len(receiver.notifications) == 1


def test_line_change_notifies_the_order(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    order = bc.post(bc.company("salesOrders"), {"customerNumber": "GL00000001"}).json
    sub = subscribe(bc, receiver.url, "salesOrders")
    bc.post(
        bc.company(f"salesOrders({order['id']})/salesOrderLines"),
        {"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 1},
    )
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert [(v["subscriptionId"], v["changeType"]) for v in values] == [(sub["subscriptionId"], "updated")]
    assert values[0]["resource"].endswith(f"/salesOrders({order['id']})")


def test_collection_notification_with_filter(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60, collection_threshold=5)
    sub = subscribe(bc, receiver.url)
    company = bc.api.store.company(TENANT_ID, "production", CRONUS_UK_ID)
    first = bc.api.clock.now()
    bulk_create_items(bc.api.store, company, 6, 1)
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert len(values) == 1 and values[0]["changeType"] == "collection"
    assert values[0]["subscriptionId"] == sub["subscriptionId"]
    base = f"api/v2.0/companies({CRONUS_UK_ID})/items?$filter=lastModifiedDateTime%20gt%20"
    assert values[0]["resource"].startswith(base)
    since = parse_datetime(values[0]["resource"][len(base) :])  # BC leaves the datetime unencoded
    assert values[0]["resource"] == base + format_datetime(since)
    stamp = parse_datetime(
        bc.get(bc.company("items?$filter=startswith(number,'BULK')")).json["value"][0]["lastModifiedDateTime"]
    )
    assert since == stamp - timedelta(milliseconds=50) and since >= first - timedelta(milliseconds=51)


def test_collection_after_delete_has_no_filter(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60, collection_threshold=3)
    subscribe(bc, receiver.url)
    items = [new_item(bc, f"HOOK-C{n}") for n in range(3)]
    bc.delete(bc.company(f"items({items[0]['id']})"))
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert [(v["changeType"], v["resource"]) for v in values] == [
        ("collection", f"api/v2.0/companies({CRONUS_UK_ID})/items")
    ]


def test_below_threshold_sends_single_notifications(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60, collection_threshold=5)
    subscribe(bc, receiver.url)
    for n in range(4):
        new_item(bc, f"HOOK-S{n}")
    bc.api.flush_webhooks()
    assert [v["changeType"] for v in receiver.wait(1)[0]["value"]] == ["created"] * 4


def test_retry_on_5xx_408_429_then_delivered(make, receiver: Receiver) -> None:
    bc = make()
    receiver.statuses = [503, 408, 429]
    subscribe(bc, receiver.url)
    new_item(bc, "HOOK-R")
    notes = receiver.wait(4)
    assert all(n == notes[0] for n in notes)

    def log() -> list[dict]:
        return [d for d in bc.api.webhooks.deliveries if d["kind"] == "notification"]

    wait_until(lambda: len(log()) == 4)
    assert [(d["status"], d["attempt"]) for d in log()] == [(503, 1), (408, 2), (429, 3), (200, 4)]
    assert len(bc.get("subscriptions").json["value"]) == 1


def test_a_failed_delivery_is_not_resent_before_its_retry_delay(make, receiver: Receiver) -> None:
    bc = make(retry_delays_seconds=(3600, 3600, 3600, 3600, 3600))
    receiver.statuses = [500]
    subscribe(bc, receiver.url)
    new_item(bc, "HOOK-D")
    receiver.wait(1)
    bc.api.flush_webhooks()  # sends only what is due: the retry is an hour away
    assert len(receiver.notifications) == 1
    assert [d["attempt"] for d in bc.api.webhooks.deliveries if d["kind"] == "notification"] == [1]


def test_subscription_deleted_after_sixth_failure(make, receiver: Receiver) -> None:
    bc = make()
    receiver.default_status = 500
    subscribe(bc, receiver.url)
    new_item(bc, "HOOK-F")
    receiver.wait(6)
    wait_until(lambda: bc.get("subscriptions").json["value"] == [])
    bc.api.flush_webhooks()  # anything still pending would be sent now
    assert len(receiver.notifications) == 6


def test_no_response_is_retried(make) -> None:
    bc = make(notification_timeout=2.0)  # ample for an answer on a loaded machine
    slow = Receiver()
    released = threading.Event()
    try:
        slow.handshake = lambda token: Response(token)
        subscribe(bc, slow.url)
        original = slow.__call__
        calls = []

        def hang_once(environ, start_response):
            if "validationToken" not in environ.get("QUERY_STRING", "") and not calls:
                calls.append(1)
                released.wait(30)  # no answer until BC has given up on this POST
            return original(environ, start_response)

        def notifications() -> list[dict]:
            return [d for d in bc.api.webhooks.deliveries if d["kind"] == "notification"]

        slow._server.app = hang_once
        new_item(bc, "HOOK-T")
        wait_until(lambda: bool(notifications()))
        released.set()
        wait_until(lambda: any(d["status"] == 200 for d in notifications()))
        assert notifications()[0]["status"] is None and notifications()[0]["error"]
    finally:
        released.set()
        slow.close()


def test_other_4xx_deletes_every_subscription_of_the_url(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    receiver.statuses = [404]
    subscribe(bc, receiver.url, "items")
    subscribe(bc, receiver.url, "customers")
    other = Receiver()
    try:
        kept = subscribe(bc, other.url, "items")
        new_item(bc, "HOOK-4XX")
        bc.api.flush_webhooks()
        receiver.wait(1)
        other.wait(1)
        assert [s["subscriptionId"] for s in bc.get("subscriptions").json["value"]] == [
            kept["subscriptionId"]
        ]
        new_item(bc, "HOOK-4XX-2")
        bc.api.flush_webhooks()
        assert len(receiver.notifications) == 1
    finally:
        other.close()


def test_expired_subscription_is_deleted_by_the_dispatcher(make, receiver: Receiver) -> None:
    bc = make(subscription_ttl_seconds=60)
    subscribe(bc, receiver.url)
    bc.api.clock.advance(61)
    wait_until(lambda: bc.get("subscriptions").json["value"] == [])
    new_item(bc, "HOOK-E")
    bc.api.flush_webhooks()
    assert receiver.notifications == []


def test_changes_before_subscribing_are_not_sent(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    new_item(bc, "HOOK-B")
    subscribe(bc, receiver.url)
    bc.api.flush_webhooks()
    assert receiver.notifications == []


def test_delivery_log_records_handshakes_and_notifications(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    subscribe(bc, receiver.url)
    new_item(bc, "HOOK-L")
    bc.api.flush_webhooks()
    kinds = [(d["kind"], d["url"], d["status"]) for d in bc.api.webhooks.deliveries]
    assert kinds == [("handshake", receiver.url, 200), ("notification", receiver.url, 200)]
    assert bc.api.webhooks.deliveries[1]["body"] == receiver.notifications[0]
    logged = Client(bc.api.admin_app).get(
        "/_emulator/bc/webhooks/deliveries", query_string={"url": receiver.url}
    )
    assert [(d["kind"], d["attempt"], d["status"]) for d in logged.json["value"]] == [
        ("handshake", 1, 200),
        ("notification", 1, 200),
    ]
    assert Client(bc.api.admin_app).get("/_emulator/bc/webhooks/deliveries?url=http://x/").json["value"] == []


def test_format_of_expiration_is_bc_datetime(make, receiver: Receiver) -> None:
    bc = make()
    sub = subscribe(bc, receiver.url)
    assert sub["expirationDateTime"] == format_datetime(parse_datetime(sub["expirationDateTime"]))


def test_bulk_changes_collapse_into_one_collection_per_subscription(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60, collection_threshold=1000)
    subscribe(bc, receiver.url, "items")
    subscribe(bc, receiver.url, "itemVariants")
    company = bc.api.store.company(TENANT_ID, "production", CRONUS_UK_ID)
    bulk_create_items(bc.api.store, company, 1500, 1)  # speed at 20,000: `python -m bench emulator`
    bc.api.flush_webhooks()
    values = receiver.wait(1)[0]["value"]
    assert [v["changeType"] for v in values] == ["collection", "collection"]
    assert {v["resource"].split("?")[0].rsplit("/", 1)[1] for v in values} == {"items", "itemVariants"}


def test_redirect_answer_deletes_the_subscription(make, receiver: Receiver) -> None:
    bc = make(webhook_debounce_seconds=60)
    receiver.statuses = [307]
    subscribe(bc, receiver.url)
    new_item(bc, "HOOK-307")
    bc.api.flush_webhooks()
    assert bc.get("subscriptions").json["value"] == []
