"""Every setting of the connector, typed, with its default and meaning, read once from the environment.

This is the only module that reads `os.environ`. `SETTINGS` and the resource names below are declared
once here: `make settings` (devtools/settings_files.py) generates the README settings table,
`local.settings.example.json` and `infra/connector.json` (what Bicep loads) from them, and a test fails
when any of those is stale. `load_settings()` turns the environment into frozen, typed objects.

Connections: the `default` connection comes from the plain `BC_*` settings. More are declared with
`BC_CONNECTIONS=default,emea` and configured with the connection name (upper-case) and a double
underscore as prefix, e.g. `EMEA__BC_TENANT`, `EMEA__PULL_ITEM_VARIANTS`. A prefixed value wins; an
unset one falls back to the plain setting (so options and the tenant can be shared).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Queue, table and blob container names are part of the public contract (see CONTRACT/README).
QUEUE_SALES_ORDERS = "sales-orders"
QUEUE_SALES_ORDERS_POISON = "sales-orders-poison"
QUEUE_SALES_ORDER_RESULTS = "sales-order-results"
QUEUE_ITEMS = "bc-items"
QUEUE_SALES_SHIPMENTS = "bc-sales-shipments"
QUEUE_SALES_INVOICES = "bc-sales-invoices"
QUEUE_NOTIFICATIONS = "bc-notifications"
QUEUE_NOTIFICATIONS_POISON = "bc-notifications-poison"
QUEUE_ITEM_PULLS = "bc-item-pulls"  # internal: pull requests from the route, and continuations
QUEUE_ITEM_PULLS_POISON = "bc-item-pulls-poison"
QUEUE_NAMES: tuple[str, ...] = (
    QUEUE_SALES_ORDERS,
    QUEUE_SALES_ORDERS_POISON,
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_ITEMS,
    QUEUE_SALES_SHIPMENTS,
    QUEUE_SALES_INVOICES,
    QUEUE_NOTIFICATIONS,
    QUEUE_NOTIFICATIONS_POISON,
    QUEUE_ITEM_PULLS,
    QUEUE_ITEM_PULLS_POISON,
)

TABLE_TOKENS = "bctokens"  # encrypted msal token caches, one row per connection
TABLE_AUTH_FLOWS = "bcauthflows"  # pending sign-ins keyed by OAuth state (short expiry)
TABLE_CONNECTIONS = "bcconnections"  # per-connection state: chosen company, discovered companies
TABLE_SUBSCRIPTIONS = "bcsubscriptions"  # webhook subscriptions with their clientState secret
TABLE_CURSORS = "bccursors"  # pull/sweep cursors and checkpoints
TABLE_DEDUPE = "bcdedupe"  # what each created-trigger has announced, per entity
TABLE_ORDERS = "bcorders"  # sales-order idempotency records (queue message id -> order)
TABLE_LEASES = "bcleases"  # single-runner leases (item pull, renewal, sweep)
TABLE_NAMES: tuple[str, ...] = (
    TABLE_TOKENS,
    TABLE_AUTH_FLOWS,
    TABLE_CONNECTIONS,
    TABLE_SUBSCRIPTIONS,
    TABLE_CURSORS,
    TABLE_DEDUPE,
    TABLE_ORDERS,
    TABLE_LEASES,
)

CONTAINER_EVENT_PAYLOADS = "bc-event-payloads"  # events too large for a queue message
# Sales orders too large for a queue message (claim check): producers write, the connector only reads.
CONTAINER_SALES_ORDER_PAYLOADS = "sales-order-payloads"
BLOB_CONTAINERS: tuple[str, ...] = (CONTAINER_EVENT_PAYLOADS, CONTAINER_SALES_ORDER_PAYLOADS)
# The containers the connector only reads: its identity gets Storage Blob Data Reader there, not Contributor.
BLOB_CONTAINERS_READ_ONLY: tuple[str, ...] = (CONTAINER_SALES_ORDER_PAYLOADS,)

# what a trigger may announce: `bc.<entity>.<change>` (`drafted`: sets where BC keeps drafts, e.g. invoices)
CHANGE_TYPES = ("created", "updated", "deleted", "drafted")

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
DEFAULT_CONNECTION = "default"


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, default (None = required or optional-empty) and meaning.

    `host_binding`: the Functions host resolves it itself (`%NAME%` in a trigger), so it must exist as
    an app setting and Bicep deploys it with its default; the code's default covers every other one.
    `local`: its value in `local.settings.example.json` (the bundled emulator) where that differs.
    """

    name: str
    default: str | None
    description: str
    secret: bool = False
    per_connection: bool = False
    host_binding: bool = False
    local: str | None = None


SETTINGS: list[Setting] = [
    Setting("AzureWebJobsStorage", "UseDevelopmentStorage=true",
            "Storage connection string. In Azure use identity-based `AzureWebJobsStorage__accountName` "
            "(or `__queueServiceUri`/`__tableServiceUri`/`__blobServiceUri`) instead."),
    Setting("BC_CONNECTIONS", DEFAULT_CONNECTION,
            "Comma-separated connection names. Settings of a connection other than `default` are "
            "prefixed with its upper-case name and `__` (e.g. `EMEA__BC_TENANT`)."),
    Setting("BC_TENANT", None, "Entra tenant of Business Central: domain (lmints.io) or GUID.",
            per_connection=True, local="lmints.io"),
    Setting("BC_ENVIRONMENT", "production", "BC environment name (`production`, `sandbox`, ...).",
            per_connection=True),
    Setting("BC_CLIENT_ID", None, "Entra app (client) id.", per_connection=True,
            local="5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"),
    Setting("BC_CLIENT_SECRET", None,
            "Entra client secret (Key Vault reference in Azure; never stored in tables).",
            secret=True, per_connection=True, local="emulator-secret"),
    Setting("BC_GRANT_TYPE", "authorization_code",
            "`authorization_code` (a user signs in at /api/connections/{name}/login) or "
            "`client_credentials` (service-to-service, unattended).", per_connection=True,
            local="client_credentials"),
    Setting("BC_COMPANY", "",
            "Company id or name; empty = the first company discovered.", per_connection=True),
    Setting("PULL_ITEM_VARIANTS", "true", "Items events carry `itemVariants`.", per_connection=True),
    Setting("PULL_SALES_SHIPMENT_LINES", "true", "Shipment events carry `salesShipmentLines`.",
            per_connection=True),
    Setting("PULL_SALES_INVOICE_LINES", "true", "Invoice events carry `salesInvoiceLines`.",
            per_connection=True),
    Setting("ITEM_CHANGE_TYPES", "created",
            "Which item changes are announced on `bc-items`: comma list of `created,updated,deleted`.",
            per_connection=True),
    Setting("SALES_SHIPMENT_CHANGE_TYPES", "created",
            "Which posted-shipment changes are announced: comma list of `created,updated,deleted`.",
            per_connection=True),
    Setting("SALES_INVOICE_CHANGE_TYPES", "created",
            "Which sales-invoice changes are announced: comma list of `created,updated,deleted,drafted`; "
            "`created` = BC posted the invoice (once, under the draft's id when it had one), `drafted` = "
            "a new draft (`bc.salesInvoice.drafted`; off by default: a draft may never be posted).",
            per_connection=True),
    Setting("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com",
            "Entra ID host; authority = {host}/{tenant}. Point at the emulator for local runs.",
            local="https://127.0.0.1:8443"),
    Setting("BC_API_HOST", "https://api.businesscentral.dynamics.com",
            "BC API host; base URL = {host}/v2.0/{tenant}/{environment}/api/v2.0.",
            local="https://127.0.0.1:8443"),
    Setting("TLS_CA_BUNDLE", "",
            "Optional CA bundle (PEM path) for Entra and BC calls; the emulator's self-signed CA locally.",
            local=".devdata/emulator-ca.pem"),
    Setting("PUBLIC_BASE_URL", "",
            "Public base URL of this app, for the OAuth redirect URI and the webhook notificationUrl. "
            "Empty = https://$WEBSITE_HOSTNAME in Azure, http://127.0.0.1:7071 locally.",
            local="http://127.0.0.1:7071"),
    Setting("TOKEN_ENCRYPTION_KEY", None,
            "Fernet key (urlsafe base64, 32 bytes) that encrypts token caches at rest. Key Vault "
            "reference in Azure. Several keys separated by commas rotate (first encrypts).",
            secret=True, local="9vojfjfiSnHXn6bFONOibYRAB7MW-UIPY24Iz20cIPs="),
    Setting("ITEM_PULL_SCHEDULE", "0 */15 * * * *", "NCRONTAB schedule of Schedule Pull Items.",
            host_binding=True),
    Setting("SUBSCRIPTION_RENEWAL_SCHEDULE", "0 7 * * * *",
            "NCRONTAB schedule of the webhook renewal/recreation run.", host_binding=True),
    Setting("SWEEP_SCHEDULE", "0 */30 * * * *",
            "NCRONTAB schedule of the sweep that emits what webhooks missed.", host_binding=True),
    Setting("SWEEP_MAX_SECONDS", "480",
            "A sweep run stops after this long and checkpoints; the next run resumes."),
    Setting("SUBSCRIPTION_RENEW_BEFORE_HOURS", "36",
            "Renew a subscription when less than this is left of its 3-day life."),
    Setting("ITEM_PULL_PAGE_SIZE", "1000", "Items per BC page (`Prefer: odata.maxpagesize`)."),
    Setting("ITEM_PULL_MAX_SECONDS", "480",
            "A pull run stops after this long and checkpoints; the next run resumes."),
    Setting("CURSOR_OVERLAP_SECONDS", "60",
            "Incremental reads go back this far before the cursor (clock skew, SQL rounding)."),
    Setting("EVENT_PUBLISH_CONCURRENCY", "16", "Queue sends in flight at once when emitting events."),
    Setting("EVENT_MAX_INLINE_BYTES", "60000",
            "Larger events carry their data in blob storage (`dataref`); queue limit is 64 KiB."),
    Setting("DEDUPE_TTL_DAYS", "14",
            "How long an entity that vanished before it could be read is remembered as gone "
            "(announced and pre-existing entities are remembered for good)."),
    Setting("BC_MAX_CONCURRENCY", "5",
            "Concurrent BC requests per principal (app registration or signed-in user), all "
            "instances together."),
    Setting("BC_MAX_REQUESTS_PER_5_MIN", "6000",
            "BC requests per principal per 5 minutes, all instances together."),
    Setting("BC_SHARED_BUDGET", "true",
            "Share each principal's BC budget across instances through Table Storage (`false`: each "
            "instance keeps to the limits on its own, so several instances together may exceed them)."),
    Setting("BC_MAX_RETRIES", "6", "Retries of a throttled/failed BC request (429, 502-504, timeouts)."),
    Setting("BC_BACKOFF_SECONDS", "1.0", "First back-off delay; doubles each retry, with jitter."),
    Setting("BC_BACKOFF_MAX_SECONDS", "60", "Longest single back-off delay."),
    Setting("BC_TIMEOUT_SECONDS", "100", "Timeout of one BC request."),
    Setting("SALES_ORDER_AMBIGUITY_SECONDS", "600",
            "After a sales-order POST with an unknown outcome (timeout, 5xx) that BC does not show, wait "
            "this long before sending it again: BC may still commit it (8-minute operation timeout)."),
    Setting("SALES_ORDER_MAX_PAYLOAD_BYTES", "4194304",
            "Largest order blob a `sales-orders` message may reference (`dataref`, container "
            "`sales-order-payloads`); a larger one fails with `DataRefTooLarge`."),
    Setting("WEBHOOK_MAX_BODY_BYTES", "4194304",
            "Notification bodies declared larger (`Content-Length`) are acknowledged unread and logged "
            "as errors (the sweep recovers them). BC sends up to 1,000 notifications per subscription "
            "(~400 KB) in one POST for all subscriptions of a URL: three trigger subscriptions ~1.2 MB."),
    Setting("AUTH_FLOW_TTL_SECONDS", "600", "How long a started sign-in may take."),
    Setting("TELEMETRY_EXPORTER", "",
            "OpenTelemetry exporter for local runs: `console` or `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT); "
            "empty = none. In Azure, APPLICATIONINSIGHTS_CONNECTION_STRING turns on Azure Monitor."),
]
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class ConnectionSettings:
    """One BC connection: where it points, how it signs in, and its trigger options."""

    name: str
    tenant: str
    environment: str
    client_id: str
    client_secret: str = field(repr=False)
    grant_type: str
    company: str
    pull_item_variants: bool
    pull_sales_shipment_lines: bool
    pull_sales_invoice_lines: bool
    item_change_types: frozenset[str]
    sales_shipment_change_types: frozenset[str]
    sales_invoice_change_types: frozenset[str]
    authority_host: str
    api_host: str

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant}"

    @property
    def api_base(self) -> str:
        return f"{self.api_host.rstrip('/')}/v2.0/{self.tenant}/{self.environment}/api/v2.0"

    @property
    def uses_code_flow(self) -> bool:
        return self.grant_type == "authorization_code"


@dataclass(frozen=True)
class StorageSettings:
    """Where storage lives: a connection string, or an account/service URIs for a managed identity."""

    connection_string: str
    account: str = ""
    service_uris: Mapping[str, str] = field(default_factory=dict)
    client_id: str = ""


@dataclass(frozen=True)
class BCLimits:
    max_concurrency: int
    max_requests_per_window: int
    window_seconds: float
    max_retries: int
    backoff_seconds: float
    backoff_max_seconds: float
    timeout_seconds: float
    shared: bool = True


@dataclass(frozen=True)
class TelemetrySettings:
    """Where OpenTelemetry goes: Azure Monitor (connection string set), a local exporter, or nowhere."""

    exporter: str = ""  # "", "console" or "otlp"
    connection_string: str = field(default="", repr=False)
    authentication_string: str = ""  # `ClientId=<id>;Authorization=AAD`: sign in with the identity

    @property
    def enabled(self) -> bool:
        return bool(self.connection_string or self.exporter)


@dataclass(frozen=True)
class Settings:
    """The whole configuration, typed."""

    storage: StorageSettings
    connections: Mapping[str, ConnectionSettings]
    tls_ca_bundle: str
    public_base_url: str
    token_encryption_keys: tuple[str, ...] = field(repr=False)
    item_pull_page_size: int
    item_pull_max_seconds: float
    sweep_max_seconds: float
    cursor_overlap_seconds: float
    subscription_renew_before_hours: float
    event_publish_concurrency: int
    event_max_inline_bytes: int
    dedupe_ttl_days: float
    webhook_max_body_bytes: int
    auth_flow_ttl_seconds: int
    sales_order_ambiguity_seconds: float
    sales_order_max_payload_bytes: int
    bc_limits: BCLimits
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url}/api/auth/callback"

    @property
    def notification_url(self) -> str:
        return f"{self.public_base_url}/api/webhooks/bc"

    def connection(self, name: str | None) -> ConnectionSettings:
        key = name or DEFAULT_CONNECTION
        try:
            return self.connections[key]
        except KeyError:
            raise UnknownConnection(key, tuple(self.connections)) from None


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class UnknownConnection(KeyError):
    def __init__(self, name: str, known: tuple[str, ...]):
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown connection {self.name!r} (configured: {', '.join(self.known)})"


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _parse_changes(name: str, value: str) -> frozenset[str]:
    changes = frozenset(c.strip().lower() for c in value.split(",") if c.strip())
    unknown = sorted(changes - set(CHANGE_TYPES))
    if unknown:
        raise SettingsError(f"{name} is a comma list of {','.join(CHANGE_TYPES)}, not {value!r}")
    return changes


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def get(self, name: str, prefix: str = "") -> str:
        if prefix and f"{prefix}__{name}" in self.env:
            return self.env[f"{prefix}__{name}"]
        value = self.env.get(name)
        if value is None:
            value = _BY_NAME[name].default
        return "" if value is None else value

    def number(self, name: str, minimum: float = 0) -> float:
        value = self.get(name)
        try:
            n = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
        if n < minimum:
            raise SettingsError(f"{name} must be at least {minimum:g}")
        return n

    def integer(self, name: str, minimum: int = 0) -> int:
        n = self.number(name, minimum)
        if n != int(n):
            raise SettingsError(f"{name} must be a whole number")
        return int(n)

    def required(self, name: str, prefix: str, connection: str) -> str:
        value = self.get(name, prefix).strip()
        if not value:
            where = f"{prefix}__{name} or {name}" if prefix else name
            raise SettingsError(f"connection {connection!r}: setting {where} is required")
        return value


def _connection(reader: _Reader, name: str) -> ConnectionSettings:
    prefix = "" if name == DEFAULT_CONNECTION else name.upper().replace("-", "_")
    grant = reader.get("BC_GRANT_TYPE", prefix).strip()
    if grant not in ("authorization_code", "client_credentials"):
        raise SettingsError(
            f"connection {name!r}: BC_GRANT_TYPE must be authorization_code or client_credentials"
        )
    return ConnectionSettings(
        name=name,
        tenant=reader.required("BC_TENANT", prefix, name),
        environment=reader.required("BC_ENVIRONMENT", prefix, name),
        client_id=reader.required("BC_CLIENT_ID", prefix, name),
        client_secret=reader.required("BC_CLIENT_SECRET", prefix, name),
        grant_type=grant,
        company=reader.get("BC_COMPANY", prefix).strip(),
        pull_item_variants=_parse_bool("PULL_ITEM_VARIANTS", reader.get("PULL_ITEM_VARIANTS", prefix)),
        pull_sales_shipment_lines=_parse_bool(
            "PULL_SALES_SHIPMENT_LINES", reader.get("PULL_SALES_SHIPMENT_LINES", prefix)
        ),
        pull_sales_invoice_lines=_parse_bool(
            "PULL_SALES_INVOICE_LINES", reader.get("PULL_SALES_INVOICE_LINES", prefix)
        ),
        item_change_types=_parse_changes("ITEM_CHANGE_TYPES", reader.get("ITEM_CHANGE_TYPES", prefix)),
        sales_shipment_change_types=_parse_changes(
            "SALES_SHIPMENT_CHANGE_TYPES", reader.get("SALES_SHIPMENT_CHANGE_TYPES", prefix)
        ),
        sales_invoice_change_types=_parse_changes(
            "SALES_INVOICE_CHANGE_TYPES", reader.get("SALES_INVOICE_CHANGE_TYPES", prefix)
        ),
        authority_host=reader.get("ENTRA_AUTHORITY_HOST", prefix).strip(),
        api_host=reader.get("BC_API_HOST", prefix).strip(),
    )


def load_storage_settings(env: Mapping[str, str] | None = None) -> StorageSettings:
    """Only the storage part (enough for operator commands such as replay-poison)."""
    env = os.environ if env is None else env
    uris = {kind: env.get(f"AzureWebJobsStorage__{kind}ServiceUri", "")
            for kind in ("blob", "queue", "table")}
    account = env.get("AzureWebJobsStorage__accountName", "")
    if "AzureWebJobsStorage" in env:
        connection = env["AzureWebJobsStorage"]
    elif account or any(uris.values()):
        connection = ""
    else:
        connection = _BY_NAME["AzureWebJobsStorage"].default or ""
    return StorageSettings(connection_string=connection, account=account,
                           service_uris={k: v for k, v in uris.items() if v},
                           client_id=env.get("AzureWebJobsStorage__clientId", ""))


TELEMETRY_EXPORTERS = ("", "none", "console", "otlp")


def load_telemetry_settings(env: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Only the telemetry part (the host's APPLICATIONINSIGHTS_* settings and TELEMETRY_EXPORTER)."""
    env = os.environ if env is None else env
    exporter = _Reader(env).get("TELEMETRY_EXPORTER").strip().lower()
    if exporter not in TELEMETRY_EXPORTERS:
        raise SettingsError(f"TELEMETRY_EXPORTER must be console, otlp or empty, not {exporter!r}")
    return TelemetrySettings(
        exporter="" if exporter == "none" else exporter,
        connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip(),
        authentication_string=env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").strip(),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises SettingsError naming the culprit."""
    env = os.environ if env is None else env
    r = _Reader(env)
    names = [n.strip() for n in r.get("BC_CONNECTIONS").split(",") if n.strip()]
    for n in names:
        if not _NAME_RE.match(n):
            raise SettingsError(f"BC_CONNECTIONS: {n!r} is not a valid connection name (a-z, 0-9, -)")
    connections = {n: _connection(r, n) for n in names}
    public = r.get("PUBLIC_BASE_URL").strip().rstrip("/")
    if not public:
        host = env.get("WEBSITE_HOSTNAME", "").strip()
        public = f"https://{host}" if host else "http://127.0.0.1:7071"
    keys = tuple(k.strip() for k in r.get("TOKEN_ENCRYPTION_KEY").split(",") if k.strip())
    return Settings(
        storage=load_storage_settings(env),
        connections=connections,
        tls_ca_bundle=r.get("TLS_CA_BUNDLE").strip(),
        public_base_url=public,
        token_encryption_keys=keys,
        item_pull_page_size=r.integer("ITEM_PULL_PAGE_SIZE", minimum=1),
        item_pull_max_seconds=r.number("ITEM_PULL_MAX_SECONDS"),
        sweep_max_seconds=r.number("SWEEP_MAX_SECONDS"),
        cursor_overlap_seconds=r.number("CURSOR_OVERLAP_SECONDS"),
        subscription_renew_before_hours=r.number("SUBSCRIPTION_RENEW_BEFORE_HOURS"),
        event_publish_concurrency=r.integer("EVENT_PUBLISH_CONCURRENCY", minimum=1),
        event_max_inline_bytes=r.integer("EVENT_MAX_INLINE_BYTES", minimum=1024),
        dedupe_ttl_days=r.number("DEDUPE_TTL_DAYS"),
        webhook_max_body_bytes=r.integer("WEBHOOK_MAX_BODY_BYTES", minimum=1024),
        auth_flow_ttl_seconds=r.integer("AUTH_FLOW_TTL_SECONDS", minimum=1),
        sales_order_ambiguity_seconds=r.number("SALES_ORDER_AMBIGUITY_SECONDS"),
        sales_order_max_payload_bytes=r.integer("SALES_ORDER_MAX_PAYLOAD_BYTES", minimum=1),
        bc_limits=BCLimits(
            max_concurrency=r.integer("BC_MAX_CONCURRENCY", minimum=1),
            max_requests_per_window=r.integer("BC_MAX_REQUESTS_PER_5_MIN", minimum=1),
            window_seconds=300.0,
            max_retries=r.integer("BC_MAX_RETRIES"),
            backoff_seconds=r.number("BC_BACKOFF_SECONDS"),
            backoff_max_seconds=r.number("BC_BACKOFF_MAX_SECONDS"),
            timeout_seconds=r.number("BC_TIMEOUT_SECONDS"),
            shared=_parse_bool("BC_SHARED_BUDGET", r.get("BC_SHARED_BUDGET")),
        ),
        telemetry=load_telemetry_settings(env),
    )


HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def host_max_dequeue_count(host_json: Path = HOST_JSON) -> int:
    """`extensions.queues.maxDequeueCount` of host.json (the host's default 5 if absent)."""
    config = json.loads(host_json.read_text(encoding="utf-8"))
    return int(config.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5))
