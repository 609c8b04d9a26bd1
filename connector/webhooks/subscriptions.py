"""Webhook subscriptions that never silently die: create, renew, recreate and delete them in BC.

One row per connection and watched resource in `bcsubscriptions` (PK = connection, RK =
`<companyId>:<entitySet>`). Each run lists BC's subscriptions, then per trigger creates a missing
one, recreates one BC dropped or let expire, renews one with less than
SUBSCRIPTION_RENEW_BEFORE_HOURS left (judged by BC's clock, from its `Date` header, since BC expires
them by its own), and deletes strays of this connection that no row owns. Resources BC cannot watch
(`webhookSupportedResources`) are marked `unsupported`; the sweep covers them.

Each connection's notificationUrl names it (`.../api/webhooks/bc?connection=<name>`; the receiver
ignores the query). BC lists every subscription of the environment with its notificationUrl, so
two connections on the same environment and company tell their own subscriptions (and strays)
from each other's.

clientState: never stored. A row keeps a random nonce; the clientState is
HMAC-SHA256(TOKEN_ENCRYPTION_KEY, nonce), so reading the table alone is not enough to forge a
notification, and without TOKEN_ENCRYPTION_KEY no subscription can be made or verified
(`MissingClientStateKey`). Every configured key is accepted. Key rotation: add the new key first
(`new,old`); the row records which key its clientState came from (`client_state_key`, a non-secret
key id), and the next run renews every subscription signed with a key that is no longer first, so
the old key can be removed once that run has succeeded.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from azure.data.tables import UpdateMode

from connector.bc.client import BCClient
from connector.bc.errors import BCError, BCNotFound
from connector.bc.timestamps import iso, parse_iso, utc_now
from connector.connections import for_each_connection, results_or_raise
from connector.leases import Lease
from connector.runtime import Runtime
from connector.settings import TABLE_SUBSCRIPTIONS, Settings
from connector.storage import Storage, read_entity
from connector.webhooks.sweep import start_trigger
from connector.webhooks.triggers import TRIGGERS, CreatedTrigger

log = logging.getLogger(__name__)

LEASE_SECONDS = 300.0
# A receiver reloads the subscription table on an unknown id at most this often, so a flood of
# forged ids cannot turn into table scans. A new subscription's row is saved right after BC
# accepted it, and BC notifies at the earliest ~30 s after a change, so a reload this recent has it.
RELOAD_INTERVAL_SECONDS = 5.0
_RESOURCE_RE = re.compile(r"companies\(\s*'?([0-9a-fA-F-]{36})'?\s*\)/([A-Za-z]+)\s*$")


class SubscriptionRunBusy(RuntimeError):
    """Another runner is reconciling this connection's subscriptions right now."""


class MissingClientStateKey(RuntimeError):
    """TOKEN_ENCRYPTION_KEY is not set, so no clientState can be derived (nor a notification checked)."""


# ---- clientState --------------------------------------------------------------------------------

def client_state(key: str, nonce: str) -> str:
    """The clientState of a subscription: HMAC-SHA256(key, nonce), urlsafe base64 (43 chars)."""
    digest = hmac.new(key.encode(), b"bc-webhook-client-state\x1f" + nonce.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def key_id(key: str) -> str:
    """A short, non-secret name of a key: which key a row's clientState was derived from."""
    return hmac.new(key.encode(), b"bc-webhook-key-id", hashlib.sha256).hexdigest()[:16]


def signing_key(keys: tuple[str, ...]) -> str:
    """The key new clientStates are derived from: the first of TOKEN_ENCRYPTION_KEY."""
    if not keys:
        raise MissingClientStateKey("TOKEN_ENCRYPTION_KEY is not set: webhook clientStates are derived "
                                    "from it, so no subscription can be created, renewed or verified")
    return keys[0]


def notification_url(settings: Settings, connection: str) -> str:
    """The notificationUrl of a connection's subscriptions: the receiver, naming the connection."""
    return f"{settings.notification_url}?{urlencode({'connection': connection})}"


@dataclass(frozen=True)
class KnownSubscription:
    """What the receiver needs to accept a notification: where it belongs and its clientStates."""

    subscription_id: str
    connection: str
    company_id: str
    entity_set: str
    client_states: tuple[str, ...] = field(repr=False)

    def accepts(self, given: Any) -> bool:
        """Constant-time check of a notification's clientState against every accepted value."""
        if not isinstance(given, str):
            return False
        candidate = given.encode()
        return any(hmac.compare_digest(candidate, s.encode()) for s in self.client_states)


class SubscriptionDirectory:
    """Subscription id → `KnownSubscription`, cached in process and reloaded from the table on a
    miss, at most once per `reload_interval` (the table is small: at most 200 subscriptions per BC
    environment). `reloads` counts the table reads."""

    def __init__(self, storage: Storage, keys: tuple[str, ...], *,
                 reload_interval: float = RELOAD_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._storage = storage
        self._keys = keys
        self._known: dict[str, KnownSubscription] = {}
        self._lock = threading.Lock()
        self._reload_interval = reload_interval
        self._clock = clock
        self._loaded_at = -math.inf
        self.reloads = 0

    def known(self, row: dict[str, Any]) -> KnownSubscription | None:
        if not row.get("subscription_id") or not row.get("client_state_nonce"):
            return None
        return KnownSubscription(
            row["subscription_id"], row["PartitionKey"], row["company_id"], row["entity_set"],
            tuple(client_state(k, row["client_state_nonce"]) for k in self._keys))

    def remember(self, row: dict[str, Any]) -> None:
        sub = self.known(row)
        if sub is not None:
            with self._lock:
                self._known[sub.subscription_id] = sub

    def forget(self, subscription_id: str) -> None:
        with self._lock:
            self._known.pop(subscription_id, None)

    def find(self, ids: Iterable[str]) -> dict[str, KnownSubscription]:
        """The known subscriptions among `ids`; when some are missing, one table read unless the
        last one is more recent than the reload interval (concurrent callers share it). Raises the
        storage error at once when the table cannot be read (no retries: the receiver answers 503
        and BC retries)."""
        wanted = set(ids)
        with self._lock:
            missing = wanted - self._known.keys()
            if missing and self._clock() - self._loaded_at >= self._reload_interval:
                rows = self._storage.table(TABLE_SUBSCRIPTIONS, retry_total=0).list_entities(retry_total=0)
                self._known = {s.subscription_id: s for s in map(self.known, rows) if s is not None}
                self._loaded_at = self._clock()
                self.reloads += 1
            return {i: self._known[i] for i in wanted if i in self._known}


_directories: weakref.WeakKeyDictionary[Runtime, SubscriptionDirectory] = weakref.WeakKeyDictionary()
_directories_lock = threading.Lock()


def directory(runtime: Runtime) -> SubscriptionDirectory:
    """The process's subscription directory for this runtime."""
    with _directories_lock:
        found = _directories.get(runtime)
        if found is None:
            found = SubscriptionDirectory(runtime.storage, runtime.settings.token_encryption_keys)
            _directories[runtime] = found
        return found


# ---- decisions ----------------------------------------------------------------------------------

class Action(StrEnum):
    KEEP = "unchanged"
    CREATE = "created"
    RENEW = "renewed"
    RECREATE = "recreated"
    UNSUPPORTED = "unsupported"


def plan_subscription(row: dict[str, Any] | None, remote: dict[str, Any] | None, supported: bool | None,
                      now: datetime, renew_before: timedelta, url: str, signing_key_id: str) -> Action:
    """What to do for one trigger, given our row, BC's subscription with that id (None = BC has
    none), whether BC supports the resource (None = could not tell), BC's current time, our
    notificationUrl and the id of the key clientStates are derived from now."""
    if supported is False:
        return Action.UNSUPPORTED
    if row is None or not row.get("subscription_id"):
        return Action.CREATE
    if remote is None:
        return Action.RECREATE
    expires = parse_iso(remote["expirationDateTime"])
    if expires <= now:
        return Action.RECREATE
    if (expires - now < renew_before or remote.get("notificationUrl") != url
            or row.get("client_state_key") != signing_key_id):
        return Action.RENEW
    return Action.KEEP


def watched_resource(resource: str) -> tuple[str, str] | None:
    """(company id, entity set) of a subscription resource, absolute or relative; None if it is not
    a company-scoped collection."""
    path = unquote(urlsplit(resource).path if "://" in resource else resource.split("?", 1)[0])
    match = _RESOURCE_RE.search(path.rstrip("/"))
    return (match.group(1).lower(), match.group(2)) if match else None


def stray_subscriptions(remote: Iterable[dict[str, Any]], owned: set[str], company_id: str,
                        url: str) -> list[dict[str, Any]]:
    """BC subscriptions that notify this connection (`url` names it) about a watched resource of
    this company but that no row owns (a create whose answer was lost, a row deleted by hand): their
    clientState is unknown, so every notification they send would be refused; they are deleted.
    Another connection's subscriptions carry another URL and are left alone."""
    sets = {t.entity_set for t in TRIGGERS}
    strays = []
    for sub in remote:
        where = watched_resource(str(sub.get("resource", "")))
        if (sub.get("notificationUrl") == url and sub.get("subscriptionId") not in owned
                and where is not None and where[0] == company_id.lower() and where[1] in sets):
            strays.append(sub)
    return strays


def server_now(date_header: str | None) -> datetime:
    """BC's current time from its `Date` header, never earlier than ours (renew early, not late)."""
    local = utc_now()
    if not date_header:
        return local
    try:
        remote = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return local
    return max(local, remote) if remote.tzinfo else local


# ---- BC and storage edges ------------------------------------------------------------------------

def resource_path(company_id: str, entity_set: str) -> str:
    return f"/api/v2.0/companies({company_id})/{entity_set}"


def supported_entity_sets(bc: BCClient, company_id: str) -> set[str] | None:
    """The v2.0 entity sets BC can watch in this company; None when BC cannot say."""
    url = (f"{bc.environment_root}/api/microsoft/runtime/beta/companies({company_id})"
           "/webhookSupportedResources")
    try:
        rows = list(bc.iter_entities(url, {"$filter": "resource eq 'v2.0*'"}))
    except BCError as exc:
        if exc.retryable:
            raise
        log.warning("subscriptions: webhookSupportedResources unavailable (%s); trying every resource", exc)
        return None
    return {str(r.get("resource", "")).split("/", 1)[-1] for r in rows}


def list_remote(bc: BCClient) -> tuple[datetime, dict[str, dict[str, Any]]]:
    """BC's time and its subscriptions of this environment by id."""
    pages = bc.pages("subscriptions")
    first = next(pages)
    subs = [*first.entities, *(s for page in pages for s in page.entities)]
    return server_now(first.headers.get("Date")), {s["subscriptionId"]: s for s in subs}


@dataclass
class ReconcileSummary:
    """What one run did, by entity set."""

    connection: str
    company_id: str
    done: dict[Action, list[str]] = field(default_factory=lambda: {a: [] for a in Action})
    failed: list[dict[str, str]] = field(default_factory=list)
    strays_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.connection, "companyId": self.company_id,
                **{a.value: names for a, names in self.done.items()},
                "failed": self.failed, "straysDeleted": self.strays_deleted}


class SubscriptionRun:
    """One reconcile of one connection (holds the BC client, table and settings it needs)."""

    def __init__(self, runtime: Runtime, connection: str, company_id: str):
        self.runtime = runtime
        self.connection = connection
        self.company_id = company_id
        self.bc = runtime.bc(connection)
        self.table = runtime.storage.table(TABLE_SUBSCRIPTIONS)
        self.url = notification_url(runtime.settings, connection)
        self.key = signing_key(runtime.settings.token_encryption_keys)
        self.key_id = key_id(self.key)
        self.directory = directory(runtime)

    def row_key(self, trigger: CreatedTrigger) -> str:
        return f"{self.company_id}:{trigger.entity_set}"

    def load_row(self, trigger: CreatedTrigger) -> dict[str, Any] | None:
        found = read_entity(self.table, self.connection, self.row_key(trigger))
        return found[0] if found else None

    def save(self, trigger: CreatedTrigger, status: str, *, sub: dict[str, Any] | None = None,
             nonce: str = "", key: str = "", error: str = "") -> dict[str, Any]:
        """Write the row (`key`: the id of the key the clientState was derived from)."""
        sub = sub or {}
        row = {
            "PartitionKey": self.connection, "RowKey": self.row_key(trigger), "company_id": self.company_id,
            "entity_set": trigger.entity_set, "resource": resource_path(self.company_id, trigger.entity_set),
            "subscription_id": sub.get("subscriptionId", ""), "etag": sub.get("@odata.etag", ""),
            "expires_at": sub.get("expirationDateTime", ""), "status": status, "last_error": error,
            "client_state_nonce": nonce, "client_state_key": key,
            "notification_url": sub.get("notificationUrl", "") if sub else "",
            "updated_at": iso(utc_now()),
        }
        self.table.upsert_entity(row, mode=UpdateMode.REPLACE)
        self.directory.remember(row)
        return row

    def create(self, trigger: CreatedTrigger) -> dict[str, Any]:
        nonce = secrets.token_urlsafe(32)
        body = {"notificationUrl": self.url, "resource": resource_path(self.company_id, trigger.entity_set),
                "clientState": client_state(self.key, nonce)}
        sub = self.bc.post("subscriptions", body)
        log.info("subscriptions %s: created %s for %s (expires %s)", self.connection, sub["subscriptionId"],
                 trigger.entity_set, sub.get("expirationDateTime"))
        return self.save(trigger, "active", sub=sub, nonce=nonce, key=self.key_id)

    def renew(self, trigger: CreatedTrigger, row: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
        body = {"notificationUrl": self.url, "clientState": client_state(self.key, row["client_state_nonce"])}
        sub = self.bc.patch(f"subscriptions('{remote['subscriptionId']}')", body, etag=remote["@odata.etag"])
        log.info("subscriptions %s: renewed %s for %s (expires %s)", self.connection, sub["subscriptionId"],
                 trigger.entity_set, sub.get("expirationDateTime"))
        return self.save(trigger, "active", sub=sub, nonce=row["client_state_nonce"], key=self.key_id)

    def delete_remote(self, sub: dict[str, Any]) -> None:
        try:
            self.bc.delete(f"subscriptions('{sub['subscriptionId']}')", sub.get("@odata.etag") or "*")
        except BCNotFound:
            pass
        self.directory.forget(sub["subscriptionId"])

    def apply(self, trigger: CreatedTrigger, action: Action, row: dict[str, Any] | None,
              remote: dict[str, Any] | None) -> tuple[Action, dict[str, Any]]:
        """Carry out `action`; a renewal of a subscription BC dropped meanwhile becomes a recreate."""
        if action is Action.UNSUPPORTED:
            return action, self.save(trigger, "unsupported")
        if action is Action.KEEP:
            assert row is not None and remote is not None
            return action, self.save(trigger, "active", sub=remote, nonce=row["client_state_nonce"],
                                     key=row.get("client_state_key", ""))
        if action is Action.RENEW:
            assert row is not None and remote is not None
            try:
                return action, self.renew(trigger, row, remote)
            except BCNotFound:
                action = Action.RECREATE
        if action is Action.RECREATE and remote is not None:
            self.delete_remote(remote)  # expired but still listed: make room for the new one
        return action, self.create(trigger)


def reconcile(runtime: Runtime, connection: str | None = None) -> ReconcileSummary:
    """Make BC's subscriptions for this connection's company match what the triggers need.
    Raises MissingClientStateKey before touching BC when TOKEN_ENCRYPTION_KEY is not set, and
    SubscriptionRunBusy when another runner holds the lease or takes it over mid-run (it is renewed
    before each trigger, after each baseline page and before each stray deletion)."""
    conn = runtime.settings.connection(connection)
    signing_key(runtime.settings.token_encryption_keys)
    company_id = runtime.company_id(conn.name)
    lease = Lease(runtime.storage, f"subscriptions:{conn.name}", ttl_seconds=LEASE_SECONDS)
    with lease as acquired:
        if not acquired:
            raise SubscriptionRunBusy(f"connection {conn.name!r}: a subscription run is already in progress")

        def keep_lease() -> None:
            if not lease.renew():
                raise SubscriptionRunBusy(f"connection {conn.name!r}: the subscription run lost its lease "
                                          "to another runner; stopped")

        run = SubscriptionRun(runtime, conn.name, company_id)
        now, remote = list_remote(run.bc)
        supported = supported_entity_sets(run.bc, company_id)
        renew_before = timedelta(hours=runtime.settings.subscription_renew_before_hours)
        summary = ReconcileSummary(conn.name, company_id)
        owned: set[str] = set()
        for trigger in TRIGGERS:
            keep_lease()
            start_trigger(runtime, conn.name, company_id, trigger, keep_lease)
            row = run.load_row(trigger)
            current = remote.get(row["subscription_id"]) if row and row.get("subscription_id") else None
            can_watch = None if supported is None else trigger.entity_set in supported
            action = plan_subscription(row, current, can_watch, now, renew_before, run.url, run.key_id)
            try:
                done, row = run.apply(trigger, action, row, current)
            except BCError as exc:
                log.warning("subscriptions %s: %s of %s failed: %s", conn.name, action.name.lower(),
                            trigger.entity_set, exc)
                summary.failed.append({"entitySet": trigger.entity_set, "error": str(exc)})
                if row is not None:
                    owned.add(row.get("subscription_id", ""))
                run.save(trigger, "failed", sub=current, nonce=(row or {}).get("client_state_nonce", ""),
                         key=(row or {}).get("client_state_key", ""), error=str(exc))
                continue
            summary.done[done].append(trigger.entity_set)
            owned.add(row["subscription_id"])
        for stray in stray_subscriptions(remote.values(), owned, company_id, run.url):
            keep_lease()
            try:
                run.delete_remote(stray)
            except BCError as exc:  # cleanup only: the next run tries again
                log.warning("subscriptions %s: stray %s not deleted: %s", conn.name,
                            stray["subscriptionId"], exc)
                continue
            summary.strays_deleted += 1
        log.info("subscriptions %s: %s", conn.name, summary.as_dict())
        return summary


def _reconcile_unless_busy(runtime: Runtime, connection: str) -> ReconcileSummary | None:
    try:
        return reconcile(runtime, connection)
    except SubscriptionRunBusy as exc:
        log.warning("subscriptions %s: skipped: %s", connection, exc)
        return None


def reconcile_all(runtime: Runtime) -> list[ReconcileSummary]:
    """Reconcile every connection; a connection that is not signed in or busy is skipped (logged).
    Raises the first other error after trying every connection."""
    outcomes = for_each_connection(runtime.settings, partial(_reconcile_unless_busy, runtime),
                                   task="subscriptions")
    return [summary for summary in results_or_raise(outcomes) if summary is not None]


def delete_subscriptions(runtime: Runtime, connection: str | None = None) -> list[str]:
    """Delete this connection's subscriptions in BC and their rows; the entity sets deleted."""
    conn = runtime.settings.connection(connection)
    table = runtime.storage.table(TABLE_SUBSCRIPTIONS)
    deleted = []
    with Lease(runtime.storage, f"subscriptions:{conn.name}", ttl_seconds=LEASE_SECONDS) as acquired:
        if not acquired:
            raise SubscriptionRunBusy(f"connection {conn.name!r}: a subscription run is already in progress")
        bc = runtime.bc(conn.name)
        for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": conn.name}):
            if row.get("subscription_id"):
                try:
                    bc.delete(f"subscriptions('{row['subscription_id']}')", "*")
                except BCNotFound:
                    pass
                directory(runtime).forget(row["subscription_id"])
                deleted.append(row["entity_set"])
            table.delete_entity(row["PartitionKey"], row["RowKey"])
    log.info("subscriptions %s: deleted %s", conn.name, deleted)
    return deleted
