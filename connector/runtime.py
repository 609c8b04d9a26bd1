"""The process-wide objects every trigger needs, built once from the settings on first use.

Settings are read lazily (not at import), so `func start`, the local host and tests can set the
environment before the first invocation. `reset_runtime()` drops everything (tests, settings change).
"""
from __future__ import annotations

import threading
from functools import cached_property

from connector.auth.tokens import TokenService
from connector.bc.budget import Budget, LocalBudgets, SharedBudget
from connector.bc.client import BCClient
from connector.bc.companies import resolve_company_id
from connector.bc.timestamps import utc_now
from connector.events import EventPublisher
from connector.ops.status import read_status, status_readings
from connector.orders.variants import ItemVariants
from connector.settings import CONTAINER_EVENT_PAYLOADS, Settings, load_settings
from connector.storage import Storage
from connector.telemetry import Telemetry, configure_telemetry
from connector.webhooks.directory import SubscriptionDirectory


class Runtime:
    """Settings, storage, event publisher, token service and one BC client per connection."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.storage = Storage(settings.storage)
        self._clients: dict[str, BCClient] = {}
        self._lock = threading.Lock()
        self.telemetry: Telemetry = configure_telemetry(settings.telemetry)
        self.telemetry.watch(self._gauges)

    def _gauges(self) -> dict[str, list[tuple[float, dict[str, str]]]]:
        """The observable gauges, read from storage."""
        now = utc_now()
        return status_readings(read_status(self.settings, self.storage, now), now)

    @cached_property
    def events(self) -> EventPublisher:
        return EventPublisher(
            self.storage,
            container=CONTAINER_EVENT_PAYLOADS,
            max_inline_bytes=self.settings.event_max_inline_bytes,
            concurrency=self.settings.event_publish_concurrency,
        )

    @cached_property
    def budget(self) -> Budget:
        """BC's budget per principal: shared by every instance through storage, unless turned off."""
        limits = self.settings.bc_limits
        return SharedBudget(self.storage, limits) if limits.shared else LocalBudgets(limits)

    @cached_property
    def tokens(self) -> TokenService:
        return TokenService(self.settings, self.storage)

    @cached_property
    def subscription_directory(self) -> SubscriptionDirectory:
        """The webhook receiver's view of the subscriptions this app made."""
        return SubscriptionDirectory(self.storage, self.settings.token_encryption_keys)

    @cached_property
    def item_variants(self) -> ItemVariants:
        """Variant ids for order lines, cached across orders."""
        return ItemVariants()

    def bc(self, connection: str | None = None) -> BCClient:
        """The BC client of a connection (default: `default`); shared by the instance's threads."""
        conn = self.settings.connection(connection)
        with self._lock:
            client = self._clients.get(conn.name)
            if client is None:
                client = BCClient.from_limits(
                    conn.api_base,
                    lambda force, name=conn.name: self.tokens.access_token(name, force_refresh=force),
                    self.settings.bc_limits,
                    self.budget,
                    verify=self.settings.tls_ca_bundle or True,
                    connection=conn.name,
                )
                self._clients[conn.name] = client
            return client

    def close(self) -> None:
        """Give shared resources back (the budget's slots) when this runtime is dropped."""
        if "budget" in self.__dict__:
            self.budget.close()

    def company_id(self, connection: str | None = None, wanted: str | None = None) -> str:
        """The company to use (id), from a message's `company`, BC_COMPANY, sign-in, or the first."""
        conn = self.settings.connection(connection)
        return resolve_company_id(self.bc(conn.name), self.storage, conn.name, conn.company, wanted)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Forget the current runtime (or install a given one)."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, runtime
    if old is not None and old is not runtime:
        old.close()
