"""The process-wide objects every trigger needs, built once from the settings on first use.

Settings are read lazily (not at import), so `func start`, the local host and tests can set the
environment before the first invocation. The `Runtime` owns every pool, cache and lock the core
shares across invocations and hands them to the objects it builds; tests build their own or replace
attributes. `reset_runtime()` closes and drops it (tests, settings change).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property, partial
from typing import TYPE_CHECKING

from connector.auth.token_store import forget_tokens
from connector.auth.tokens import TokenService
from connector.bc.budget import Budget, LocalBudgets, SharedBudget
from connector.bc.client import BCClient, bc_session
from connector.bc.companies import Companies
from connector.bc.errors import TokenUnavailable
from connector.bc.lookups import KeyLookups
from connector.bc.principals import Principals
from connector.bc.timestamps import utc_now
from connector.connection_table import LiveConnections, removal_done
from connector.events import EventPublisher
from connector.health.checks import budget_exhausted
from connector.health.events import HealthEvents
from connector.health.pause import PauseSwitch
from connector.keyvault import SecretResolver
from connector.ops.activity import ActivityRecorder
from connector.ops.status import gauge_report, status_readings
from connector.orders.variants import ItemVariants
from connector.settings import (
    CONTAINER_EVENT_PAYLOADS,
    ConnectionSettings,
    Settings,
    host_max_dequeue_count,
    host_queue_concurrency,
    load_settings,
)
from connector.storage import STORAGE_POOL_SIZE, Storage
from connector.table_batches import TableBatches
from connector.telemetry import Telemetry, configure_telemetry
from connector.webhooks.dedupe import DedupeLog
from connector.webhooks.directory import SubscriptionDirectory

if TYPE_CHECKING:
    from connector.auth.service import SignInService
    from connector.fanout.units import WorkQueue
    from connector.health.service import EnvironmentService
    from connector.items.pull import ItemPullService
    from connector.ops.service import StatusService
    from connector.orders.service import OrdersService
    from connector.webhooks.context import WebhookContext
    from connector.webhooks.service import WebhooksService

log = logging.getLogger(__name__)


class Runtime:
    """Settings, storage and the shared objects built on them: event publisher, token service, BC's
    budget and one BC client per connection, company directory, webhook subscription directory,
    dedupe log, item variant cache and the thread pools of the webhook path."""

    def __init__(self, settings: Settings):
        # as many storage (and BC) connections as queue invocations run at once, plus the background
        # work's and the webhook path's fetch pool
        at_once = max(STORAGE_POOL_SIZE, host_queue_concurrency() + 16)
        self.storage = Storage(settings.storage, pool_size=at_once)
        # Connections: the app settings' and the connection table's, live (connection_table.py).
        self.secrets = SecretResolver(
            ttl=settings.key_vault_cache_seconds, host=settings.key_vault_host,
            verify=settings.tls_ca_bundle or True, client_id=settings.storage.client_id)
        self.connections = LiveConnections(settings, self.storage, resolve=self.secrets.resolve,
                                           forget=self.secrets.forget, on_removed=self._connection_removed)
        settings = dataclasses.replace(settings, connections=self.connections)
        self.settings = settings
        self.telemetry: Telemetry = configure_telemetry(settings.telemetry)
        self.events = EventPublisher(
            self.storage,
            container=CONTAINER_EVENT_PAYLOADS,
            max_inline_bytes=settings.event_max_inline_bytes,
            concurrency=settings.event_publish_concurrency,
            telemetry=self.telemetry,
        )
        self.health = HealthEvents(self.storage, self.events)
        self.pauses = PauseSwitch(self.storage)
        self.activity = ActivityRecorder(self.storage)
        self.telemetry.recorder = self.activity
        self.tokens = TokenService(settings, self.storage, health=self.health, reread=self.connections.reread)
        self.companies = Companies(self.storage)
        self.subscription_directory = SubscriptionDirectory(self.storage, settings.token_encryption_keys)
        self.item_variants = ItemVariants()
        self.key_lookups = KeyLookups()  # batched key checks (sales orders by externalDocumentNumber)
        self.table_batches = TableBatches()  # claim rows of one company written together under load
        # Threads start on first use. Entity GETs of one notification batch: each connection's BC
        # budget caps what reaches BC. Receiver enqueues: the acknowledgement waits for them.
        self.fetch_pool = ThreadPoolExecutor(8, thread_name_prefix="bc-fetch")
        self.bc_session = bc_session(at_once)  # every connection's client: one pool per BC host
        self.enqueue_pool = ThreadPoolExecutor(8, thread_name_prefix="webhook-enqueue")
        self.dedupe_pool = ThreadPoolExecutor(16, thread_name_prefix="dedupe")
        self.dedupe = DedupeLog(self.storage, settings.dedupe_ttl_days, pool=self.dedupe_pool)
        self._clients: dict[str, tuple[ConnectionSettings, BCClient]] = {}
        self._lock = threading.Lock()
        self._removing: set[str] = set()  # removals of table connections under way here
        self.removal_pool = ThreadPoolExecutor(2, thread_name_prefix="connection-removal")
        self.telemetry.watch(self._gauges)

    def _gauges(self) -> dict[str, list[tuple[float, dict[str, str]]]]:
        """The observable gauges, read from storage."""
        now = utc_now()
        return status_readings(gauge_report(self.settings, self.storage, now), now)

    @cached_property
    def budget(self) -> Budget:
        """BC's budget per principal: shared by every instance through storage, unless turned off."""
        limits = self.settings.bc_limits
        return SharedBudget(self.storage, limits) if limits.shared else LocalBudgets(limits)

    # ---- the feature services, each built once from the collaborators it names -------------------
    @cached_property
    def item_pull(self) -> ItemPullService:
        """Schedule Pull Items (`connector/items`)."""
        from connector.items.pull import ItemPullService

        return ItemPullService(self.settings, self.storage, self.events, bc=self.bc,
                               company_id=self.company_id)

    @cached_property
    def sign_in(self) -> SignInService:
        """Sign-in of authorization-code connections (`connector/auth`)."""
        from connector.auth.service import SignInService

        return SignInService(self.settings, self.storage, self.tokens, self.companies, bc=self.bc)

    @cached_property
    def status(self) -> StatusService:
        """`GET /api/status` (`connector/ops`)."""
        from connector.ops.service import StatusService

        return StatusService(self.settings, self.storage, self.tokens, self.health, self.activity)

    @cached_property
    def orders(self) -> OrdersService:
        """Send Created Sales Order and the declared commands (`connector/orders`)."""
        from connector.orders.context import OrderContext
        from connector.orders.service import OrdersService

        return OrdersService(OrderContext(
            settings=self.settings, storage=self.storage, telemetry=self.telemetry,
            key_lookups=self.key_lookups, table_batches=self.table_batches,
            item_variants=self.item_variants, bc=self.bc, company_id=self.company_id))

    @cached_property
    def fanout(self) -> WorkQueue:
        """Timer work, one `bc-connection-work` unit per connection and task (`connector/fanout`)."""
        from connector.fanout.units import WorkQueue

        return WorkQueue(self.settings, self.storage)

    @cached_property
    def webhook_context(self) -> WebhookContext:
        """The change triggers' collaborators (the webhook and business-event receivers take it)."""
        from connector.webhooks.context import WebhookContext

        return WebhookContext(
            settings=self.settings, storage=self.storage, telemetry=self.telemetry, events=self.events,
            dedupe=self.dedupe, health=self.health, pauses=self.pauses, tokens=self.tokens,
            subscription_directory=self.subscription_directory, fetch_pool=self.fetch_pool,
            enqueue_pool=self.enqueue_pool, bc=self.bc, company_id=self.company_id)

    @cached_property
    def webhooks(self) -> WebhooksService:
        """Notifications, the sweep and the subscriptions (`connector/webhooks`)."""
        from connector.webhooks.service import WebhooksService

        return WebhooksService(self.webhook_context)

    @cached_property
    def environments(self) -> EnvironmentService:
        """BC's Admin Center operations log acted on (`connector/health`)."""
        from connector.health.service import EnvironmentService

        return EnvironmentService(self.webhook_context)

    @cached_property
    def max_dequeue_count(self) -> int:
        """Deliveries of a queue message before the host moves it to `-poison` (host.json)."""
        return host_max_dequeue_count()

    def bc(self, connection: str | None = None) -> BCClient:
        """The BC client of a connection (default: `default`); shared by the instance's threads, and
        built again when the connection's settings changed (a connection row edited)."""
        conn = self.settings.connection(connection)
        with self._lock:
            held = self._clients.get(conn.name)
            if held is not None and (held[0] is conn or held[0] == conn):
                return held[1]
            client = self._new_client(conn, self.tokens)
            self._clients[conn.name] = (conn, client)
            return client

    def _new_client(self, conn: ConnectionSettings, tokens: TokenService) -> BCClient:
        principals = Principals(
            [(p.name, partial(self._token, tokens, conn.name, p.name)) for p in conn.principals],
            self.settings.bc_limits.max_concurrency)
        return BCClient.from_limits(
            conn.api_base,
            principals,
            self.settings.bc_limits,
            self.budget,
            verify=self.settings.tls_ca_bundle or True,
            connection=conn.name,
            telemetry=self.telemetry,
            on_throttled_out=partial(budget_exhausted, self.health, conn.name),
            session=self.bc_session,
        )

    def _token(self, tokens: TokenService, connection: str, principal: str, force: bool) -> str:
        """A principal's bearer token for BC, unless its connection is paused (`health/pause.py`)."""
        self.pauses.check(connection)
        return tokens.access_token(principal, force_refresh=force)

    # ---- a table connection removed: its BC subscriptions go (BC would keep calling), then its row ---
    def _connection_removed(self, name: str, conn: ConnectionSettings | None, etag: str) -> None:
        with self._lock:
            if name in self._removing:
                return
            self._removing.add(name)
            self._clients.pop(name, None)
        self.removal_pool.submit(self._retire, name, conn, etag)

    def _retire(self, name: str, conn: ConnectionSettings | None, etag: str) -> None:
        try:
            try:
                deleted = self._delete_subscriptions_of(conn) if conn is not None else []
            except TokenUnavailable as exc:  # nobody can sign in for it any more: BC ends them in 3 days
                log.warning("connection %s removed; its BC subscriptions could not be deleted (%s): BC "
                            "drops them when they expire, and their notifications are acknowledged unread "
                            "until then", name, exc)
                deleted = []
            if conn is not None:  # a removed customer's refresh token does not linger
                forget_tokens(self.storage, [p.name for p in conn.principals])
            if etag:
                removal_done(self.storage, name, etag)
            log.info("connection %s removed: BC subscriptions deleted: %s; its tokens forgotten", name,
                     deleted or "none")
        except Exception as exc:  # noqa: BLE001 - tried again at the next refresh while its row says so
            log.warning("connection %s: removal not finished (%s); tried again later", name, exc)
        finally:
            with self._lock:
                self._removing.discard(name)

    def _delete_subscriptions_of(self, conn: ConnectionSettings) -> list[str]:
        """Delete a removed connection's subscriptions with its last settings (no longer looked up)."""
        from connector.webhooks.subscriptions import delete_subscriptions

        settings = dataclasses.replace(self.settings, connections={conn.name: conn})
        tokens = TokenService(settings, self.storage, health=self.health)
        client = self._new_client(conn, tokens)

        def its_client(_name: str | None = None) -> BCClient:
            return client

        ctx = dataclasses.replace(self.webhook_context, settings=settings, tokens=tokens, bc=its_client)
        return delete_subscriptions(ctx, conn.name)

    def company_id(self, connection: str | None = None, wanted: str | None = None) -> str:
        """The company to use (id), from a message's `company`, BC_COMPANY, sign-in, or the first."""
        conn = self.settings.connection(connection)
        return self.companies.resolve_id(self.bc(conn.name), conn.name, conn.company, wanted)

    def close(self) -> None:
        """Give shared resources back when this runtime is dropped: the budget's slots, and the pools'
        threads once idle (work already submitted still finishes)."""
        if "budget" in self.__dict__:
            self.budget.close()
        self.connections.close()
        for pool in (self.fetch_pool, self.enqueue_pool, self.dedupe_pool, self.removal_pool):
            pool.shutdown(wait=False)
        self.events.close()
        self.activity.close()
        self.bc_session.close()


# The one process-wide root: the Functions host calls each trigger with no object of ours, so the
# blueprints reach the runtime through get_runtime().
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            started = time.monotonic()
            _runtime = Runtime(load_settings())
            freeze_long_lived()
            log.info("runtime ready in %.2f s (%d connections in app settings)", time.monotonic() - started,
                     len(_runtime.settings.connection_names))
        return _runtime


def freeze_long_lived() -> None:
    """Once per process, move every object there is now (modules, classes, the runtime) out of the
    collector's generations: they live as long as the worker, and a full collection walking them
    paused a 1,000-element webhook ack by ~40 ms (`gc.freeze`; later objects are collected as ever)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Close and forget the current runtime (or install a given one)."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, runtime
    if old is not None and old is not runtime:
        old.close()
