"""Which BC business events feed which trigger, and the pure decisions about a notification: its
clientState, and whether its `Url` names the document the payload names (BCApps ExternalEvents app,
`ARExternalEvents.Codeunit.al`: `Url` = the API URL of `companies(<company>)/<set>(<API id>)`)."""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from connector.bc.keys import is_guid
from connector.settings import ConnectionSettings
from connector.webhooks.client_state import accepted_states, client_state, key_id

# Microsoft's "Business Events" app (BCApps src/Apps/W1/ExternalEvents/app/app.json)
EVENTS_APP_ID = "6f2c034f-5ebe-4eae-b34c-90a0d4e87687"
ACTIVE = "Active"


@dataclass(frozen=True)
class BusinessEvent:
    """A BC business event about an entity of a trigger: its name, the trigger's entity set, the
    payload parameter holding the entity's API id, and its verb (`bc.<entity>.<verb>`; none: a
    posting, announced as the document's `created` through the same record as the webhook's)."""

    name: str
    entity_set: str
    id_parameter: str
    verb: str = ""

    @property
    def change(self) -> str:
        """The change type a trigger lists to receive this event."""
        return self.verb or "created"


EVENTS: tuple[BusinessEvent, ...] = (
    BusinessEvent("SalesInvoicePosted", "salesInvoices", "SalesInvoiceAPIId"),  # the draft's id if any
    BusinessEvent("SalesShipmentPosted", "salesShipments", "SalesShipmentId"),
    BusinessEvent("SalesCreditMemoPosted", "salesCreditMemos", "SalesCreditMemoAPIId"),
    BusinessEvent("CustomerBlocked", "customers", "CustomerId", verb="blocked"),  # ARExternalEvents
    BusinessEvent("SalesOrderReleased", "salesOrders", "SalesOrderId", verb="released"),  # SalesExt.Events
)
BY_NAME = {e.name: e for e in EVENTS}


def wanted_events(conn: ConnectionSettings) -> list[BusinessEvent]:
    """The business events a connection subscribes to, when BUSINESS_EVENTS is on: postings of the
    triggers that announce `created` (the seed's invoices and shipments, a declared `salesCreditMemos`),
    and the verbs a declared trigger lists (`customers` with `blocked`, `salesOrders` with `released`)."""
    if not conn.business_events:
        return []
    return [e for e in EVENTS
            if (trigger := conn.trigger(e.entity_set)) is not None and trigger.announces(e.change)]


def event_nonce(connection: str, company_id: str, event: str) -> str:
    """What a subscription's clientState is derived from: nothing stored, so the receiver needs only
    the keys (BC's notification names no subscription id)."""
    return f"business-event\x1f{connection}\x1f{company_id.lower()}\x1f{event}"


def event_client_state(key: str, connection: str, company_id: str, event: str) -> str:
    return client_state(key, event_nonce(connection, company_id, event))


def accepts(keys: tuple[str, ...], given: Any, connection: str, company_id: str, event: str) -> bool:
    """Is `given` the clientState of this connection, company and event under any configured key?"""
    if not isinstance(given, str) or not keys:
        return False
    states = accepted_states(keys, event_nonce(connection, company_id, event), key_id(keys[0]))
    return any(hmac.compare_digest(given.encode(), s.encode()) for s in states)


_API_PATH_RE = re.compile(r"^/v2\.0/[^/]+/([^/]+)/api/(.*)$", re.DOTALL)


def on_our_root(url: str, environment: str, root: str) -> str:
    """`url` with its `/v2.0/<tenant>/<environment>/api/` prefix replaced by the configured `root`
    when the environment matches (BC's `GetUrl(ClientType::Api)` may name the tenant by GUID where the
    connection names it by domain); the URL unchanged otherwise, for the resolver to refuse. Scheme,
    host and port are kept: the resolver checks them."""
    parts = urlsplit(url) if isinstance(url, str) else None
    match = _API_PATH_RE.match(parts.path) if parts is not None else None
    if parts is None or match is None or match.group(1).lower() != environment.lower():
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{root}{match.group(2)}{query}"


_DOCUMENT_RE = re.compile(r"/companies\(([^)]*)\)/([A-Za-z]+)\(([^)]*)\)/?$")


def document_of(url: str) -> tuple[str, str, str] | None:
    """(companyId, entity set, id) of a document URL `.../companies(<id>)/<set>(<id>)`, lower-case ids;
    None for anything else."""
    match = _DOCUMENT_RE.search(unquote(urlsplit(url).path))
    if match is None:
        return None
    company, entity_set, key = (g.strip("'{} ") for g in match.groups())
    return (company.lower(), entity_set, key.lower()) if is_guid(company) and is_guid(key) else None


def refusal(event: BusinessEvent | None, company_id: str, url_doc: tuple[str, str, str] | None,
            payload_id: Any) -> str | None:
    """Why a business-event notification is not processed (None: it is)."""
    if event is None:
        return "event not subscribed"
    if not is_guid(company_id):
        return "companyId not a GUID"
    if not isinstance(payload_id, str) or not is_guid(payload_id):
        return f"payload {event.id_parameter} not a GUID"
    if url_doc != (company_id.lower(), event.entity_set, payload_id.lower()):
        return "Url does not name the payload's document"
    return None
