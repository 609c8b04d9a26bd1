"""Admin API of the BC API emulator (dev tooling, never deployed): JSON, no auth, under `/_emulator/bc/`.

Company-scoped routes (`{tenant}` = domain or GUID, `{company}` = id or URL-encoded name):
  GET    /_emulator/bc/companies                                      every tenant/environment/company
  GET    /_emulator/bc/{tenant}/{env}/{company}/{set}                 list a set (documents with lines)
  POST   /_emulator/bc/{tenant}/{env}/{company}/items                 create an item (`itemVariants`: [...])
  POST   /_emulator/bc/{tenant}/{env}/{company}/items/bulk            {"count", "variants", "prefix"}
  POST   /_emulator/bc/{tenant}/{env}/{company}/itemVariants          create a variant (itemId or itemNumber)
  POST   /_emulator/bc/{tenant}/{env}/{company}/customers             create a customer
  PATCH  /_emulator/bc/{tenant}/{env}/{company}/{set}/{id}            update without If-Match (a posted
                                                                      shipment's header too, as BC's
                                                                      Update Document page does)
  DELETE /_emulator/bc/{tenant}/{env}/{company}/{set}/{id}            delete
  POST   /_emulator/bc/{tenant}/{env}/{company}/salesShipments        post a shipment
  POST   /_emulator/bc/{tenant}/{env}/{company}/salesInvoices         post an invoice
         posting body: {"orderId"|"orderNumber", "lines": [{"sequence", "quantity"}]} or
                       {"customerNumber", "lines": [{"itemNumber"|"accountNumber", "quantity", "unitPrice"?}]}
  POST   /_emulator/bc/{tenant}/{env}/{company}/salesInvoices/drafts  a draft invoice, as POST
                                                                      .../salesInvoices makes it (BC's body)
  POST   /_emulator/bc/{tenant}/{env}/{company}/salesInvoices/{id}/post         Microsoft.NAV.post (a draft)
  POST   /_emulator/bc/{tenant}/{env}/{company}/salesOrders/{id}/shipAndInvoice Microsoft.NAV.shipAndInvoice
Business events (externaleventsubscriptions):
  GET    /_emulator/bc/businessevents/subscriptions                   every subscription (with failures)
  POST   /_emulator/bc/businessevents/subscriptions/{id}/disable      switch it off as BC does after failures
  DELETE /_emulator/bc/businessevents/subscriptions/{id}              delete behind the subscriber's back
  GET    /_emulator/bc/businessevents/deliveries                      notification POSTs (status, attempt)
  GET    /_emulator/bc/businessevents/pending                         notifications waiting (retries)
  POST   /_emulator/bc/businessevents/flush                           send every pending notification now
  PUT    /_emulator/bc/businessevents/permission                      {"granted": false}: the caller lacks
                                                                      "Ext. Events - Subscr" (403)
Webhooks:
  GET    /_emulator/bc/subscriptions                                  every subscription
  DELETE /_emulator/bc/subscriptions/{id}                             delete behind the subscriber's back
  GET    /_emulator/bc/webhooks/deliveries[?url=...]                  handshakes and notification POSTs
  GET    /_emulator/bc/webhooks/pending                               changes waiting for the debounce
  DELETE /_emulator/bc/webhooks/deliveries                            clear the delivery log
  GET    /_emulator/bc/webhooks/supported                             webhook-supported entity sets
  PUT    /_emulator/bc/webhooks/supported                             {"resources": ["items", ...]}
  POST   /_emulator/bc/webhooks/flush                                 deliver pending notifications now
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from devtools.emulator.bc_schema import COMPANY_SETS
from devtools.emulator.odata import BCError
from devtools.emulator.seed import bulk_create_items
from devtools.emulator.store import Company, Row

if TYPE_CHECKING:
    from devtools.emulator.bc_backend import BCBackend

PREFIX = "/_emulator/bc/"


class BCAdmin:
    """WSGI app for `/_emulator/bc/...` over a `BCBackend`."""

    def __init__(self, api: BCBackend) -> None:
        self.api = api

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except BCError as error:
            response = _json(error.body(), error.status)
        except (KeyError, ValueError, TypeError) as exc:
            response = _json(
                {
                    "error": {
                        "code": "NotFound" if isinstance(exc, KeyError) else "BadRequest",
                        "message": str(exc),
                    }
                },
                404 if isinstance(exc, KeyError) else 400,
            )
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if not path.startswith(PREFIX):
            raise KeyError(path)
        parts = [unquote(p) for p in path[len(PREFIX) :].strip("/").split("/")]
        method = request.method
        engine = self.api.webhooks
        if parts == ["companies"]:
            return _json({"value": self.companies()})
        if parts[0] == "subscriptions":
            if len(parts) == 1 and method == "GET":
                return _json(
                    {
                        "value": [
                            s.to_json() | {"tenant": s.tenant, "environment": s.environment}
                            for s in list(engine.subscriptions.values())
                        ]
                    }
                )
            if len(parts) == 2 and method == "DELETE":
                if not engine.delete(parts[1]):
                    raise KeyError(parts[1])
                return Response(status=204)
        if parts[0] == "webhooks" and len(parts) == 2:
            return self._webhooks(request, parts[1])
        if parts[0] == "businessevents":
            return self._business_events(request, parts[1:])
        if len(parts) >= 4:
            company = self.api.store.company(self._tenant(parts[0]), parts[1], parts[2])
            return self._company(request, company, parts[3:])
        raise KeyError(path)

    def _tenant(self, segment: str) -> str:
        return self.api.config.tenants.get(segment.lower(), segment)

    def companies(self) -> list[dict[str, Any]]:
        """Every company with its tenant and environment."""
        with self.api.store.lock:
            return [
                {"tenant": c.tenant, "environment": c.environment, "id": c.id, "name": c.name}
                for env in self.api.store.environments.values()
                for c in env.companies.values()
            ]

    def _webhooks(self, request: Request, what: str) -> Response:
        engine = self.api.webhooks
        if what == "flush" and request.method == "POST":
            self.api.flush_webhooks()
            return _json({"flushed": True})
        if what == "deliveries" and request.method == "GET":
            url = request.args.get("url")
            return _json({"value": [d for d in list(engine.deliveries) if url is None or d["url"] == url]})
        if what == "pending" and request.method == "GET":
            return _json({"value": engine.pending()})
        if what == "deliveries" and request.method == "DELETE":
            engine.deliveries.clear()
            return Response(status=204)
        if what == "supported" and request.method == "GET":
            return _json({"value": sorted(engine.supported)})
        if what == "supported" and request.method == "PUT":
            resources = _body(request).get("resources")
            if not isinstance(resources, list) or not all(r in COMPANY_SETS for r in resources):
                raise ValueError(f"'resources' must list entity sets of {sorted(COMPANY_SETS)}")
            engine.supported = set(resources)
            return _json({"value": sorted(engine.supported)})
        raise KeyError(what)

    def _business_events(self, request: Request, rest: list[str]) -> Response:
        engine, method = self.api.business_events, request.method
        if rest == ["subscriptions"] and method == "GET":
            return _json({"value": [s.to_json() | {"tenant": s.tenant, "environment": s.environment,
                                                   "failures": s.failures}
                                    for s in list(engine.subscriptions.values())]})
        if len(rest) == 3 and rest[0] == "subscriptions" and rest[2] == "disable" and method == "POST":
            return _json(engine.switch_off(rest[1].lower()).to_json())
        if len(rest) == 2 and rest[0] == "subscriptions" and method == "DELETE":
            if not engine.delete(rest[1].lower()):
                raise KeyError(rest[1])
            return Response(status=204)
        if rest == ["deliveries"] and method == "GET":
            return _json({"value": list(engine.deliveries)})
        if rest == ["pending"] and method == "GET":
            return _json({"value": engine.pending()})
        if rest == ["flush"] and method == "POST":
            engine.run_once(force=True)
            return _json({"flushed": True})
        if rest == ["permission"] and method == "PUT":
            granted = _body(request).get("granted")
            if not isinstance(granted, bool):
                raise ValueError("'granted' must be true or false")
            engine.permitted = granted
            return _json({"granted": granted})
        raise KeyError("/".join(rest))

    def _company(self, request: Request, company: Company, rest: list[str]) -> Response:
        set_name, method, api = rest[0], request.method, self.api
        if set_name not in COMPANY_SETS:
            raise KeyError(set_name)
        if len(rest) == 1 and method == "GET":
            return _json({"value": self.list_set(company, set_name)})
        if rest[1:] == ["bulk"] and set_name == "items" and method == "POST":
            body = _body(request)
            ids = bulk_create_items(
                api.store,
                company,
                int(body.get("count", 1000)),
                int(body.get("variants", 0)),
                str(body.get("prefix", "BULK")),
            )
            return _json({"created": len(ids), "first": ids[:1], "last": ids[-1:]}, 201)
        if rest[1:] == ["drafts"] and set_name == "salesInvoices" and method == "POST":
            row = api.create(company, set_name, _body(request))
            return _json(self.entity(company, set_name, row), 201)
        if len(rest) == 3 and method == "POST" and (set_name, rest[2]) in (
                ("salesInvoices", "post"), ("salesOrders", "shipAndInvoice")):
            row = _existing(company, set_name, rest[1].lower())
            if set_name == "salesInvoices":
                api.documents.post_draft(company, row)
                return _json(self.entity(company, set_name, row))
            api.documents.ship_and_invoice(company, row)
            return Response(status=204)
        if len(rest) == 1 and method == "POST":
            if set_name in ("salesShipments", "salesInvoices"):
                row = self.post_document(company, set_name, _body(request))
            else:
                row = api.create(company, set_name, _body(request))
            return _json(self.entity(company, set_name, row), 201)
        if len(rest) == 2:
            row = _existing(company, set_name, rest[1])
            if method == "GET":
                return _json(self.entity(company, set_name, row))
            if method == "PATCH":
                if COMPANY_SETS[set_name].writable:
                    api.update(company, set_name, row, _body(request))
                else:
                    self.update_posted(company, set_name, row, _body(request))
                return _json(self.entity(company, set_name, row))
            if method == "DELETE":
                api.delete(company, set_name, row)
                return Response(status=204)
        raise KeyError("/".join(rest))

    def update_posted(self, company: Company, set_name: str, row: Row, body: dict[str, Any]) -> None:
        """Change header fields of a posted document (e.g. package tracking, as BC's *Update Document*
        page does): no API client can, but BC notifies `updated`."""
        refused = sorted(k for k in body if k not in row.data or k in ("id", "lastModifiedDateTime"))
        if refused:
            raise ValueError(f"{set_name} header fields that cannot be changed: {', '.join(refused)}")
        with self.api.store.transaction():
            self.api.store.modify(company, set_name, row, body)

    def post_document(self, company: Company, set_name: str, body: dict[str, Any]) -> Row:
        """Post a shipment or an invoice from an order (`orderId`/`orderNumber`) or ad hoc "
        "(`customerNumber`)."""
        with self.api.store.transaction():
            orders = company.sets["salesOrders"]
            order = None
            if body.get("orderId"):
                order = orders.get(body["orderId"])
            elif body.get("orderNumber"):
                order = next((o for o in orders.order if o.data["number"] == body["orderNumber"]), None)
            if order is None and (body.get("orderId") or body.get("orderNumber")):
                raise KeyError(body.get("orderId") or body.get("orderNumber"))
            post = (
                self.api.documents.post_shipment
                if set_name == "salesShipments"
                else self.api.documents.post_invoice
            )
            return post(company, order, body.get("customerNumber"), list(body.get("lines", [])))

    def list_set(self, company: Company, set_name: str) -> list[dict[str, Any]]:
        """Every entity of a set (sales documents with their lines)."""
        with self.api.store.lock:
            return [self.entity(company, set_name, row) for row in company.sets[set_name].order]

    def entity(self, company: Company, set_name: str, row: Row) -> dict[str, Any]:
        """One entity with ETag, plus its lines/variants."""
        out = {"@odata.etag": row.etag, **row.data}
        for nav, child in COMPANY_SETS[set_name].parts.items():
            out[nav] = [{"@odata.etag": c.etag, **c.data} for c in company.sets[child].children(row.id)]
        return out


def _existing(company: Company, set_name: str, key: str) -> Row:
    """A row of `set_name` by id; KeyError (a 404) when there is none."""
    row = company.sets[set_name].get(key)
    if row is None:
        raise KeyError(key)
    return row


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
