"""Webhooks of the BC API emulator (dev tooling, never deployed), per bc-api.md §7: subscriptions with
the validation handshake, a change journal, a debounced dispatcher thread that merges `updated`
changes, bundles per notificationUrl, collapses bulk changes into `collection`, retries on
no response/408/429/5xx and deletes subscriptions like BC does. Every POST is kept in a delivery log."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from devtools.emulator.bc_schema import COMPANY_SETS, webhook_capable
from devtools.emulator.config import tenant_limit
from devtools.emulator.delivery import Dispatcher, post_json
from devtools.emulator.odata import bad_request, format_datetime, parse_datetime
from devtools.emulator.store import Company, Store

if TYPE_CHECKING:
    from devtools.emulator.clock import Clock
    from devtools.emulator.config import EmulatorConfig

SubKey = tuple[str, str, str, str]  # tenant, environment, company id, entity set


@dataclass
class Subscription:
    """One webhook subscription of an environment."""

    id: str
    tenant: str
    environment: str
    notification_url: str
    resource: str
    company_id: str
    set_name: str
    client_state: str
    expiration: datetime
    created_at: str
    modified_at: str
    user_id: str
    version: int = 1

    @property
    def key(self) -> SubKey:
        """What the subscription watches."""
        return (self.tenant, self.environment, self.company_id, self.set_name)

    @property
    def etag(self) -> str:
        """Weak ETag, new after every renewal."""
        token = base64.b64encode(f"'{self.id};{self.version};00;'".encode()).decode()
        return f'W/"{token}"'

    def to_json(self) -> dict[str, Any]:
        """The subscription entity as the API returns it."""
        return {
            "@odata.etag": self.etag,
            "subscriptionId": self.id,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "timestamp": self.version,
            "userId": self.user_id,
            "lastModifiedDateTime": self.modified_at,
            "clientState": self.client_state,
            "expirationDateTime": format_datetime(self.expiration),
            "systemCreatedAt": self.created_at,
            "systemCreatedBy": self.user_id,
            "systemModifiedAt": self.modified_at,
            "systemModifiedBy": self.user_id,
        }

    def resource_url(self, entity_id: str | None = None, since: str | None = None) -> str:
        """`resource` of a notification: the subscription's collection URL plus `(<id>)`, or a
        `collection` URL with an optional `lastModifiedDateTime gt` filter (no leading slash)."""
        base = self.resource.rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = base.lstrip("/")
            base = base if base.startswith("api/") else "api/v2.0/" + base
        if entity_id is not None:
            return f"{base}({entity_id})"
        if since is not None:  # BC encodes the spaces only, not the datetime's colons
            return f"{base}?$filter=lastModifiedDateTime%20gt%20{since}"
        return base


@dataclass
class Notification:
    """A pending notification of one subscription."""

    subscription_id: str
    change_type: str
    entity_id: str | None
    last_modified: str
    first_change: str
    has_delete: bool = False


@dataclass
class Outbox:
    """Pending notifications of one notificationUrl with its retry state."""

    url: str
    items: list[Notification] = field(default_factory=list)
    attempt: int = 0  # failed deliveries so far
    due: float = 0.0  # time.monotonic() of the next try


class WebhookEngine:
    """Subscriptions, the change journal and the dispatcher for all tenants and environments."""

    def __init__(self, config: EmulatorConfig, clock: Clock, store: Store) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.supported: set[str] = (
            webhook_capable() if config.webhook_supported is None else set(config.webhook_supported)
        )
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[dict[str, Any]] = []
        # BC's "Activity Log" rows of context APIWEBHOOK (what `webhookLogs` shows), per company
        self.activity: list[dict[str, Any]] = []
        self._index: dict[SubKey, list[Subscription]] = {}
        self._journal: list[tuple[Subscription, str, str, str]] = []  # subscription, entity id, change, at
        self._first_pending: float | None = None
        self._outboxes: dict[str, Outbox] = {}
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._dispatcher = Dispatcher("bc-webhooks", self._next_wait, lambda: self.run_once(force=False))

    # ---- subscriptions ---------------------------------------------------------------------------

    def create(
        self, tenant: str, environment: str, body: dict[str, Any], user_id: str, route: str = "v2.0"
    ) -> Subscription:
        """POST /subscriptions of an API route: validate, handshake, store."""
        values = self._check_body(body, required=True)
        company_id, set_name = self._parse_resource(tenant, environment, values["resource"], route)
        with self._lock:
            count = sum(
                1 for s in self.subscriptions.values() if (s.tenant, s.environment) == (tenant, environment)
            )
            cap = tenant_limit(self.config, tenant, "max_subscriptions")
            if count >= cap:
                raise bad_request(
                    "BadRequest",
                    f"The maximum number of subscriptions ({cap}) has been reached.",
                )
        self.handshake(values["notificationUrl"])
        now = self.clock.now()
        sub = Subscription(
            uuid.uuid4().hex,
            tenant,
            environment,
            values["notificationUrl"],
            values["resource"],
            company_id,
            set_name,
            values.get("clientState", ""),
            now + timedelta(seconds=self.config.subscription_ttl_seconds),
            format_datetime(now),
            format_datetime(now),
            user_id,
        )
        with self._lock:
            self.subscriptions[sub.id] = sub
            self._reindex()
        return sub

    def renew(self, sub: Subscription, body: dict[str, Any]) -> Subscription:
        """PATCH /subscriptions('id'): optional new values, handshake again, new expiry."""
        values = self._check_body(body, required=False)
        where = (sub.company_id, sub.set_name)
        if "resource" in values:
            where = self._parse_resource(sub.tenant, sub.environment, values["resource"])
        self.handshake(values.get("notificationUrl", sub.notification_url))
        now = self.clock.now()
        with self._lock:
            sub.notification_url = values.get("notificationUrl", sub.notification_url)
            sub.resource = values.get("resource", sub.resource)
            sub.client_state = values.get("clientState", sub.client_state)
            sub.company_id, sub.set_name = where
            sub.expiration = now + timedelta(seconds=self.config.subscription_ttl_seconds)
            sub.modified_at = format_datetime(now)
            sub.version += 1
            self._reindex()
        return sub

    def log_activity(self, sub: Subscription, status: str, message: str, details: str) -> None:
        """One webhook activity-log entry in the subscription's company, as BC's job writes it (page
        5461 "API Webhook Logs": id, time, status, message = the title, details = the long text)."""
        with self._lock:
            self.activity.append({
                "tenant": sub.tenant, "environment": sub.environment, "company_id": sub.company_id,
                "id": str(uuid.uuid4()), "time": format_datetime(self.clock.now()), "status": status,
                "message": message, "details": details,
            })

    def webhook_logs(self, tenant: str, environment: str, company_id: str) -> list[dict[str, Any]]:
        """`webhookLogs` of a company, newest first (the page sorts by Activity Date descending)."""
        with self._lock:
            rows = [
                {k: a[k] for k in ("id", "time", "status", "message", "details")}
                for a in self.activity
                if (a["tenant"], a["environment"], a["company_id"]) == (tenant, environment, company_id)
            ]
        return sorted(rows, key=lambda r: r["time"], reverse=True)

    def delete_logged(self, subscription_id: str, title: str, details: str) -> bool:
        """BC deleting a subscription by itself: the activity-log entry, then the deletion."""
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            return False
        self.log_activity(sub, "Success", title, f"{title[:-1]}. Subscription: {sub.id}. {details}".strip())
        return self.delete(subscription_id)

    def delete(self, subscription_id: str) -> bool:
        """Remove a subscription and its pending notifications; False if unknown."""
        with self._lock:
            sub = self.subscriptions.pop(subscription_id, None)
            if sub is None:
                return False
            for box in self._outboxes.values():
                box.items = [n for n in box.items if n.subscription_id != subscription_id]
            self._journal = [j for j in self._journal if j[0] is not sub]
            self._reindex()
            return True

    def find(self, tenant: str, environment: str, subscription_id: str) -> Subscription | None:
        """A subscription of this environment, or None."""
        sub = self.subscriptions.get(subscription_id)
        return sub if sub and (sub.tenant, sub.environment) == (tenant, environment) else None

    def in_environment(self, tenant: str, environment: str) -> list[Subscription]:
        """The subscriptions of an environment (all users)."""
        with self._lock:
            return [
                s for s in self.subscriptions.values() if (s.tenant, s.environment) == (tenant, environment)
            ]

    def handshake(self, url: str) -> None:
        """POST `url?validationToken=<token>`; anything but 200 with exactly the token → 400."""
        token = uuid.uuid4().hex
        target = f"{url}{'&' if '?' in url else '?'}validationToken={token}"
        entry: dict[str, Any] = {
            "kind": "handshake",
            "url": url,
            "attempt": 1,
            "body": None,
            "status": None,
            "at": format_datetime(self.clock.now()),
        }
        try:
            with requests.Session() as session:
                session.trust_env = False
                response = session.post(target, timeout=self.config.handshake_timeout, allow_redirects=False)
            entry["status"] = response.status_code
            ok = response.status_code == 200 and response.text == token
            reason = f"it answered {response.status_code} with {response.text[:100]!r}"
        except requests.RequestException as exc:
            ok, reason = False, f"no response ({type(exc).__name__})"
            entry["error"] = str(exc)
        with self._lock:
            self.deliveries.append(entry)
        if not ok:
            raise bad_request(
                "BadRequest",
                f"The subscription could not be validated: the notification URL {url} "
                f"did not return the validation token ({reason}).",
            )

    def _check_body(self, body: Any, *, required: bool) -> dict[str, str]:
        if not isinstance(body, dict):
            raise bad_request("BadRequest", "Invalid Request Body")
        allowed = {"notificationUrl", "resource", "clientState", "subscriptionId"}
        values = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            if name not in allowed or not isinstance(value, str):
                raise bad_request(
                    "BadRequest",
                    f"The property '{name}' does not exist on type "
                    "'Microsoft.NAV.subscription' or has an invalid value.",
                )
            values[name] = value
        values.pop("subscriptionId", None)
        for name in ("notificationUrl", "resource") if required else ():
            if not values.get(name):
                raise bad_request(
                    "BadRequest_RequiredParamNotProvided", f"Field '{name}' must not be blank or empty."
                )
        if "notificationUrl" in values and not values["notificationUrl"].startswith(("http://", "https://")):
            raise bad_request("BadRequest", "The notificationUrl must be an absolute http(s) URL.")
        if len(values.get("clientState", "")) > 2048:
            raise bad_request(
                "Application_StringExceededLength",
                f"The length of the string is "
                f"{len(values['clientState'])}, but it must be less than or equal to 2048 characters.",
            )
        return values

    def _parse_resource(
        self, tenant: str, environment: str, resource: str, route: str | None = None
    ) -> tuple[str, str]:
        """(company id, entity set) of a subscription resource; a custom API's resource must name the
        route the subscription is made on (bc-api.md §7.1)."""
        path = resource.split("?", 1)[0].rstrip("/")
        named = "v2.0"
        if "api/" in path:
            named, _, path = path.split("api/", 1)[1].partition("/companies(")
            path = "companies(" + path
        path = path.lstrip("/")
        if route is not None and named != route:
            raise bad_request(
                "BadRequest",
                f"The resource '{resource}' must be on the API route of the subscription (api/{route}/).",
            )
        head, _, set_name = path.partition("/")
        if not (head.startswith("companies(") and head.endswith(")")) or not set_name or "/" in set_name:
            raise bad_request(
                "BadRequest",
                f"The resource '{resource}' is not a valid subscription resource; "
                "use companies({id})/{entitySet}.",
            )
        company_id = head[len("companies(") : -1].strip("'").lower()
        env = self.store.find_environment(tenant, environment)
        if env is None or env.company(company_id) is None:
            raise bad_request("Internal_CompanyNotFound", f"The company '{company_id}' does not exist.")
        if set_name not in self.supported or COMPANY_SETS[set_name].route != named:
            raise bad_request("BadRequest", f"The entity set '{set_name}' does not support webhooks.")
        return company_id, set_name

    # ---- saved state (devtools/emulator/state.py keeps it on disk) -----------------------------
    def snapshot(self) -> dict[str, Any]:
        """Subscriptions, the journal waiting for its debounce and the outboxes with their pending
        notifications, as plain JSON data."""
        now = time.monotonic()
        with self._lock:
            return {
                "supported": sorted(self.supported),
                "subscriptions": [asdict(sub) | {"expiration": sub.expiration.isoformat()}
                                  for sub in self.subscriptions.values()],
                "journal": [[sub.id, entity_id, change, at] for sub, entity_id, change, at in self._journal],
                "outboxes": [
                    {"url": box.url, "attempt": box.attempt, "due_in": max(0.0, box.due - now),
                     "items": [asdict(note) for note in box.items]}
                    for box in self._outboxes.values() if box.items
                ],
            }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace subscriptions, journal and outboxes with `state` (from `snapshot`); pending
        notifications are held back at least one debounce, so the receiver can come up again first
        (`make run` starts its host after the emulator, then flushes)."""
        now = time.monotonic()
        with self._lock:
            self.supported = set(state["supported"])
            self.subscriptions = {
                saved["id"]: Subscription(
                    **saved | {"expiration": datetime.fromisoformat(saved["expiration"])})
                for saved in state["subscriptions"]
            }
            self._reindex()
            self._journal = [(self.subscriptions[sub_id], entity_id, change, at)
                             for sub_id, entity_id, change, at in state["journal"]
                             if sub_id in self.subscriptions]
            self._first_pending = now if self._journal else None  # the debounce starts again
            grace = self.config.webhook_debounce_seconds
            self._outboxes = {
                box["url"]: Outbox(box["url"], [Notification(**note) for note in box["items"]],
                                   int(box["attempt"]), now + max(float(box["due_in"]), grace))
                for box in state["outboxes"]
            }

    def fingerprint(self) -> tuple[int, ...]:
        """Cheap signs of what the dispatcher changes without a request (deliveries, expiries)."""
        return (len(self.deliveries), len(self.subscriptions), len(self._journal))

    def _reindex(self) -> None:
        index: dict[SubKey, list[Subscription]] = {}
        for sub in self.subscriptions.values():
            index.setdefault(sub.key, []).append(sub)
        self._index = index

    # ---- change journal --------------------------------------------------------------------------

    def record(self, company: Company, set_name: str, entity_id: str, change: str, at: str) -> None:
        """Store listener: journal a change for every subscription watching it."""
        subs = self._index.get((company.tenant, company.environment, company.id, set_name))
        if not subs:
            return
        with self._lock:
            for sub in subs:
                self._journal.append((sub, entity_id, change, at))
            if self._first_pending is None:
                self._first_pending = time.monotonic()
        self._dispatcher.wake()

    def _route(self) -> None:
        """Move journalled changes into the outboxes: consecutive `updated` of one entity merge, a
        pending `collection` absorbs later changes, and a subscription reaching the threshold
        collapses into one `collection` (linear in the number of changes)."""
        latest: dict[tuple[str, str | None], Notification] = {}
        collections: dict[str, Notification] = {}
        for box in self._outboxes.values():
            for note in box.items:
                latest[(note.subscription_id, note.entity_id)] = note
                if note.change_type == "collection":
                    collections[note.subscription_id] = note
        touched: set[str] = set()
        for sub, entity_id, change, at in self._journal:
            if sub.id not in self.subscriptions:
                continue
            collection = collections.get(sub.id)
            if collection is not None:
                collection.last_modified = at
                collection.has_delete = collection.has_delete or change == "deleted"
                continue
            previous = latest.get((sub.id, entity_id))
            if change == "updated" and previous is not None and previous.change_type == "updated":
                previous.last_modified = at
                continue
            note = Notification(sub.id, change, entity_id, at, at, change == "deleted")
            box = self._outboxes.setdefault(sub.notification_url, Outbox(sub.notification_url))
            box.items.append(note)
            latest[(sub.id, entity_id)] = note
            touched.add(sub.notification_url)
        self._journal = []
        self._first_pending = None
        for url in touched:
            self._collapse(self._outboxes[url], set(collections))

    def _collapse(self, box: Outbox, done: set[str]) -> None:
        counts = Counter(note.subscription_id for note in box.items)
        for sub_id, count in counts.items():
            if count < self.config.collection_threshold or sub_id in done:
                continue
            mine = [n for n in box.items if n.subscription_id == sub_id]
            collection = Notification(
                sub_id,
                "collection",
                None,
                max(n.last_modified for n in mine),
                format_datetime(min(parse_datetime(n.first_change) for n in mine)),
                any(n.has_delete for n in mine),
            )
            box.items = [n for n in box.items if n.subscription_id != sub_id] + [collection]

    def pending(self) -> list[dict[str, str]]:
        """Changes journalled but not yet routed (the debounce window), oldest first."""
        with self._lock:
            return [
                {
                    "subscriptionId": sub.id,
                    "entitySet": sub.set_name,
                    "id": entity_id,
                    "changeType": change,
                    "at": at,
                }
                for sub, entity_id, change, at in self._journal
            ]

    # ---- dispatcher ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher thread."""
        self._dispatcher.start()

    def stop(self) -> None:
        """Stop the dispatcher thread."""
        self._dispatcher.stop()

    def flush(self) -> None:
        """Route every pending change now (ignoring the debounce) and send what is due."""
        self.run_once(force=True)

    def _next_wait(self) -> float:
        with self._lock:
            now = time.monotonic()
            times = [box.due for box in self._outboxes.values() if box.items]
            if self._first_pending is not None:
                times.append(self._first_pending + self.config.webhook_debounce_seconds)
        return max(0.0, min([*times, now + 1.0]) - now)

    def run_once(self, *, force: bool) -> None:
        """One dispatcher pass: expire subscriptions, route due changes, deliver due outboxes."""
        with self._send_lock:
            with self._lock:
                self._expire()
                now = time.monotonic()
                debounce_over = self._first_pending is not None and (
                    now - self._first_pending >= self.config.webhook_debounce_seconds
                )
                if self._journal and (force or debounce_over):
                    self._route()
                batches = [
                    (box, list(box.items)) for box in self._outboxes.values() if box.items and box.due <= now
                ]
                payloads = [self._payload(items) for _, items in batches]
            for (box, items), payload in zip(batches, payloads, strict=True):
                status, error = self._post(box.url, payload)
                with self._lock:
                    self._settle(box, items, payload, status, error)

    def _expire(self) -> None:
        now = self.clock.now()
        for sub in [s for s in self.subscriptions.values() if s.expiration <= now]:
            self.delete_logged(sub.id, "Delete expired subscription.",
                               f"Expiration time: {format_datetime(sub.expiration)}. Table: {sub.set_name}.")

    def _payload(self, items: list[Notification]) -> dict[str, Any]:
        value = []
        for note in items:
            sub = self.subscriptions[note.subscription_id]
            if note.change_type == "collection":
                since = (
                    None
                    if note.has_delete
                    else format_datetime(parse_datetime(note.first_change) - timedelta(milliseconds=50))
                )
                resource = sub.resource_url(since=since)
            else:
                resource = sub.resource_url(note.entity_id)
            value.append(
                {
                    "subscriptionId": sub.id,
                    "clientState": sub.client_state,
                    "expirationDateTime": format_datetime(sub.expiration),
                    "resource": resource,
                    "changeType": note.change_type,
                    "lastModifiedDateTime": note.last_modified,
                }
            )
        return {"value": value}

    def _post(self, url: str, payload: dict[str, Any]) -> tuple[int | None, str | None]:
        request_id = str(uuid.uuid4())
        return post_json(url, payload, self.config.notification_timeout,
                         {"clientRequestId": request_id, "x-ms-correlation-id": request_id})

    def _log_failed(self, url: str, status: int | None, error: str | None) -> None:
        """`Sending notification failed.` in the company of every subscription of the URL."""
        code = status if status is not None else 0
        for sub in [s for s in self.subscriptions.values() if s.notification_url == url]:
            self.log_activity(
                sub, "Failed", "Sending notification failed.",
                f"Sending notification failed for {url}. Response code: {code}. "
                f"Error message: {error or ''}. Error details: .")

    def _settle(
        self,
        box: Outbox,
        items: list[Notification],
        payload: dict[str, Any],
        status: int | None,
        error: str | None,
    ) -> None:
        sent = {id(n) for n in items}
        self.deliveries.append(
            {
                "kind": "notification",
                "url": box.url,
                "status": status,
                "attempt": box.attempt + 1,
                "body": payload,
                "error": error,
                "at": format_datetime(self.clock.now()),
            }
        )
        if status is not None and 200 <= status < 300:
            box.items = [n for n in box.items if id(n) not in sent]
            box.attempt, box.due = 0, 0.0
        elif status is None or status in (408, 429) or status >= 500:
            box.attempt += 1
            self._log_failed(box.url, status, error)
            if box.attempt > len(self.config.retry_delays_seconds):
                for sub_id in {n.subscription_id for n in items}:
                    sub = self.subscriptions.get(sub_id)
                    self.delete_logged(
                        sub_id, "Delete subscription with too many failures.",
                        f"Table: {sub.set_name if sub else ''}. Attempt number: {box.attempt}.")
                box.attempt, box.due = 0, 0.0
            else:
                box.due = time.monotonic() + self.config.retry_delays_seconds[box.attempt - 1]
        else:
            self._log_failed(box.url, status, error)
            for sub in [s for s in self.subscriptions.values() if s.notification_url == box.url]:
                self.delete_logged(sub.id, "Delete invalid subscription.", "")
            box.items, box.attempt, box.due = [], 0, 0.0
        self._dispatcher.wake()
