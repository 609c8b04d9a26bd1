"""Test support for the sales-order tests: the queues on Azurite, the orders in the emulator."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from connector.settings import (
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_SALES_ORDERS,
    QUEUE_SALES_ORDERS_POISON,
)
from tests.queue_drain import drain_texts

TENANT = "lmints.io"
ENVIRONMENT = "production"
SEED_EXAMPLE = {"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP",
                "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"}


def new_key(prefix: str = "T") -> str:
    """A fresh externalDocumentNumber (the module's emulator keeps orders between tests)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass
class OrderQueues:
    """The three sales-order queues on Azurite, plain text like producers send."""

    connection_string: str

    def queue(self, name: str) -> QueueClient:
        """A queue client, creating the queue if needed."""
        client = QueueClient.from_connection_string(self.connection_string, name)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        return client

    def send(self, messages: Iterable[dict[str, Any] | str]) -> list[str]:
        """Send each message (a dict as JSON, a str as is); returns the texts."""
        queue = self.queue(QUEUE_SALES_ORDERS)
        texts = [m if isinstance(m, str) else json.dumps(m) for m in messages]
        for text in texts:
            queue.send_message(text)
        return texts

    def _drain(self, name: str) -> list[str]:
        return drain_texts(self.queue(name))

    def results(self) -> list[dict[str, Any]]:
        """Every result message so far (taken off the queue)."""
        return [json.loads(t) for t in self._drain(QUEUE_SALES_ORDER_RESULTS)]

    def poison(self) -> list[str]:
        """Every message on sales-orders-poison so far (taken off the queue)."""
        return self._drain(QUEUE_SALES_ORDERS_POISON)


@dataclass
class EmulatorBC:
    """What the emulator holds and was asked, read through its admin API."""

    emulator: Any
    company: str = "CRONUS UK Ltd."

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.emulator.url}/_emulator/bc/{TENANT}/{ENVIRONMENT}/{self.company}/{path}"
        resp = requests.request(method, url, json=body, verify=self.emulator.ca_bundle, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def orders(self, key: str | None = None) -> list[dict[str, Any]]:
        """Sales orders with their lines (only those with externalDocumentNumber `key`, if given)."""
        orders = self._admin("GET", "salesOrders")["value"]
        return [o for o in orders if key is None or o["externalDocumentNumber"] == key]

    def order(self, order_id: str) -> dict[str, Any]:
        return self._admin("GET", f"salesOrders/{order_id}")

    def variant_id(self, item_number: str, code: str) -> str:
        variants = self._admin("GET", "itemVariants")["value"]
        return next(v["id"] for v in variants if v["itemNumber"] == item_number and v["code"] == code)

    def create_variant(self, item_number: str, code: str) -> str:
        return self._admin("POST", "itemVariants", {"itemNumber": item_number, "code": code})["id"]

    def create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        """An order created in BC behind the connector's back (e.g. a POST committed late)."""
        return self._admin("POST", "salesOrders", body)

    def order_posts(self, at_least: int = 0, timeout: float = 10.0) -> int:
        """`POST .../salesOrders` requests since the log was last cleared; waits until `at_least` are
        logged (a held response is logged when the hold ends)."""
        deadline = time.monotonic() + timeout
        while True:
            count = sum(1 for r in self.emulator.requests
                        if r.method == "POST" and r.path.endswith("/salesOrders"))
            if count >= at_least or time.monotonic() > deadline:
                return count
            time.sleep(0.05)

    def reposted_within(self, seconds: float) -> int:
        """`POST .../salesOrders` requests that came less than `seconds` after the first one (BC's
        clock): a retry inside an ambiguity window. Timing-free: on a slow machine a POST after the
        window is allowed, one inside it never is."""
        posts = [r.time for r in self.emulator.requests
                 if r.method == "POST" and r.path.endswith("/salesOrders")]
        return sum(1 for t in posts[1:] if (t - posts[0]).total_seconds() < seconds)

    def request_count(self) -> int:
        return len(self.emulator.requests)

    def calls(self) -> list[tuple[str, str]]:
        """(method, entity set) of each request inside a company (company discovery left out)."""
        return [(r.method, r.path.rsplit("/", 1)[-1]) for r in self.emulator.requests
                if "/companies(" in r.path]

    def statuses(self) -> list[int | None]:
        return [r.status for r in self.emulator.requests]


# Timer triggers of other features resolve `%..._SCHEDULE%` from the environment, which the shared
# `connector_env` does not set; pin them far away so they neither fail the start nor call BC here.
