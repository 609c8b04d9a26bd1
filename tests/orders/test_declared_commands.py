"""Declared commands end to end (issue 23): the real app in the local host with COMMANDS added in
settings only; `bc-commands` messages become BC entities exactly once, one result each."""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from connector.settings import QUEUE_COMMAND_RESULTS, QUEUE_COMMANDS, QUEUE_COMMANDS_POISON
from tests.orders.support import OrderQueues
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

DECLARED = json.dumps([
    {"name": "salesQuote", "entitySet": "salesQuotes", "key": "externalDocumentNumber",
     "lines": "salesQuoteLines"},
    {"name": "customer", "entitySet": "customers", "key": "email", "mode": "upsert"},
    {"name": "purchaseOrder", "entitySet": "purchaseOrders", "lines": "purchaseOrderLines"},
])


class Commands:
    def __init__(self, queues: OrderQueues):
        self.queues = queues
        self.results: list[dict[str, Any]] = []

    def send(self, *messages: dict[str, Any] | str) -> None:
        queue = self.queues.queue(QUEUE_COMMANDS)
        for message in messages:
            queue.send_message(message if isinstance(message, str) else json.dumps(message))

    def wait(self, count: int, key: str | None = None) -> list[dict[str, Any]]:
        def arrived() -> list[dict[str, Any]] | None:
            self.results += [json.loads(t) for t in self.queues._drain(QUEUE_COMMAND_RESULTS)]
            mine = [r for r in self.results if key is None or r["key"] == key]
            return mine if len(mine) >= count else None
        return wait_until(arrived, timeout=60, what=f"{count} command result(s)")


@pytest.fixture
def commands(order_host, queues, bc) -> Commands:
    order_host(COMMANDS=DECLARED)
    return Commands(queues)


def test_a_customer_upsert_sent_twice_with_the_same_key_gives_one_customer(commands, bc):
    email = f"buyer-{uuid.uuid4().hex[:8]}@adatum.example"
    upsert = {"type": "customer", "email": email, "displayName": "Adatum Buyer", "phoneNumber": "1"}
    commands.send(upsert)
    [first] = commands.wait(1, email)
    commands.send(upsert | {"phoneNumber": "2"}, upsert | {"phoneNumber": "2"})
    results = commands.wait(3, email)
    customers = [c for c in bc._admin("GET", "customers")["value"] if c["email"] == email]
    assert len(customers) == 1 and customers[0]["phoneNumber"] == "2"
    assert first["status"] == "created" and first["id"] == customers[0]["id"]
    assert sorted(r["status"] for r in results[1:]) == ["unchanged", "updated"]
    assert {r["id"] for r in results} == {customers[0]["id"]}


def test_a_sales_quote_command_gives_one_quote_and_its_repeat_is_a_duplicate(commands, bc):
    key = f"Q-{uuid.uuid4().hex[:12]}"
    quote = {"type": "salesQuote", "externalDocumentNumber": key, "customerNumber": "GL00000008",
             "salesQuoteLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 3}]}
    commands.send(quote)
    [created] = commands.wait(1, key)
    commands.send(quote)
    created, again = commands.wait(2, key)
    quotes = [q for q in bc._admin("GET", "salesQuotes")["value"] if q["externalDocumentNumber"] == key]
    assert len(quotes) == 1 and [line["quantity"] for line in quotes[0]["salesQuoteLines"]] == [3]
    assert (created["status"], created["id"], created["number"]) == ("created", quotes[0]["id"],
                                                                      quotes[0]["number"])
    assert again["status"] == "duplicate" and again["id"] == quotes[0]["id"]


def test_a_purchase_order_without_a_key_field_is_created_once_for_its_message(commands, bc):
    vendor = bc._admin("POST", "vendors", {"displayName": f"Fabrikam {uuid.uuid4().hex[:6]}"})
    commands.send({"type": "purchaseOrder", "vendorNumber": vendor["number"],
                   "purchaseOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 5}]})
    [result] = commands.wait(1, None)
    orders = [o for o in bc._admin("GET", "purchaseOrders")["value"] if o["vendorNumber"] == vendor["number"]]
    assert len(orders) == 1 and result["status"] == "created" and result["id"] == orders[0]["id"]
    assert result["key"] is None and [line["quantity"] for line in orders[0]["purchaseOrderLines"]] == [5]


def test_an_undeclared_command_and_a_field_bc_refuses_fail_with_the_reason_and_are_kept(commands, queues):
    commands.send({"type": "salesInvoice", "customerNumber": "GL00000008"},
                  {"type": "salesQuote", "externalDocumentNumber": "Q-BAD", "customerNumber": "GL00000008",
                   "noSuchField": 1})
    results = commands.wait(2)
    by_type = {r["type"]: r for r in results[-2:]}
    assert by_type["salesInvoice"]["status"] == "failed"
    assert by_type["salesInvoice"]["error"]["code"] == "UnknownCommand"
    refused = by_type["salesQuote"]
    assert refused["status"] == "failed" and "noSuchField" in refused["error"]["message"]
    kept = wait_until(lambda: queues._drain(QUEUE_COMMANDS_POISON) or None, what="the poison copies")
    assert any("salesInvoice" in text for text in kept)
