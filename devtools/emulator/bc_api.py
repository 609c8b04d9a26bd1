"""The BC API v2.0 emulator as a WSGI app (dev tooling, never deployed): routing under
`/v2.0/{tenant}/{environment}/api/v2.0/...` and the custom API routes (`api/{publisher}/{group}/{version}`),
bearer-token check, OData reads with paging, writes with ETags, subscriptions, `$metadata`, and the
runtime's `webhookSupportedResources` and `apiRoutes` (bc-api.md §1, §5, §6, §7, §11, §12.2)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from devtools.emulator.admin_center import AdminCenter
from devtools.emulator.bc_admin import BCAdmin
from devtools.emulator.bc_documents import LINES, DocumentRules
from devtools.emulator.bc_metadata import metadata
from devtools.emulator.bc_rules import MasterRules, check_body, dialog, invalid_body
from devtools.emulator.bc_schema import COMPANY, COMPANY_SETS, LINE_SETS, ROUTES, EntityType, route_sets
from devtools.emulator.business_events import DEFINITIONS, BusinessEventEngine
from devtools.emulator.entra import InvalidToken
from devtools.emulator.odata import (
    EMPTY_GUID,
    SYNTAX_ERROR,
    BCError,
    Expand,
    bad_request,
    is_guid,
    no_property,
    parse_datetime,
    parse_expand,
    parse_filter,
    parse_max_page_size,
    parse_orderby,
    parse_select,
    parse_top,
    sort_rows,
)
from devtools.emulator.seed import load_seed
from devtools.emulator.store import Company, Environment, Row, Store
from devtools.emulator.webhooks import WebhookEngine

if TYPE_CHECKING:
    from devtools.emulator.clock import Clock
    from devtools.emulator.config import EmulatorConfig

_SEGMENT = re.compile(r"([A-Za-z$][\w.]*)(?:\((.*)\))?")
_QUERY_SAFE = "$',()=:"


@dataclass
class Target:
    """What a URL addresses inside a company: an entity set (maybe under a parent) and maybe one row."""

    company: Company
    etype: EntityType
    key: str | None
    parent: Row | None
    context: str  # `companies(..)/items` part of @odata.context


class BCApi:
    """WSGI app for `/v2.0/...`; `admin_app` serves `/_emulator/bc/...`."""

    def __init__(self, config: EmulatorConfig, clock: Clock, validate_token: Callable[[str], dict]) -> None:
        self.config = config
        self.clock = clock
        self.validate_token = validate_token
        self.store = Store(clock)
        self.masters = MasterRules(self.store)
        self.business_events = BusinessEventEngine(config, clock)
        self.documents = DocumentRules(self.store, self.business_events)
        self.webhooks = WebhookEngine(config, clock, self.store)
        self.store.listener = self.webhooks.record
        load_seed(self.store, config, config.seed)
        self.admin_app = BCAdmin(self)
        self.admin_center = AdminCenter(self)

    def start(self) -> None:
        """Start the webhook and business-event dispatchers."""
        self.webhooks.start()
        self.business_events.start()

    def stop(self) -> None:
        """Stop the webhook and business-event dispatchers."""
        self.webhooks.stop()
        self.business_events.stop()

    def flush_webhooks(self) -> None:
        """Deliver all pending notifications now (ignores the debounce)."""
        self.webhooks.flush()

    # ---- in-process writes -----------------------------------------------------------------------

    def create(self, company: Company, set_name: str, body: dict[str, Any], parent: Row | None = None) -> Row:
        """POST `body` to an entity set (as the API does, with every rule and webhook change)."""
        if not COMPANY_SETS[set_name].writable:
            raise method_not_allowed("POST", set_name, "Collection")
        with self.store.transaction():
            if set_name in LINE_SETS:
                return self.documents.create_line(company, set_name, body, parent)
            values, parts = check_body(COMPANY_SETS[set_name], body)
            if set_name in LINES:
                return self.documents.create(company, set_name, values, parts)
            if parts:  # items with itemVariants
                item = self.masters.create(company, set_name, values, parent)
                for child in parts["itemVariants"]:
                    self.create(company, "itemVariants", child, item)
                return item
            return self.masters.create(company, set_name, values, parent)

    def update(
        self, company: Company, set_name: str, row: Row, body: dict[str, Any], parent: Row | None = None
    ) -> None:
        """PATCH `row` with `body`."""
        if not COMPANY_SETS[set_name].writable:
            raise method_not_allowed("PATCH", set_name, "Entity")
        with self.store.transaction():
            values, _ = check_body(COMPANY_SETS[set_name], body, row)
            if set_name in LINE_SETS:
                self.documents.update_line(company, set_name, row, values)
            elif set_name in LINES:
                self.documents.update(company, set_name, row, values)
            else:
                self.masters.update(company, set_name, row, values, parent)
                if set_name == "customers" and "blocked" in values:  # OnAfterValidate of Blocked
                    blocked = row.data["blocked"]
                    name = "CustomerUnBlocked" if blocked in ("", "_x0020_") else "CustomerBlocked"
                    payload = {"CustomerId": row.id, "Blocked": blocked}
                    self.documents.raise_after_commit(company, name, payload, "customers", row.id)

    def delete(self, company: Company, set_name: str, row: Row) -> None:
        """DELETE `row` (also of read-only sets: the admin API removes posted documents this way)."""
        with self.store.transaction():
            if set_name in LINE_SETS:
                self.documents.delete_line(company, set_name, row)
            elif set_name in LINES:
                self.documents.delete(company, set_name, row)
            else:
                self.masters.delete(company, set_name, row)

    # ---- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except BCError as error:
            response = json_response(error.body(), error.status)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v2.0":
            raise BCError(404, "BadRequest_InvalidRequestUrl", f"The request URL {request.path} is invalid.")
        claims = self._authenticate(request)
        if parts[2] == "api":  # /v2.0/{environment}/api/...: the token's tenant
            tenant_segment, env_name, rest = claims.get("tid", ""), parts[1], parts[3:]
        elif len(parts) >= 4 and parts[3] == "api":
            tenant_segment, env_name, rest = parts[1], parts[2], parts[4:]
        else:
            raise BCError(404, "BadRequest_InvalidRequestUrl", f"The request URL {request.path} is invalid.")
        tenant = self._tenant(tenant_segment, claims)
        env = self.store.find_environment(tenant, env_name)
        if env is None:
            raise BCError(404, "BadRequest_ResourceNotFound", f"The environment '{env_name}' does not exist.")
        api = (
            f"{request.host_url}v2.0/{parts[1]}/{env_name}/api"
            if parts[2] != "api"
            else f"{request.host_url}v2.0/{env_name}/api"
        )
        if rest[:3] == ["microsoft", "runtime", "beta"]:
            return self._runtime_api(request, env, rest[3:])
        if rest[:3] == ["microsoft", "runtime", "v1.0"]:
            return self._business_events(request, env, [s for s in rest[3:] if s], claims)
        route = next((r for r in ROUTES if rest[: r.count("/") + 1] == r.split("/")), None)
        if route is None:
            raise BCError(
                404,
                "BadRequest_ResourceNotFound",
                f"Resource not found for the segment '{rest[0] if rest else 'api'}'.",
            )
        base = f"{api}/{route}"
        segments = [s for s in rest[route.count("/") + 1 :] if s]
        if not segments:
            return json_response(
                {
                    "@odata.context": f"{base}/$metadata",
                    "value": [
                        {"name": n, "kind": "EntitySet", "url": n}
                        for n in ("companies", "subscriptions", *route_sets(route))
                    ],
                }
            )
        if segments == ["$metadata"]:
            self._only(request, "GET", "$metadata", "Collection")
            return Response(metadata(route), content_type="application/xml")
        if segments[0].startswith("subscriptions"):
            return self._subscriptions(request, env, segments, base, claims, route)
        return self._entities(request, env, segments, base, route)

    def _authenticate(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise unauthorized("The server has rejected the client credentials.")
        try:
            return self.validate_token(header[7:].strip())
        except InvalidToken as exc:
            raise unauthorized(f"The server has rejected the client credentials. {exc}") from None

    def _tenant(self, segment: str, claims: dict[str, Any]) -> str:
        guids = {g.lower() for g in self.config.tenants.values()}
        tenant = self.config.tenants.get(segment.lower()) or (
            segment.lower() if segment.lower() in guids else None
        )
        if tenant is None:
            raise BCError(404, "Internal_TenantUnavailable", f"The tenant '{segment}' is not accessible.")
        if str(claims.get("tid", "")).lower() != tenant.lower():
            raise unauthorized(
                "The server has rejected the client credentials. The token was issued for another tenant."
            )
        return tenant.lower()

    # ---- entities --------------------------------------------------------------------------------

    def _entities(
        self, request: Request, env: Environment, segments: list[str], base: str, route: str
    ) -> Response:
        with self.store.lock:
            first, key = parse_segment(segments[0])
            if first == "companies":
                if key is None and len(segments) == 1:
                    return self._companies(request, env, base)
                company = self._company(env, key)
                if len(segments) == 1:
                    self._only(request, "GET", "companies", "Entity")
                    return json_response(
                        {
                            "@odata.context": f"{base}/$metadata#companies/$entity",
                            **render(company.row, COMPANY, None),
                        }
                    )
                if segments[-1].startswith("Microsoft.NAV."):
                    return self._action(request, company, segments[1:])
                target = self._target(company, segments[1:], f"companies({company.id})", route)
            else:
                company_key = request.args.get("company")
                if not company_key:
                    raise bad_request(
                        "Internal_CompanyNotFound",
                        "Cannot process the request because the default "
                        "company cannot be found. You can specify a default company in the service "
                        "configuration file, or specify one for each tenant, or you can add a query "
                        'string in the form of "company=[name]".',
                    )
                company = self._company(env, company_key)
                if segments[-1].startswith("Microsoft.NAV."):
                    return self._action(request, company, segments)
                target = self._target(company, segments, f"companies({company.id})", route)
        if request.method == "GET":
            with self.store.lock:
                return self._get(request, target, base)
        return self._write(request, target, base)

    def _companies(self, request: Request, env: Environment, base: str) -> Response:
        self._only(request, "GET", "companies", "Collection")
        args = request.args
        rows = [c.row for c in env.companies.values()]
        if "$filter" in args:
            predicate = parse_filter(args["$filter"], COMPANY.fields, COMPANY.type_name).predicate
            rows = [r for r in rows if predicate(r.data)]
        select = parse_select(args["$select"], COMPANY.fields, "company") if "$select" in args else None
        return json_response(
            {
                "@odata.context": f"{base}/$metadata#companies",
                "value": [render(r, COMPANY, select) for r in rows],
            }
        )

    def _company(self, env: Environment, key: str | None) -> Company:
        company = env.company(key.strip("'")) if key else None
        if company is None:
            raise bad_request("Internal_CompanyNotFound", f"The company '{key}' does not exist.")
        return company

    def _target(self, company: Company, segments: list[str], context: str, route: str) -> Target:
        name, key = parse_segment(segments[0])
        etype = route_sets(route).get(name)
        if etype is None:
            raise BCError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{name}'.")
        key = parse_key(key)
        target = Target(company, etype, key, None, f"{context}/{name}")
        if len(segments) == 1:
            return target
        nav, nav_key = parse_segment(segments[1])
        if key is None or nav not in etype.parts or len(segments) > 2:
            raise BCError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{nav}'.")
        parent = self._row(company, etype, key)
        return Target(
            company,
            COMPANY_SETS[etype.parts[nav]],
            parse_key(nav_key),
            parent,
            f"{context}/{name}({key})/{nav}",
        )

    def _row(self, company: Company, etype: EntityType, key: str, parent: Row | None = None) -> Row:
        row = company.sets[etype.set_name].get(key)
        if row is None or (parent is not None and (etype.parent_field is None
                                                   or row.data[etype.parent_field] != parent.id)):
            raise BCError(
                404,
                "Internal_RecordNotFound",
                f"The {etype.label} does not exist. Identification fields and values: Id='{key}'",
            )
        return row

    def _only(self, request: Request, method: str, name: str, kind: str) -> None:
        if request.method != method:
            raise method_not_allowed(request.method, name, kind)

    # ---- GET -------------------------------------------------------------------------------------

    def _get(self, request: Request, target: Target, base: str) -> Response:
        args = request.args
        etype = target.etype
        select = parse_select(args["$select"], etype.fields, etype.type_name) if "$select" in args else None
        expands = self._expands(etype, args.get("$expand"))
        if target.key is not None:
            row = self._row(target.company, etype, target.key, target.parent)
            lagging = self._replica_filter(request)
            if lagging is not None and not lagging(row.data):
                raise BCError(404, "Internal_RecordNotFound", f"The {etype.label} does not exist. "
                              f"Identification fields and values: Id='{target.key}'")
            body: dict[str, Any] = {
                "@odata.context": f"{base}/$metadata#{target.context}/$entity",
                **render(row, etype, select, expands, target.company),
            }
            return json_response(body)
        flt = parse_filter(args["$filter"], etype.fields, etype.type_name) if "$filter" in args else None
        rows = self._source(target, flt.equals if flt else {})
        lagging = self._replica_filter(request)
        orderby = (
            parse_orderby(args["$orderby"], etype.fields, etype.type_name) if "$orderby" in args else None
        )
        top = parse_top(args.get("$top"))
        prefer = parse_max_page_size(request.headers.get("Prefer"))
        page_size = max(1, min(self.config.page_size, prefer or self.config.page_size))
        limit = page_size if top is None else min(page_size, top)
        token = args.get("$skiptoken")
        skip = 0 if token else parse_top(args.get("$skip")) or 0
        predicate = flt.predicate if flt else None
        if lagging is not None:
            predicate = (lagging if predicate is None
                         else lambda data, p=predicate, lag=lagging: lag(data) and p(data))
        page, more, next_token = self._page(rows, orderby, predicate, token, skip, limit)
        body = {
            "@odata.context": f"{base}/$metadata#{target.context}",
            "value": [render(r, etype, select, expands, target.company) for r in page],
        }
        if more and (top is None or top > len(page)):
            query = [(k, v) for k, v in args.items(multi=True) if k not in ("$skiptoken", "$top", "$skip")]
            if top is not None:
                query.append(("$top", str(top - len(page))))
            query.append(("$skiptoken", next_token))
            body["@odata.nextLink"] = f"{request.base_url}?{encode_query(query)}"
        response = json_response(body)
        if prefer is not None:
            response.headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        return response

    def _replica_filter(self, request: Request) -> Callable[[dict], bool] | None:
        """For a GET with `Data-Access-Intent: ReadOnly` while the replica lags: what it already has
        (entities last written before `now - lag`; a newer write is not there yet, and this model
        shows no older version of it either). None: the primary answers."""
        lag = self.config.replica_lag_seconds
        if lag <= 0 or request.headers.get("Data-Access-Intent", "").lower() != "readonly":
            return None
        cutoff = self.clock.now() - timedelta(seconds=lag)

        def replicated(data: dict) -> bool:
            written = data.get("lastModifiedDateTime")
            return not written or parse_datetime(written) <= cutoff

        return replicated

    def _expands(self, etype: EntityType, text: str | None) -> list[tuple[Expand, EntityType]]:
        result = []
        for item in parse_expand(text or ""):
            if item.name not in etype.parts:
                raise no_property(item.name, etype.type_name)
            result.append((item, COMPANY_SETS[etype.parts[item.name]]))
        return result

    def _source(self, target: Target, equals: dict[str, Any]) -> list[Row] | Callable[[int], Iterator[Row]]:
        """Rows to page through: a list (small, already scoped) or an iterator factory by position."""
        entity_set = target.company.sets[target.etype.set_name]
        if target.parent is not None:
            return entity_set.children(target.parent.id)
        parent_field = target.etype.parent_field
        if target.etype.set_name in LINE_SETS:
            if not isinstance(equals.get("documentId"), str):
                raise dialog("You must specify an Id or a Document Id to get the lines.")
            return entity_set.children(equals["documentId"])
        if parent_field and isinstance(equals.get(parent_field), str):
            return entity_set.children(equals[parent_field])
        if isinstance(equals.get("id"), str):
            row = entity_set.get(equals["id"])
            return [row] if row else []
        return entity_set.iter_from

    def _page(
        self,
        rows: list[Row] | Callable[[int], Iterator[Row]],
        orderby: list[tuple[str, bool]] | None,
        predicate: Callable[[dict], bool] | None,
        token: str | None,
        skip: int,
        limit: int,
    ) -> tuple[list[Row], bool, str]:
        """One page of at most `limit` rows after `token` (or after the first `skip` matches);
        whether more follow; the next token."""
        if orderby:
            listed = list(rows(0)) if callable(rows) else rows
            matching = [r for r in listed if predicate is None or predicate(r.data)]
            offset = _token_int(token, "o") + skip
            page: list[Row] = sort_rows(matching, orderby)[offset : offset + limit]
            return page, offset + limit < len(matching), f"o{offset + limit}"
        after = _token_int(token, "")
        source = rows(after) if callable(rows) else (r for r in rows if r.seq > after)
        page = []
        for row in source:
            if predicate is not None and not predicate(row.data):
                continue
            if skip:
                skip -= 1
                continue
            if len(page) == limit:
                return page, True, str(page[-1].seq)
            page.append(row)
        return page, False, ""

    # ---- POST / PATCH / DELETE -------------------------------------------------------------------

    def _write(self, request: Request, target: Target, base: str) -> Response:
        etype, company = target.etype, target.company
        kind = "Collection" if target.key is None else "Entity"
        allowed = {"Collection": ("POST",), "Entity": ("PATCH", "DELETE")}[kind]
        if request.method not in allowed or not etype.writable:
            raise method_not_allowed(request.method, etype.set_name, kind)
        if target.key is None:  # a POST, the only method on a collection
            body = read_json(request)
            row = self.create(company, etype.set_name, body, target.parent)
            with self.store.lock:
                expands = self._expands(etype, request.args.get("$expand"))
                select = (
                    parse_select(request.args["$select"], etype.fields, etype.type_name)
                    if "$select" in request.args
                    else None
                )
                entity = {
                    "@odata.context": f"{base}/$metadata#{target.context}/$entity",
                    **render(row, etype, select, expands, company),
                }
            response = json_response(entity, 201)
            response.headers["Location"] = f"{request.base_url}({row.id})"
            return response
        with self.store.lock:
            row = self._row(company, etype, target.key, target.parent)
            check_if_match(request, row.etag)
            if request.method == "DELETE":
                self.delete(company, etype.set_name, row)
                return Response(status=204)
            self.update(company, etype.set_name, row, read_json(request), target.parent)
            return json_response(
                {"@odata.context": f"{base}/$metadata#{target.context}/$entity", **render(row, etype, None)}
            )

    # ---- bound actions ---------------------------------------------------------------------------

    def _action(self, request: Request, company: Company, segments: list[str]) -> Response:
        """`POST <set>(<id>)/Microsoft.NAV.<action>`: `post` on a draft sales invoice, `shipAndInvoice`
        on a sales order; 204 like BC (the action's result code is Deleted/Updated, no body)."""
        name, key = parse_segment(segments[0])
        action = segments[-1].removeprefix("Microsoft.NAV.")
        known = {("salesInvoices", "post"), ("salesOrders", "shipAndInvoice")}
        if len(segments) != 2 or (name, action) not in known or key is None:
            raise BCError(404, "BadRequest_ResourceNotFound",
                          f"Resource not found for the segment '{segments[-1]}'.")
        if request.method != "POST":
            raise method_not_allowed(request.method, segments[-1], "Action")
        row = self._row(company, COMPANY_SETS[name], parse_key(key) or "")
        if name == "salesInvoices":
            self.documents.post_draft(company, row)
        else:
            self.documents.ship_and_invoice(company, row)
        return Response(status=204)

    # ---- external business events ----------------------------------------------------------------

    def _business_events(self, request: Request, env: Environment, rest: list[str],
                         claims: dict[str, Any]) -> Response:
        """`api/microsoft/runtime/v1.0/`: the catalogue and the subscriptions (environment level, or
        under `companies(<id>)/`)."""
        base = f"{request.host_url}v2.0/{env.tenant}/{env.name}/api/microsoft/runtime/v1.0"
        company = None
        if rest and rest[0].startswith("companies("):
            with self.store.lock:
                company = self._company(env, parse_segment(rest[0])[1])
            rest = rest[1:]
        engine = self.business_events
        if len(rest) != 1:
            raise BCError(404, "BadRequest_ResourceNotFound", "Resource not found for the segment 'v1.0'.")
        name, key = parse_segment(rest[0])
        if name == "externalbusinesseventdefinitions":
            self._only(request, "GET", name, "Collection")
            return json_response({"@odata.context": f"{base}/$metadata#{name}",
                                  "value": [d.to_json() for d in DEFINITIONS.values()]})
        if name != "externaleventsubscriptions":
            raise BCError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{name}'.")
        engine.check_permission()
        context = f"{base}/$metadata#{name}"
        if key is None:
            if request.method == "GET":
                subs = [s for s in engine.in_environment(env.tenant, env.name)
                        if company is None or s.companyId == company.id]
                return json_response({"@odata.context": context, "value": [s.to_json() for s in subs]})
            if request.method != "POST":
                raise method_not_allowed(request.method, name, "Collection")
            body = read_json(request)
            if company is None and isinstance(body, dict) and isinstance(body.get("companyId"), str):
                with self.store.lock:
                    company = env.company(body["companyId"].lower())
            created = engine.create(env.tenant, env.name, company, body, str(claims.get("oid") or EMPTY_GUID))
            return json_response({"@odata.context": f"{context}/$entity", **created.to_json()}, 201)
        sub = engine.subscriptions.get((parse_key(key) or "").lower())
        if sub is None or (sub.tenant, sub.environment) != (env.tenant, env.name):
            raise BCError(404, "BadRequest_NotFound", f"The subscription '{key}' does not exist.")
        return _subscription_entity(request, name, context, sub, engine.delete, engine.update)

    # ---- subscriptions ---------------------------------------------------------------------------

    def _subscriptions(
        self,
        request: Request,
        env: Environment,
        segments: list[str],
        base: str,
        claims: dict[str, Any],
        route: str,
    ) -> Response:
        name, key = parse_segment(segments[0])
        if name != "subscriptions" or len(segments) > 1:
            raise BCError(
                404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{segments[-1]}'."
            )
        context = f"{base}/$metadata#subscriptions"
        engine = self.webhooks
        if key is None:
            if request.method == "GET":
                return json_response(
                    {
                        "@odata.context": context,
                        "value": [s.to_json() for s in engine.in_environment(env.tenant, env.name)],
                    }
                )
            if request.method != "POST":
                raise method_not_allowed(request.method, "subscriptions", "Collection")
            created = engine.create(
                env.tenant, env.name, read_json(request), str(claims.get("oid") or EMPTY_GUID), route
            )
            return json_response({"@odata.context": f"{context}/$entity", **created.to_json()}, 201)
        if not (len(key) > 2 and key[0] == key[-1] == "'"):
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        sub = engine.find(env.tenant, env.name, key[1:-1])
        if sub is None:
            raise BCError(404, "BadRequest_NotFound", f"The subscription '{key[1:-1]}' does not exist.")
        return _subscription_entity(request, "subscriptions", context, sub, engine.delete, engine.renew)

    def _runtime_api(self, request: Request, env: Environment, rest: list[str]) -> Response:
        """`microsoft/runtime/beta`: `webhookSupportedResources` (page 5460), `webhookLogs` (page 5461)
        and `apiRoutes` (page 5462)."""
        if len(rest) == 2 and parse_segment(rest[1])[0] == "webhookLogs":
            return self._webhook_logs(request, env, rest)
        if len(rest) != 2 or parse_segment(rest[1])[0] not in ("webhookSupportedResources", "apiRoutes"):
            raise BCError(
                404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{rest[-1]}'."
            )
        name, key = parse_segment(rest[0])
        with self.store.lock:
            if name != "companies":
                raise BCError(
                    404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{name}'."
                )
            self._company(env, key)
        page = parse_segment(rest[1])[0]
        self._only(request, "GET", page, "Collection")
        if page == "apiRoutes":
            rows = [{"route": route} for route in ROUTES]
            field_name = "route"
        else:
            rows = [
                {"resource": f"{COMPANY_SETS[name].route}/{name}"}
                for name in sorted(self.webhooks.supported)
                if name in COMPANY_SETS
            ]
            field_name = "resource"
        if "$filter" in request.args:
            match = re.fullmatch(rf"\s*{field_name}\s+eq\s+'([^']*)'\s*", request.args["$filter"])
            if not match:
                raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
            pattern = re.escape(match.group(1)).replace(r"\*", ".*")
            rows = [r for r in rows if re.fullmatch(pattern, r[field_name])]
        return json_response({"value": rows})


    def _webhook_logs(self, request: Request, env: Environment, rest: list[str]) -> Response:
        """`api/microsoft/runtime/beta/companies({id})/webhookLogs` (page 5461, read-only, the
        company's Activity Log rows of context APIWEBHOOK, newest first)."""
        name, key = parse_segment(rest[0])
        with self.store.lock:
            if name != "companies":
                raise BCError(
                    404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{name}'."
                )
            company = self._company(env, key)
        self._only(request, "GET", "webhookLogs", "Collection")
        return json_response({"value": self.webhooks.webhook_logs(env.tenant, env.name, company.id)})


# ---- helpers -------------------------------------------------------------------------------------


def parse_segment(segment: str) -> tuple[str, str | None]:
    """`items(123)` → ("items", "123"); `items` → ("items", None)."""
    match = _SEGMENT.fullmatch(segment)
    if not match:
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    return match.group(1), match.group(2)


def parse_key(key: str | None) -> str | None:
    """A GUID key (unquoted, or `id=`-prefixed) in lower case."""
    if key is None:
        return None
    key = key.removeprefix("id=")
    if not is_guid(key):
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    return key.lower()


def render(
    row: Row,
    etype: EntityType,
    select: list[str] | None,
    expands: list[tuple[Expand, EntityType]] | None = None,
    company: Company | None = None,
) -> dict[str, Any]:
    """An entity as JSON: `@odata.etag`, its (selected) fields and expanded parts."""
    data = row.data
    out = {"@odata.etag": row.etag, **({f: data[f] for f in select} if select else data)}
    if not expands:
        return out
    if company is None:
        raise TypeError("expanding a row's parts needs its company")
    for expand, child_type in expands:
        children = company.sets[child_type.set_name].children(row.id)
        if expand.filter:
            predicate = parse_filter(expand.filter, child_type.fields, child_type.type_name).predicate
            children = [c for c in children if predicate(c.data)]
        child_select = (
            parse_select(expand.select, child_type.fields, child_type.type_name) if expand.select else None
        )
        out[expand.name] = [render(c, child_type, child_select) for c in children]
    return out


def _subscription_entity(request: Request, name: str, context: str, sub: Any,
                         delete: Callable[[str], Any], change: Callable[[Any, Any], Any]) -> Response:
    """One subscription (a webhook's or a business event's): GET it, or PATCH (`change`) / DELETE it
    under If-Match."""
    if request.method == "GET":
        return json_response({"@odata.context": f"{context}/$entity", **sub.to_json()})
    if request.method not in ("PATCH", "DELETE"):
        raise method_not_allowed(request.method, name, "Entity")
    check_if_match(request, sub.etag)
    if request.method == "DELETE":
        delete(sub.id)
        return Response(status=204)
    changed = change(sub, read_json(request))
    return json_response({"@odata.context": f"{context}/$entity", **changed.to_json()})


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """A JSON response (serialised once)."""
    return Response(json.dumps(body), status=status, content_type="application/json; odata.metadata=minimal")


def read_json(request: Request) -> Any:
    """The request body as JSON, or BC's "Invalid Request Body"."""
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        raise invalid_body() from None


def check_if_match(request: Request, etag: str) -> None:
    """PATCH/DELETE need `If-Match`: missing/malformed → 400, stale → 409, `*` matches."""
    value = request.headers.get("If-Match", "").strip()
    if value == "*":
        return
    if not value.startswith(('W/"', '"')) or not value.endswith('"') or '\\"' in value:
        raise bad_request(
            "BadRequest_InvalidToken",
            "Could not validate the client concurrency token required by "
            "the service. Please provide a valid token in the client request.",
        )
    if value != etag:
        raise BCError(409, "Request_EntityChanged", "Another user has already changed the record.")


def method_not_allowed(method: str, name: str, kind: str) -> BCError:
    """`BadRequest_MethodNotAllowed` (405)."""
    return BCError(
        405,
        "BadRequest_MethodNotAllowed",
        f"'{method}' requests for '{name}' of EdmType '{kind}' are "
        "not allowed within Dynamics 365 Business Central OData web services.",
    )


def unauthorized(message: str) -> BCError:
    """`Authentication_InvalidCredentials` (401)."""
    return BCError(401, "Authentication_InvalidCredentials", message)


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """Encode query pairs, keeping `$`, `'`, `,`, `(`, `)` readable like BC's next links."""
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=_QUERY_SAFE)}" for k, v in pairs)


def _token_int(token: str | None, prefix: str) -> int:
    if token is None:
        return 0
    if not token.startswith(prefix) or not token[len(prefix) :].isdigit():
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    return int(token[len(prefix) :])
