"""Which subscriptions this app made, for the webhook receiver: subscription id → where it belongs and
the clientStates it accepts, cached in process and reloaded from `bcsubscriptions` on a miss."""
from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from connector.settings import TABLE_SUBSCRIPTIONS
from connector.storage import Storage
from connector.webhooks.client_state import accepted_states

# A receiver reloads the subscription table on an unknown id at most this often, so a flood of
# forged ids cannot turn into table scans. A new subscription's row is saved right after BC
# accepted it, and BC notifies at the earliest ~30 s after a change, so a reload this recent has it.
RELOAD_INTERVAL_SECONDS = 5.0


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
        # a lone surrogate (JSON allows `\ud800`) cannot be UTF-8 encoded: it matches nothing
        candidate = given.encode("utf-8", "surrogatepass")
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
            accepted_states(self._keys, row["client_state_nonce"], row.get("client_state_key", "")))

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
