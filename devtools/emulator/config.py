"""Configuration of the local BC + Entra ID emulator (dev tooling, never deployed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BC_RESOURCE = "https://api.businesscentral.dynamics.com"


@dataclass
class ClientApp:
    """An app registration: the connector's client id and secret, and the tenant it lives in."""

    client_id: str
    client_secret: str
    tenant: str  # tenant domain or GUID the app lives in
    # Registered redirect URIs; empty = any https URL or any http loopback URL (port ignored).
    redirect_uris: tuple[str, ...] = ()
    # Federated identity credentials: principal ids of managed identities (of this emulator's tenant,
    # issuer `{base}/{tenant GUID}/v2.0`, audience api://AzureADTokenExchange) the app trusts.
    federated_subjects: tuple[str, ...] = ()


# The managed identity of the local Function App (the emulator's `/msi/token`, App Service style).
MANAGED_IDENTITY_CLIENT_ID = "0f3a9c1e-2b4d-4e6f-8a1b-3c5d7e9f1a2b"
MANAGED_IDENTITY_PRINCIPAL_ID = "6b2e4d8a-1c3f-4a5b-9d7e-8f0a2c4e6b1d"
IDENTITY_HEADER = "emulator-identity-header"  # the `X-IDENTITY-HEADER` App Service hands its apps


def _default_tenants() -> dict[str, str]:
    return {"lmints.io": "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"}


def _default_clients() -> list[ClientApp]:
    return [ClientApp("5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60", "emulator-secret", "lmints.io",
                      federated_subjects=(MANAGED_IDENTITY_PRINCIPAL_ID,))]


@dataclass
class EmulatorConfig:
    """Every knob of the emulator; tests shrink the time-related ones."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    tenants: dict[str, str] = field(default_factory=_default_tenants)  # domain -> tenant GUID
    environments: tuple[str, ...] = ("production", "sandbox")
    clients: list[ClientApp] = field(default_factory=_default_clients)
    # Entra ID
    access_token_lifetime: int = 3600  # seconds (emulator clock)
    refresh_token_lifetime: int = 90 * 24 * 3600  # inactivity window of a refresh token
    auth_code_lifetime: int = 600
    signin_user: str = "admin@lmints.io"  # who the authorize endpoint signs in (auto-consent)
    # BC data and paging
    seed: str | None = "demo"  # seed name; None = empty companies only
    page_size: int = 20000  # BC server-driven page size
    # Webhooks
    webhook_debounce_seconds: float = 30.0
    collection_threshold: int = 1000
    retry_delays_seconds: tuple[float, ...] = (60, 60, 600, 6000, 60000)
    handshake_timeout: float = 5.0
    notification_timeout: float = 30.0
    subscription_ttl_seconds: int = 3 * 24 * 3600
    max_subscriptions: int = 200
    # Per tenant GUID: its own rate_limit / max_concurrent / max_queued / max_subscriptions
    # (`POST /_emulator/tenants`, tenants.py); a tenant without one has the values of this config
    tenant_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # External business events (business_events.py): retry delays of one notification, and how many
    # failed deliveries in a row switch a subscription off
    business_event_retry_seconds: tuple[float, ...] = (5, 30, 300)
    business_event_failures_to_disable: int = 5
    # Entity sets accepting subscriptions; None = BC's rule (every set whose source table is not
    # temporary, so also currencies, paymentTerms, accounts and salesShipmentLines)
    webhook_supported: tuple[str, ...] | None = None
    # Operational limits per principal (bc-api.md §8)
    rate_limit: int = 6000  # requests per sliding window
    rate_window_seconds: float = 300.0  # emulator clock
    max_concurrent: int = 5  # processing at once; the rest queue
    reject_over_concurrency: bool = False  # True: 429 at once beyond max_concurrent (no queue)
    max_queued: int = 95  # queued beyond this -> 429
    queue_timeout_seconds: float = 480.0  # real seconds in the queue before 503
    latency_seconds: float = 0.0  # BC response time of every request (time in the queue added)
    # Admin Center API: whether the app was granted AdminCenter.ReadWrite.All (else 403)
    admin_center_consented: bool = True
    # Read scale-out: a GET with `Data-Access-Intent: ReadOnly` reads a replica this far behind the
    # primary (emulator clock): entities written within the lag are not in it yet (bc-api.md §12.3)
    replica_lag_seconds: float = 0.0
    # Persistence: a JSON file the state is kept in across restarts (`state.py`); None = memory only
    state_file: str | None = None


def tenant_limit(config: EmulatorConfig, tenant_id: str | None, name: str) -> Any:
    """A limit for a principal or environment of `tenant_id`: the tenant's own
    (`config.tenant_limits`), else the emulator's."""
    own = config.tenant_limits.get((tenant_id or "").lower(), {})
    return own.get(name, getattr(config, name))
