"""What the change triggers need from the rest of the connector, named: the runtime builds one
`WebhookContext` and hands it to the `WebhooksService` (connector/webhooks/service.py); the
business-event receiver and the environment watch take the same one."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from connector.auth.tokens import TokenService
from connector.bc.client import BCClient
from connector.events import EventPublisher
from connector.health.events import HealthEvents
from connector.health.pause import PauseSwitch
from connector.settings import Settings
from connector.storage import Storage
from connector.telemetry import Telemetry
from connector.webhooks.dedupe import DedupeLog
from connector.webhooks.directory import SubscriptionDirectory


@dataclass(frozen=True)
class WebhookContext:
    """The collaborators of receiving notifications, announcing changes, the sweep and the
    subscriptions: settings, storage, telemetry, the event publisher, the dedupe log, health events
    and pauses, the token service, the subscription directory, the fetch and enqueue thread pools,
    a connection's BC client (`bc(connection)`) and company (`company_id(connection)`)."""

    settings: Settings
    storage: Storage
    telemetry: Telemetry
    events: EventPublisher
    dedupe: DedupeLog
    health: HealthEvents
    pauses: PauseSwitch
    tokens: TokenService
    subscription_directory: SubscriptionDirectory
    fetch_pool: ThreadPoolExecutor
    enqueue_pool: ThreadPoolExecutor
    bc: Callable[[str], BCClient]
    company_id: Callable[[str], str]
