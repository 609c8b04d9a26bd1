"""`make demo`: a scripted tour of bc-connector on the embedded defaults (dev tooling).

Starts its own Azurite, BC + Entra emulator and local Functions host on free loopback ports (so it
runs beside `make run`), then walks through: a user sign-in (authorization code, browser-less),
webhook and business-event subscriptions, a created item / shipment / invoice arriving as events, a
draft invoice (nothing announced) and its posting (one event, though BC's table webhook and its
SalesInvoicePosted business event both told the connector), an item updated and
one deleted (ITEM_CHANGE_TYPES on), an item pull, a sales order pushed and followed by its key through
its shipment and invoice, a large one by claim check (blob + reference), and a bad order
dead-lettered. Exits 0 when every step did what it should.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from devtools.azurite import Azurite, free_port, provision
from devtools.emulator.entra import read_form_post

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".devdata" / "demo.log"  # the app's, emulator's and host's log lines: kept out of the tour
TENANT = "lmints.io"
COMPANY = "CRONUS UK Ltd."
BASE = f"{TENANT}/production/{COMPANY.replace(' ', '%20')}"  # the company in the emulator's admin API
SEED_ORDER = {"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP",
              "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"}


class Tour:
    """The running services and the steps of the tour."""

    def __init__(self, azurite: Azurite, emulator: Any, host: Any):
        self.azurite = azurite
        self.emulator = emulator
        self.host = host
        self.failures: list[str] = []
        self.checked = 0

    # ---- plumbing ----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = f"{self.host.url}/api/{path}"
        command(f"curl{'' if method == 'GET' else ' -X ' + method} {url}")
        return requests.request(method, url, timeout=60, **kw)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.emulator.url}/_emulator/bc/{path}"
        if method != "GET":  # reads are the tour's own checks; changes are what a user in BC does
            data = f" -d '{_clip(json.dumps(body))}'" if body is not None else ""
            command(f"curl --cacert .devdata/emulator-ca.pem -X {method} {url}{data}")
        resp = requests.request(method, url, json=body, verify=self.emulator.ca_bundle, timeout=30)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def queue(self, name: str) -> Any:
        """A queue client, creating the queue as a producer would."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient

        client = QueueClient.from_connection_string(self.azurite.connection_string, name)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        return client

    def wait_for(self, queue: str, accept: Callable[[dict], bool], timeout: float = 30.0) -> dict | None:
        """Read `queue` until a message `accept`s (other messages stay for other readers)."""
        deadline = time.monotonic() + timeout
        client = self.queue(queue)
        while time.monotonic() < deadline:
            try:
                for msg in client.receive_messages(messages_per_page=32, visibility_timeout=2):
                    body = json.loads(msg.content)
                    if accept(body):
                        client.delete_message(msg)
                        return body
            except Exception:  # noqa: BLE001 - the queue may not exist yet
                pass
            time.sleep(0.3)
        return None

    def check(self, ok: bool, what: str) -> bool:
        print(f"   {'ok ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)
        self.checked += 1
        return ok

    def passed(self, found: dict | None, what: str,
               holds: Callable[[dict], bool] = lambda _: True) -> dict | None:
        """`found` when it is there and `holds` (a check named `what`), else None."""
        return found if self.check(found is not None and holds(found), what) else None

    # ---- steps -------------------------------------------------------------------------------
    def health_and_status(self) -> None:
        print("\n1. Health and status")
        self.check(self.api("GET", "health").status_code == 200, "GET /api/health answers 200")
        status = self.api("GET", "status").json()
        show(_token_states(status))

    def sign_in(self) -> None:
        print("\n2. A user signs in (authorization code + PKCE; the browser is simulated)")
        login = self.api("GET", "connections/webshop/login", allow_redirects=False)
        if not self.check(login.status_code == 302, "login redirects to Entra's authorize URL"):
            return
        authorize = requests.get(login.headers["Location"], allow_redirects=False,
                                 verify=self.emulator.ca_bundle, timeout=30)
        callback, fields = read_form_post(authorize.text) or ("", {})
        self.check(authorize.status_code == 200 and "/api/auth/callback" in callback,
                   "Entra consents and posts its answer back to /api/auth/callback (form_post)")
        page = requests.post(urljoin(self.host.url, callback), data=fields, timeout=60)
        self.check(page.status_code == 200 and COMPANY in page.text,
                   "the callback stores the tokens and discovers the companies")
        states = _token_states(self.api("GET", "status").json())
        self.check(states.get("webshop") == "ok", "status shows the webshop connection signed in")

    def subscriptions(self) -> None:
        print("\n3. Webhook and business-event subscriptions (BC checks our handshake on each webhook)")
        resp = self.api("POST", "connections/default/subscriptions")
        self.check(resp.status_code == 200, "subscriptions created")
        show(resp.json())
        subs = self.admin("GET", "subscriptions")
        self.check(len(subs.get("value", subs)) >= 2, "BC holds our subscriptions")

    def created_entities(self) -> None:
        print("\n4. Changes in BC arrive as events")
        base = BASE
        item = self.admin("POST", f"{base}/items", {
            "number": "DEMO-1000", "displayName": "Demo bicycle", "unitPrice": 499.0,
            "itemVariants": [{"code": "RED", "description": "Red"}, {"code": "BLUE", "description": "Blue"}]})
        event = self.passed(self.wait_for("bc-items", lambda e: e.get("subject") == item["id"]),
                            "bc.item.created arrived", lambda e: e["type"] == "bc.item.created")
        if event is not None:
            variants = [v["code"] for v in event["data"].get("itemVariants", [])]
            self.check(sorted(variants) == ["BLUE", "RED"], f"with its variants {variants}")
        shipment = self.admin("POST", f"{base}/salesShipments", {
            "customerNumber": "GL00000008", "lines": [{"itemNumber": "DEMO-1000", "quantity": 2}]})
        event = self.passed(self.wait_for("bc-sales-shipments", lambda e: e.get("subject") == shipment["id"]),
                            "bc.salesShipment.created arrived")
        if event is not None:
            self.check(len(event["data"].get("salesShipmentLines", [])) == 1, "with its lines")
        invoice = self.admin("POST", f"{base}/salesInvoices", {
            "customerNumber": "GL00000008", "lines": [{"itemNumber": "DEMO-1000", "quantity": 2},
                                                      {"accountNumber": "6110", "quantity": 1,
                                                       "unitPrice": 15.0}]})
        event = self.passed(self.wait_for("bc-sales-invoices", lambda e: e.get("subject") == invoice["id"]),
                            "bc.salesInvoice.created arrived")
        if event is not None:
            self.check(len(event["data"].get("salesInvoiceLines", [])) == 2, "with its lines")

    def posted_documents(self) -> None:
        print("\n5. A draft invoice is not an invoice; posting it is (webhook + business event, one event)")
        draft = self.admin("POST", f"{BASE}/salesInvoices/drafts", {
            "customerNumber": "GL00000008",
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "DEMO-1000", "quantity": 1}]})
        print(f"   a draft invoice {draft['number']} ({draft['status']}) is made through BC's API")
        self.check(self.wait_for("bc-sales-invoices", lambda e: e.get("subject") == draft["id"],
                                 timeout=4) is None,
                   "nothing is announced for the draft (BC's webhook said `created`)")
        posted = self.admin("POST", f"{BASE}/salesInvoices/{draft['id']}/post")
        print(f"   BC posts it (Microsoft.NAV.post): {posted['number']}, status {posted['status']}, same id")
        event = self.passed(self.wait_for("bc-sales-invoices", lambda e: e.get("subject") == draft["id"]),
                            "bc.salesInvoice.created arrived for the posting",
                            lambda e: e["type"] == "bc.salesInvoice.created")
        if event is not None:
            show({k: event[k] for k in ("id", "type", "subject")}
                 | {"data": {k: event["data"][k] for k in ("number", "status")}})
        sent = [d for d in self.admin("GET", "businessevents/deliveries")["value"]
                if d["body"]["payload"].get("SalesInvoiceAPIId") == draft["id"]]
        self.check(bool(sent) and sent[0]["status"] == 202,
                   "BC's SalesInvoicePosted business event was delivered (202)")
        time.sleep(2)  # BC's table webhook (`updated`) follows after its debounce
        deliveries = self.admin("GET", "webhooks/deliveries")["value"]
        webhook = [n for d in deliveries if d["kind"] == "notification" for n in d["body"]["value"]
                   if draft["id"] in n["resource"] and n["changeType"] == "updated"]
        self.check(bool(webhook), "BC's table webhook said `updated` for the same invoice")
        self.check(self.wait_for("bc-sales-invoices", lambda e: e.get("subject") == draft["id"],
                                 timeout=3) is None,
                   "and the consumer got exactly one event: both channels claim the same change")

    def updated_and_deleted(self) -> None:
        print("\n6. Updates and deletions (ITEM_CHANGE_TYPES=created,updated,deleted)")
        item = next(i for i in self.admin("GET", f"{BASE}/items")["value"] if i["number"] == "DEMO-1000")
        self.admin("PATCH", f"{BASE}/items/{item['id']}", {"unitPrice": 549.0})
        self.admin("PATCH", f"{BASE}/items/{item['id']}", {"displayName": "Demo bicycle, 2027 model"})
        event = self.passed(self.wait_for("bc-items", lambda e: e.get("subject") == item["id"]
                                          and e.get("type") == "bc.item.updated"),
                            "bc.item.updated arrived (BC merges changes within its debounce)")
        if event is not None:
            data = event["data"]
            show({k: event[k] for k in ("id", "type", "time")} | {
                "data": {k: data[k] for k in ("number", "displayName", "unitPrice", "lastModifiedDateTime")}})
            self.check((data["unitPrice"], data["displayName"]) == (549.0, "Demo bicycle, 2027 model"),
                       "carrying the item as it is now")
        doomed = self.admin("POST", f"{BASE}/items", {"number": "DEMO-GONE", "displayName": "Short-lived"})
        created = self.wait_for("bc-items", lambda e: e.get("subject") == doomed["id"])
        self.check(created is not None and created["type"] == "bc.item.created", "another item is created")
        self.admin("DELETE", f"{BASE}/items/{doomed['id']}")
        event = self.passed(self.wait_for("bc-items", lambda e: e.get("subject") == doomed["id"]
                                          and e.get("type") == "bc.item.deleted"),
                            "bc.item.deleted arrived when it was deleted")
        if event is not None:
            show({k: event[k] for k in ("id", "type", "subject", "time", "data")})

    def item_pull(self) -> None:
        print("\n7. Schedule Pull Items (run now through the admin route)")
        resp = self.api("POST", "connections/default/pulls/items")
        self.check(resp.status_code == 202, "the pull was accepted")
        show(resp.json())
        event = self.wait_for("bc-items", lambda e: e.get("type") == "bc.item.pulled")
        self.check(event is not None, "bc.item.pulled events arrive")

    def sales_orders(self) -> None:
        print("\n8. Send Created Sales Order")
        orders = self.queue("sales-orders")
        command("python -m connector send order.json   # DEMO-WEB-1: checked, queued, its result printed")
        orders.send_message(json.dumps(SEED_ORDER | {"externalDocumentNumber": "DEMO-WEB-1",
                                                     "salesOrderLines": [{"itemNumber": "DEMO-1000",
                                                                          "variantCode": "RED",
                                                                          "quantity": 1}]}))
        result = self.passed(self.wait_for("sales-order-results",
                                           lambda r: r.get("externalDocumentNumber") == "DEMO-WEB-1"),
                             "the order was created", lambda r: r["status"] == "created")
        if result is not None:
            print(f"   BC order {result['number']} ({result['salesOrderId']})")
            self.order_life(result["number"])
        self.large_order(orders)
        command("python -m connector send bad-order.json   # DEMO-BAD-1: a customer BC does not have")
        orders.send_message(json.dumps(SEED_ORDER | {"customerNumber": "NO-SUCH-CUSTOMER",
                                                     "externalDocumentNumber": "DEMO-BAD-1"}))
        result = self.passed(self.wait_for("sales-order-results",
                                           lambda r: r.get("externalDocumentNumber") == "DEMO-BAD-1"),
                             "a bad order fails clearly", lambda r: r["status"] == "failed")
        if result is not None:
            show(result["error"])
        props = self.queue("sales-orders-poison").get_queue_properties()
        self.check(props.approximate_message_count >= 1, "and is kept on sales-orders-poison")

    def order_life(self, number: str) -> None:
        """BC ships and invoices the order; both events carry the webshop's key."""
        print("   BC posts its shipment and invoice; their events carry the webshop's key:")
        for entity_set, queue in (("salesShipments", "bc-sales-shipments"),
                                  ("salesInvoices", "bc-sales-invoices")):
            self.admin("POST", f"{BASE}/{entity_set}", {"orderNumber": number})
            event = self.passed(self.wait_for(queue, lambda e: e.get("bcexternaldocno") == "DEMO-WEB-1"),
                                f"{queue}: an event with bcexternaldocno DEMO-WEB-1",
                                lambda e: e.get("bcordernumber") == number)
            if event is not None:
                show({k: event[k] for k in ("type", "bcexternaldocno", "bcordernumber")}
                     | {"data.number": event["data"]["number"]})

    def large_order(self, orders: Any) -> None:
        """An order over a queue message's 64 KiB goes by claim check: a blob, and a message naming it."""
        from azure.storage.blob import BlobClient

        body = json.dumps(SEED_ORDER | {"externalDocumentNumber": "DEMO-BIG-1", "salesOrderLines": [
            {"itemNumber": "DEMO-1000", "quantity": 1, "description": f"line {n:03d} of a large order"}
            for n in range(1, 1001)]})
        blob = BlobClient.from_connection_string(self.azurite.connection_string, "sales-order-payloads",
                                                 "DEMO-BIG-1.json")
        blob.upload_blob(body.encode(), overwrite=True)
        message = {"dataref": blob.url, "sha256": hashlib.sha256(body.encode()).hexdigest(),
                   "size": len(body.encode()), "externalDocumentNumber": "DEMO-BIG-1"}
        orders.send_message(json.dumps(message))
        size = len(body.encode()) // 1024
        print(f"   a {size} KiB order (1000 lines) is put in a blob; the message names it:")
        show(message)
        big = self.wait_for("sales-order-results", lambda r: r.get("externalDocumentNumber") == "DEMO-BIG-1",
                            timeout=60)
        result = self.passed(big, "the large order was created", lambda r: r["status"] == "created")
        if result is not None:
            lines = self.admin("GET", f"{TENANT}/production/{COMPANY.replace(' ', '%20')}/salesOrders/"
                               f"{result['salesOrderId']}")["salesOrderLines"]
            self.check(len(lines) == 1000, f"BC order {result['number']} has all {len(lines)} lines")

    def final_status(self) -> None:
        from connector.cli.status import connection_lines

        print("\n9. Status")
        command("python -m connector status   # or open /api/status in a browser")
        for line in connection_lines(self.api("GET", "status").json()):
            print(f"   {line.strip()}")


def command(text: str) -> None:
    """The command behind the step that follows (what a person would type)."""
    print(f"   $ {text}")


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(value: Any) -> None:
    """Print JSON whole and indented under the current step."""
    print(textwrap.indent(json.dumps(value, indent=2, ensure_ascii=False), "   "))


def _token_states(status: dict) -> dict[str, str]:
    conns = status.get("connections", status)
    if isinstance(conns, dict):
        conns = [dict(v, name=k) for k, v in conns.items()]
    return {c.get("name", "?"): c.get("token_state") or c.get("token", {}).get("state", "?") for c in conns}


def main() -> int:
    import warnings

    from devtools.emulator import Emulator, EmulatorConfig

    warnings.filterwarnings("ignore", message=".*response_mode.*")  # msal's hint; the emulator is query-only
    from devtools.localhost import LocalHost

    LOG.parent.mkdir(exist_ok=True)
    logging.basicConfig(filename=LOG, filemode="w", level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request's headers at INFO
    with Azurite() as azurite, Emulator(EmulatorConfig(webhook_debounce_seconds=1.0)) as emulator:
        provision(azurite.connection_string)
        port = free_port()
        settings = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
        settings |= {
            "AzureWebJobsStorage": azurite.connection_string,
            "ENTRA_AUTHORITY_HOST": emulator.url, "BC_API_HOST": emulator.url,
            "TLS_CA_BUNDLE": emulator.ca_bundle, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "BC_CONNECTIONS": "default,webshop", "WEBSHOP__BC_GRANT_TYPE": "authorization_code",
            "ITEM_CHANGE_TYPES": "created,updated,deleted", "BUSINESS_EVENTS": "true",
        }
        os.environ.update(settings)
        import function_app

        with LocalHost(function_app.app, host_json=ROOT / "host.json", port=port) as host:
            print(f"bc-connector demo: app {host.url}, BC emulator {emulator.url}, Azurite "
                  f"queues on {azurite.queue_port}; log in {LOG.relative_to(ROOT)}")
            tour = Tour(azurite, emulator, host)
            for step in (tour.health_and_status, tour.sign_in, tour.subscriptions,
                         tour.created_entities, tour.posted_documents, tour.updated_and_deleted,
                         tour.item_pull,
                         tour.sales_orders, tour.final_status):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - report and go on with the tour
                    tour.check(False, f"{step.__name__} raised {type(exc).__name__}: {exc}")
    if tour.failures:
        print(f"\ndemo finished with {len(tour.failures)} failed check(s) of {tour.checked}; see "
              f"{LOG.relative_to(ROOT)}")
        for what in tour.failures:
            print(f"   FAIL {what}")
        return 1
    print(f"\ndemo finished: every step did what it should ({tour.checked} checks passed). Try it yourself: "
          "make run, then python -m connector tail / trigger item.created / send "
          "docs/examples/sales-order.json (README, Quick start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
