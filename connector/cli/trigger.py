"""`python -m connector trigger <change>`: make a change in the local BC emulator (its admin API,
`devtools/emulator`), as a user in BC would, so the connector's events follow; with no webhook
subscription yet, the connection's subscriptions are created first (as `POST
/api/connections/<connection>/subscriptions` would)."""
from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

from connector.cli.errors import CLIError
from connector.cli.http import app_call, emulator_call
from connector.cli.lines import printable
from connector.cli.local_run import LocalRun
from connector.cli.target import Target, require_local

CUSTOMER = "GL00000008"  # a seeded customer of every demo company


@dataclass(frozen=True)
class Change:
    """One kind of change: what it does, the event it causes and the entity set watched for it."""

    name: str
    what: str
    event: str
    entity_set: str
    change_types_setting: str = ""


CHANGES = {c.name: c for c in (
    Change("item.created", "create an item", "bc.item.created", "items"),
    Change("item.updated", "change an item's price", "bc.item.updated", "items", "ITEM_CHANGE_TYPES"),
    Change("item.deleted", "delete an item", "bc.item.deleted", "items", "ITEM_CHANGE_TYPES"),
    Change("shipment.posted", "post a sales shipment (ad hoc, one line)", "bc.salesShipment.created",
           "salesShipments"),
    Change("invoice.posted", "a draft sales invoice (one line) posted with Microsoft.NAV.post",
           "bc.salesInvoice.created", "salesInvoices"),
    Change("order.shipped", "post the shipment of a sales order (--order; default the newest)",
           "bc.salesShipment.created", "salesShipments"),
    Change("order.invoiced", "post the invoice of a shipped sales order (--order; default the newest)",
           "bc.salesInvoice.created", "salesInvoices"),
    Change("order.shipAndInvoice", "Microsoft.NAV.shipAndInvoice on a sales order (--order; default the "
           "newest): its shipment and invoice", "bc.salesInvoice.created", "salesInvoices"),
)}


class Company:
    """The emulator company the connection works in (admin API paths)."""

    def __init__(self, run: LocalRun, tenant: str, environment: str, company_id: str):
        self.run = run
        self.base = f"{quote(tenant)}/{quote(environment)}/{company_id}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return emulator_call(self.run, method, f"{self.base}/{path}", body)

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return list(self.call("GET", entity_set).get("value", []))


def connection_status(target: Target, connection: str) -> dict[str, Any]:
    """The connection's part of `/api/status`."""
    report = app_call(target, "GET", "status", headers={"Accept": "application/json"}).json()
    for conn in report.get("connections", []):
        if conn.get("name") == connection:
            return conn
    raise CLIError(f"the app has no connection {connection!r} (BC_CONNECTIONS names "
                   f"{', '.join(c.get('name', '?') for c in report.get('connections', []))})")


def company_of(run: LocalRun, conn: dict[str, Any]) -> Company:
    companies = emulator_call(run, "GET", "companies")
    if isinstance(companies, dict):
        companies = companies.get("value", [])
    mine = [c for c in companies if c.get("environment") == conn.get("environment")] or companies
    chosen = next((c for c in mine if c.get("id") == conn.get("company_id")), None) or next(iter(mine), None)
    if chosen is None:
        raise CLIError("the BC emulator has no company")
    return Company(run, str(conn.get("tenant") or chosen["tenant"]), str(chosen["environment"]), chosen["id"])


def ensure_subscribed(target: Target, connection: str, conn: dict[str, Any], entity_set: str,
                      err: TextIO) -> None:
    """Create the connection's subscriptions when none for `entity_set` is active."""
    active = [s for s in conn.get("subscriptions", [])
              if str(s.get("resource", "")).endswith(f"/{entity_set}") and s.get("status") == "active"]
    if active:
        return
    print(f"no active webhook subscription for {entity_set} yet: creating the connection's subscriptions "
          f"(POST /api/connections/{connection}/subscriptions) ...", file=err, flush=True)
    response = app_call(target, "POST", f"connections/{quote(connection)}/subscriptions")
    if response.status_code != 200:
        raise CLIError(f"creating the subscriptions failed ({response.status_code}): {response.text[:300]}")


def newest_order(company: Company, reference: str | None) -> dict[str, Any]:
    orders = company.rows("salesOrders")
    if reference:
        found = [o for o in orders if reference in (o.get("externalDocumentNumber"), o.get("number"))]
        if not found:
            raise CLIError(f"no sales order {reference!r} in the emulator (give its externalDocumentNumber "
                           "or BC number; `python -m connector send` creates one)")
        return found[-1]
    if not orders:
        raise CLIError("no sales order in the emulator yet: send one first (`python -m connector send FILE`)")
    return orders[-1]


def newest_item(company: Company, number: str | None) -> dict[str, Any]:
    items = company.rows("items")
    if number:
        found = [i for i in items if i.get("number") == number]
        if not found:
            raise CLIError(f"no item {number!r} in the emulator")
        return found[-1]
    if not items:
        raise CLIError("no item in the emulator: `python -m connector trigger item.created` makes one")
    return items[-1]


def apply(change: Change, company: Company, *, number: str | None, order: str | None) -> str:
    """Make the change; what was done, in a few words."""
    if change.name == "item.created":
        item_number = number or f"CLI-{secrets.token_hex(3).upper()}"
        item = company.call("POST", "items", {"number": item_number, "displayName": "Bicycle made by trigger",
                                              "unitPrice": 250.0})
        return f"created item {item['number']} ({item['id']})"
    if change.name in ("item.updated", "item.deleted"):
        item = newest_item(company, number)
        if change.name == "item.deleted":
            company.call("DELETE", f"items/{item['id']}")
            return f"deleted item {item['number']} ({item['id']})"
        price = round(float(item.get("unitPrice") or 0) + 1, 2)
        company.call("PATCH", f"items/{item['id']}", {"unitPrice": price})
        return f"changed item {item['number']}'s unitPrice to {price}"
    if change.name == "invoice.posted":  # as a user does: a draft, then Post (BC's events follow)
        item = newest_item(company, number)
        draft = company.call("POST", "salesInvoices/drafts", {
            "customerNumber": CUSTOMER,
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": item["number"], "quantity": 1}]})
        posted = company.call("POST", f"salesInvoices/{draft['id']}/post", {})
        return (f"posted sales invoice {posted['number']} (draft {draft['number']}, Microsoft.NAV.post) for "
                f"customer {CUSTOMER} (1 x {item['number']})")
    if change.name == "shipment.posted":
        item = newest_item(company, number)
        line = {"itemNumber": item["number"], "quantity": 1}
        posted = company.call("POST", "salesShipments", {"customerNumber": CUSTOMER, "lines": [line]})
        return f"posted salesShipment {posted['number']} for customer {CUSTOMER} (1 x {item['number']})"
    sales_order = newest_order(company, order)
    entity_set = "salesShipments" if change.name == "order.shipped" else "salesInvoices"
    try:
        if change.name == "order.shipAndInvoice":
            company.call("POST", f"salesOrders/{sales_order['id']}/shipAndInvoice", {})
            key = sales_order.get("externalDocumentNumber") or "no key"
            return f"shipped and invoiced order {sales_order['number']} ({key}): Microsoft.NAV.shipAndInvoice"
        posted = company.call("POST", entity_set, {"orderId": sales_order["id"]})
    except CLIError as exc:
        raise CLIError(f"order {sales_order['number']} "
                       f"({sales_order.get('externalDocumentNumber') or 'no key'}): {exc}") from None
    return (f"posted {entity_set[:-1]} {posted['number']} of order {sales_order['number']} "
            f"({sales_order.get('externalDocumentNumber') or 'no key'})")


def run_trigger(target: Target, name: str, *, connection: str, number: str | None, order: str | None,
                out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    change = CHANGES[name]
    run = require_local(target, f"trigger {name}")
    conn = connection_status(target, connection)
    ensure_subscribed(target, connection, conn, change.entity_set, err)
    done = apply(change, company_of(run, conn), number=number, order=order)
    print(printable(done), file=out)
    print(f"-> expect {change.event} on the queue within seconds (BC's debounce; real BC: ~30 s): "
          f"python -m connector tail --type {change.event}", file=err, flush=True)
    if change.change_types_setting:
        announced = change.event.rsplit(".", 1)[-1]
        print(f"   (announced only when {change.change_types_setting} includes {announced}: e.g. "
              f"{change.change_types_setting}=created,updated,deleted make run)", file=err, flush=True)
    return 0
