"""What the emulator's side apps (`BCAdmin` at `/_emulator/bc/`, `AdminCenter`) need of BC: the state
and the writes `BCApi` owns. They take a `BCBackend` rather than `BCApi`, so neither imports the
API that builds them (no import cycle: `bc_api` → `bc_admin`/`admin_center` → `bc_backend`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from devtools.emulator.bc_documents import DocumentRules
    from devtools.emulator.business_events import BusinessEventEngine
    from devtools.emulator.clock import Clock
    from devtools.emulator.config import EmulatorConfig
    from devtools.emulator.store import Company, Row, Store
    from devtools.emulator.webhooks import WebhookEngine


class BCBackend(Protocol):
    """One BC service's state (store, webhooks, business events, document rules, clock, config) and
    its validated writes, as `BCApi` provides them."""

    config: EmulatorConfig
    clock: Clock
    validate_token: Callable[[str], dict]
    store: Store
    business_events: BusinessEventEngine
    documents: DocumentRules
    webhooks: WebhookEngine

    def flush_webhooks(self) -> None: ...

    def create(self, company: Company, set_name: str, body: dict[str, Any],
               parent: Row | None = None) -> Row: ...

    def update(self, company: Company, set_name: str, row: Row, body: dict[str, Any],
               parent: Row | None = None) -> None: ...

    def delete(self, company: Company, set_name: str, row: Row) -> None: ...
