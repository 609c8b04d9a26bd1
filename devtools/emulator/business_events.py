"""External business events of the BC API emulator (dev tooling, never deployed), per bc-api.md §12.1:
the catalogue (`externalbusinesseventdefinitions`), subscriptions (`externaleventsubscriptions`, CRUD with
`subscriptionState`), notifications raised by postings and sent only after the posting commits, retried,
and a subscription switched off after repeated failed deliveries. Sources: docs/emulator.md."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from devtools.emulator.delivery import Dispatcher, post_json
from devtools.emulator.odata import BCError, bad_request, format_datetime

if TYPE_CHECKING:
    from devtools.emulator.clock import Clock
    from devtools.emulator.config import EmulatorConfig
    from devtools.emulator.store import Company

# Microsoft's "Business Events" app (BCApps src/Apps/W1/ExternalEvents/app/app.json)
APP_ID = "6f2c034f-5ebe-4eae-b34c-90a0d4e87687"
APP_NAME = "Business Events"
APP_VERSION = "29.0.0.0"
ACTIVE, DISABLED = "Active", "Disabled"


@dataclass(frozen=True)
class Definition:
    """One `[ExternalBusinessEvent]` of the catalogue: its name, category and payload parameters."""

    name: str
    display_name: str
    category: str
    description: str
    parameters: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        payload = [{"name": p, "type": "Guid" if p.endswith("Id") else "Text"} for p in self.parameters]
        return {"name": self.name, "category": self.category, "displayName": self.display_name,
                "description": self.description, "eventVersion": "1.0", "payload": json.dumps(payload),
                "appId": APP_ID, "appName": APP_NAME, "appVersion": APP_VERSION}


# ARExternalEvents.Codeunit.al and SalesExternalEvents.Codeunit.al (BCApps ExternalEvents app)
DEFINITIONS = {d.name: d for d in (
    Definition("SalesInvoicePosted", "Sales invoice posted", "Accounts Receivable",
               "This business event is triggered when a sales invoice is posted as part of the Quote to "
               "Cash process.", ("SalesInvoiceAPIId", "SalesInvoiceSystemId", "Url", "WebClientUrl")),
    Definition("SalesCreditMemoPosted", "Sales credit memo posted", "Accounts Receivable",
               "This business event is triggered when a sales credit memo is posted.",
               ("SalesCreditMemoAPIId", "SalesCreditMemoSystemId", "Url", "WebClientUrl")),
    Definition("SalesShipmentPosted", "Sales shipment posted", "Accounts Receivable",
               "This business event is triggered when goods from a sales order are shipped.",
               ("SalesShipmentId", "Url", "WebClientUrl")),
    Definition("CustomerBlocked", "Customer blocked", "Accounts Receivable",
               "This business event is triggered when a customer is blocked for shipping/invoicing.",
               ("CustomerId", "Blocked", "Url", "WebClientUrl")),
    Definition("CustomerUnBlocked", "Customer unblocked", "Accounts Receivable",
               "This business event is triggered when a customer is unblocked for shipping/invoicing.",
               ("CustomerId", "Blocked", "Url", "WebClientUrl")),
    Definition("SalesOrderReleased", "Sales order released", "Sales",
               "This business event is triggered when a sales order is released.",
               ("SalesOrderId", "Url", "WebClientUrl")),
)}
_WRITABLE = {"companyId", "companyName", "eventName", "eventVersion", "appId", "notificationUrl",
             "clientState", "subscriptionType", "subscriptionState"}


@dataclass
class EventSubscription:
    """One row of `externaleventsubscriptions` (table "External Event Subscription", page 3300)."""

    id: str
    tenant: str
    environment: str
    companyId: str
    companyName: str
    eventName: str
    eventVersion: str
    appId: str
    notificationUrl: str
    clientState: str
    userId: str
    subscriptionState: str = ACTIVE
    subscriptionType: str = "Non-Dataverse"
    failures: int = 0  # failed deliveries in a row
    version: int = 1

    @property
    def etag(self) -> str:
        token = base64.b64encode(f"'{self.id};{self.version};'".encode()).decode()
        return f'W/"{token}"'

    def to_json(self) -> dict[str, Any]:
        hidden = ("tenant", "environment", "failures", "version")
        out = {k: v for k, v in asdict(self).items() if k not in hidden}
        return {"@odata.etag": self.etag, **out}


@dataclass
class Pending:
    """A notification waiting to be (re)sent."""

    subscription_id: str
    body: dict[str, Any]
    attempt: int = 0
    due: float = field(default_factory=time.monotonic)


class BusinessEventEngine:
    """Subscriptions, raised events and the delivery thread for all tenants and environments."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.base_url = ""  # the server's origin, set when it starts (`Url` in payloads)
        self.permitted = True  # False: the caller lacks "Ext. Events - Subscr" (403)
        self.subscriptions: dict[str, EventSubscription] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._pending: list[Pending] = []
        self._lock = threading.RLock()
        self._dispatcher = Dispatcher("bc-business-events", self._next_wait, self.run_once)

    # ---- subscriptions ---------------------------------------------------------------------------

    # ---- saved state (devtools/emulator/state.py keeps it on disk; pending deliveries are not) --
    def snapshot(self) -> list[dict[str, Any]]:
        """The External Event Subscription rows (BC keeps them across a restart)."""
        with self._lock:
            return [asdict(s) for s in self.subscriptions.values()]

    def restore(self, state: list[dict[str, Any]]) -> None:
        """Take the subscriptions of `state` (from `snapshot`)."""
        with self._lock:
            self.subscriptions = {saved["id"]: EventSubscription(**saved) for saved in state}

    def check_permission(self) -> None:
        if not self.permitted:
            raise BCError(403, "Authorization_InsufficientPermissions",
                          "You do not have the following permissions on TableData External Event "
                          "Subscription: Read. Assign the permission set Ext. Events - Subscr.")

    def create(self, tenant: str, environment: str, company: Company | None, body: Any,
               user_id: str) -> EventSubscription:
        values = self._check(body)
        for name in ("eventName", "notificationUrl"):
            if not values.get(name):
                raise bad_request("BadRequest_RequiredParamNotProvided",
                                  f"Field '{name}' must not be blank or empty.")
        if company is None:
            raise bad_request("Internal_CompanyNotFound",
                              f"The company '{values.get('companyId')}' does not exist.")
        sub = EventSubscription(str(uuid.uuid4()), tenant, environment, company.id, company.name,
                                values["eventName"], values.get("eventVersion") or "1.0",
                                values.get("appId") or APP_ID, values["notificationUrl"],
                                values.get("clientState", ""), user_id,
                                subscriptionState=values.get("subscriptionState") or ACTIVE)
        with self._lock:
            self.subscriptions[sub.id] = sub
        return sub

    def update(self, sub: EventSubscription, body: Any) -> EventSubscription:
        values = self._check(body)
        with self._lock:
            for name, value in values.items():
                setattr(sub, name, value)
            if values.get("subscriptionState") == ACTIVE:
                sub.failures = 0
            sub.version += 1
        return sub

    def delete(self, subscription_id: str) -> bool:
        with self._lock:
            self._pending = [p for p in self._pending if p.subscription_id != subscription_id]
            return self.subscriptions.pop(subscription_id, None) is not None

    def in_environment(self, tenant: str, environment: str) -> list[EventSubscription]:
        with self._lock:
            return [s for s in self.subscriptions.values()
                    if (s.tenant, s.environment) == (tenant, environment)]

    def switch_off(self, subscription_id: str) -> EventSubscription:
        """What BC does after repeated failed deliveries (also the admin API's way to simulate it)."""
        with self._lock:
            sub = self.subscriptions[subscription_id]
            sub.subscriptionState = DISABLED
            sub.version += 1
            self._pending = [p for p in self._pending if p.subscription_id != subscription_id]
            return sub

    def _check(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            raise bad_request("BadRequest", "Invalid Request Body")
        values = {}
        for name, value in body.items():
            if name.startswith("@odata.") or name == "id":
                continue
            if name not in _WRITABLE or not isinstance(value, str):
                raise bad_request("BadRequest", f"The property '{name}' does not exist on type "
                                  "'Microsoft.NAV.externalEventSubscription' or has an invalid value.")
            values[name] = value
        if "eventName" in values and values["eventName"] not in DEFINITIONS:
            raise bad_request("BadRequest", f"The business event '{values['eventName']}' does not exist.")
        if "notificationUrl" in values and not values["notificationUrl"].startswith(("http://", "https://")):
            raise bad_request("BadRequest", "The notificationUrl must be an absolute http(s) URL.")
        if values.get("subscriptionState", ACTIVE) not in (ACTIVE, DISABLED):
            raise bad_request("BadRequest", f"subscriptionState must be {ACTIVE} or {DISABLED}.")
        return values

    # ---- raising ---------------------------------------------------------------------------------

    def api_url(self, company: Company, set_name: str, entity_id: str) -> str:
        """`Url` of a payload: GetUrl(ClientType::Api) + `v2.0/companies(<id>)/<set>(<id>)`."""
        return (f"{self.base_url}/v2.0/{company.tenant}/{company.environment}/api/"
                f"v2.0/companies({company.id})/{set_name}({entity_id})")

    def raise_event(self, company: Company, name: str, payload: dict[str, Any]) -> None:
        """Queue a notification for every active subscription of this company and event (call it after
        the raising transaction commits)."""
        now = format_datetime(self.clock.now())
        with self._lock:
            for sub in self.subscriptions.values():
                if ((sub.tenant, sub.environment, sub.companyId, sub.eventName)
                        != (company.tenant, company.environment, company.id, name)
                        or sub.subscriptionState != ACTIVE):
                    continue
                body = {"initiatingUserAADObjectId": sub.userId, "timestamp": now,
                        "companyName": company.name, "companyId": company.id, "eventName": name,
                        "payload": payload, "appId": sub.appId, "clientState": sub.clientState}
                self._pending.append(Pending(sub.id, body))
        self._dispatcher.wake()

    def take_pending(self) -> list[dict[str, Any]]:
        """The bodies of every pending notification, removed (for a sender of one's own: the bench)."""
        with self._lock:
            taken, self._pending = self._pending, []
        return [p.body for p in taken]

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"subscriptionId": p.subscription_id, "attempt": p.attempt, "body": p.body}
                    for p in self._pending]

    # ---- delivery --------------------------------------------------------------------------------

    def start(self) -> None:
        self._dispatcher.start()

    def stop(self) -> None:
        self._dispatcher.stop()

    def _next_wait(self) -> float:
        with self._lock:
            dues = [p.due for p in self._pending]
        return max(0.0, min(dues) - time.monotonic()) if dues else 1.0

    def run_once(self, *, force: bool = False) -> None:
        """Send every due notification (all pending ones with `force`), one at a time."""
        now = time.monotonic()
        with self._lock:
            due = [p for p in self._pending if force or p.due <= now]
            self._pending = [p for p in self._pending if p not in due]
        for item in due:
            sub = self.subscriptions.get(item.subscription_id)
            if sub is None or sub.subscriptionState != ACTIVE:
                continue
            status, error = post_json(sub.notificationUrl, item.body, self.config.notification_timeout)
            self._settle(sub, item, status, error)

    def _settle(self, sub: EventSubscription, item: Pending, status: int | None, error: str | None) -> None:
        ok = status is not None and 200 <= status < 300
        with self._lock:
            self.deliveries.append({"kind": "business-event", "url": sub.notificationUrl, "status": status,
                                    "attempt": item.attempt + 1, "body": item.body, "error": error,
                                    "at": format_datetime(self.clock.now())})
            if ok:
                sub.failures = 0
                return
            sub.failures += 1
            if sub.failures >= self.config.business_event_failures_to_disable:
                self.switch_off(sub.id)
                return
            delays = self.config.business_event_retry_seconds
            if item.attempt < len(delays):
                item.due = time.monotonic() + delays[item.attempt]
                item.attempt += 1
                self._pending.append(item)
        self._dispatcher.wake()
