"""Every setting of the connector, declared once: name, type, default, validation and meaning.

This is the only module that reads `os.environ`. Each setting is one field of the typed, frozen
objects below, declared with `setting(NAME, default, meaning, ...)`: the field's type says how its text
is parsed (str, int, float, bool, comma lists), `minimum`/`choices` validate it, and a field of
`ConnectionSettings` is read per connection. `SETTINGS` (the catalogue) is derived from those fields;
`make settings` (devtools/settings_files.py) generates the README settings table,
`local.settings.example.json` and `infra/connector.json` (what Bicep loads) from it, and a test fails
when any of those is stale. Adding a setting is adding one field here (then `make settings`).

Connections: the `default` connection comes from the plain `BC_*` settings. More are declared with
`BC_CONNECTIONS=default,emea` and configured with the connection name (upper-case) and a double
underscore as prefix, e.g. `EMEA__BC_TENANT`, `EMEA__PULL_ITEM_VARIANTS`. A prefixed value wins; an
unset one falls back to the plain setting (so options and the tenant can be shared). More connections
can be rows of the table `bcconnectiondefs` (`python -m connector connections add`), added and removed
while the app runs: `table_connection` reads a row exactly like a prefixed connection, and
`connector/connection_table.py` keeps the live catalogue (`Settings.connections` in the runtime).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector.declarations import (
    CHANGE_TYPES,
    DRAFTED_CHANGE_TYPES,
    Command,
    DeclarationError,
    WatchedEntitySet,
    parse_commands,
    parse_triggers,
)
from connector.errors import ConnectorError

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
QUEUE_COMMANDS = "bc-commands"  # in: declared commands (`type` names one): a sales quote, a customer upsert
QUEUE_COMMANDS_POISON = "bc-commands-poison"
QUEUE_COMMAND_RESULTS = "bc-command-results"
QUEUE_HEALTH = "bc-connector-health"  # out: `bc.connector.*` health events for operators
QUEUE_CONNECTION_WORK = "bc-connection-work"  # internal: one timer unit per connection (pull, sweep, renewal)
QUEUE_CONNECTION_WORK_POISON = "bc-connection-work-poison"
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
    QUEUE_HEALTH,
    QUEUE_COMMANDS,
    QUEUE_COMMANDS_POISON,
    QUEUE_COMMAND_RESULTS,
    QUEUE_CONNECTION_WORK,
    QUEUE_CONNECTION_WORK_POISON,
)

TABLE_TOKENS = "bctokens"  # encrypted msal token caches, one row per connection
TABLE_AUTH_FLOWS = "bcauthflows"  # pending sign-ins keyed by OAuth state (short expiry)
TABLE_CONNECTIONS = "bcconnections"  # per-connection state: chosen company, discovered companies
TABLE_SUBSCRIPTIONS = "bcsubscriptions"  # webhook subscriptions with their clientState secret
TABLE_CURSORS = "bccursors"  # pull/sweep cursors and checkpoints
TABLE_DEDUPE = "bcdedupe"  # what each created-trigger has announced, per entity
TABLE_ORDERS = "bcorders"  # sales-order idempotency records (queue message id -> order)
TABLE_LEASES = "bcleases"  # single-runner leases (item pull, renewal, sweep)
TABLE_HEALTH = "bchealth"  # health events sent, one row per occurrence (once-only, recent list)
TABLE_STATS = "bcstats"  # per connection, hour and instance: counts for the status page's charts
TABLE_CONNECTION_DEFS = "bcconnectiondefs"  # connections declared in storage (connection_table.py)
TABLE_NAMES: tuple[str, ...] = (
    TABLE_TOKENS,
    TABLE_AUTH_FLOWS,
    TABLE_CONNECTIONS,
    TABLE_SUBSCRIPTIONS,
    TABLE_CURSORS,
    TABLE_DEDUPE,
    TABLE_ORDERS,
    TABLE_LEASES,
    TABLE_HEALTH,
    TABLE_STATS,
    TABLE_CONNECTION_DEFS,
)

CONTAINER_EVENT_PAYLOADS = "bc-event-payloads"  # events too large for a queue message
# Sales orders too large for a queue message (claim check): producers write, the connector only reads.
CONTAINER_SALES_ORDER_PAYLOADS = "sales-order-payloads"
BLOB_CONTAINERS: tuple[str, ...] = (CONTAINER_EVENT_PAYLOADS, CONTAINER_SALES_ORDER_PAYLOADS)
# The containers the connector only reads: its identity gets Storage Blob Data Reader there, not Contributor.
BLOB_CONTAINERS_READ_ONLY: tuple[str, ...] = (CONTAINER_SALES_ORDER_PAYLOADS,)

GRANT_TYPES = ("authorization_code", "client_credentials")
CLIENT_CREDENTIALS = ("secret", "managed-identity")
TELEMETRY_EXPORTERS = ("", "none", "console", "otlp")

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
DEFAULT_CONNECTION = "default"

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def _host_queues(host_json: Path = HOST_JSON) -> dict[str, Any]:
    """host.json's `extensions.queues`."""
    return json.loads(host_json.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})


HTTP_THREADS = 32  # worker threads beyond the queue batches: with exactly as many, a burst of queue work
# took every thread and BC's webhook handshakes (an HTTP call back into the app) found none


def host_queue_concurrency(host_json: Path = HOST_JSON) -> int:
    """How many messages the Functions host runs at once per queue function and instance: host.json's
    `batchSize + newBatchThreshold` (the host's defaults, 16 and half the batch, where absent)."""
    queues = _host_queues(host_json)
    batch = int(queues.get("batchSize", 16))
    return batch + int(queues.get("newBatchThreshold", batch // 2))


class SettingsError(ConnectorError, ValueError):
    """A setting is missing or malformed; the message names it (retryable: a fixed setting cures
    the work that waits)."""

    internal = True


@dataclass(frozen=True)
class Setting:
    """One app setting as the catalogue shows it: name, default (as text; None = required, or for a
    global secret: empty until used) and meaning.

    `per_connection`: it may be prefixed per connection (every field of `ConnectionSettings` is).
    `host_binding`: the Functions host resolves it itself (`%NAME%` in a trigger, or a host setting
    such as FUNCTIONS_REQUEST_BODY_SIZE_LIMIT), so it must exist as an app setting and Bicep deploys it
    with its default; the code's default covers every other one.
    `local`: its value in `local.settings.example.json` (the bundled emulator) where that differs.
    `minimum`/`choices`: validation of a number / of a value or each item of a comma list.
    """

    name: str
    default: str | None
    description: str
    secret: bool = False
    per_connection: bool = False
    host_binding: bool = False
    local: str | None = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """A connection cannot work without it (a missing global secret is reported where it is used)."""
        return self.default is None and self.per_connection

    def parse(self, text: str, kind: Any) -> Any:
        """`text` (from the environment, or the default) as a value of the field's type `kind`."""
        value = text.strip()
        if kind is bool:
            return self._bool(value)
        if kind in (int, float):
            return self._number(value, kind)
        if kind in (frozenset[str], tuple[str, ...]):
            items = [v.strip() for v in value.split(",") if v.strip()]
            if self.choices:
                items = [v.lower() for v in items]
                if set(items) - set(self.choices):
                    raise SettingsError(f"{self.name} is a comma list of {','.join(self.choices)}, "
                                        f"not {text!r}")
            return frozenset(items) if kind == frozenset[str] else tuple(items)
        if self.choices:
            value = value.lower()
            if value not in self.choices:
                shown = ", ".join(c or "empty" for c in self.choices)
                raise SettingsError(f"{self.name} must be one of {shown}, not {text!r}")
        return value

    def _bool(self, value: str) -> bool:
        v = value.lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{self.name} must be true or false, not {value!r}")

    def _number(self, value: str, kind: type) -> float | int:
        try:
            n = float(value)
        except ValueError:
            raise SettingsError(f"{self.name} must be a number, not {value!r}") from None
        minimum = 0 if self.minimum is None else self.minimum  # no setting counts below zero
        if n < minimum:
            raise SettingsError(f"{self.name} must be at least {minimum:g}")
        if kind is int:
            if n != int(n):
                raise SettingsError(f"{self.name} must be a whole number")
            return int(n)
        return n


# The field types a setting may have (annotations are text here: `from __future__ import annotations`).
_KINDS: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool,
                          "frozenset[str]": frozenset[str], "tuple[str, ...]": tuple[str, ...]}


def _kind(annotation: Any) -> Any:
    return _KINDS[annotation] if isinstance(annotation, str) else annotation


def setting(name: str, default: str | None, description: str, *, secret: bool = False,
            host_binding: bool = False, local: str | None = None, minimum: float | None = None,
            choices: tuple[str, ...] = ()) -> Any:
    """Declare a field as the setting `name` (see `Setting`); `@declared` makes `default` (parsed) the
    field's Python default."""
    spec = Setting(name, default, description, secret=secret, host_binding=host_binding, local=local,
                   minimum=minimum, choices=choices)
    return field(repr=not secret, metadata={"setting": spec})


def _nested(of: type) -> Any:
    """A field holding another declared object (read from the same environment)."""
    return field(metadata={"nested": of})


def declared(cls: type) -> type:
    """Give each `setting(...)` field of `cls` its parsed default (apply under `@dataclass`)."""
    for name, annotation in cls.__annotations__.items():
        f = cls.__dict__.get(name)
        if isinstance(f, dataclasses.Field) and "setting" in f.metadata:
            spec: Setting = f.metadata["setting"]
            f.default = spec.parse(spec.default or "", _kind(annotation))
    return cls


@dataclass(frozen=True, kw_only=True)
@declared
class ConnectionSettings:
    """One BC connection: where it points, how it signs in, and its trigger options."""

    name: str
    tenant: str = setting("BC_TENANT", None, "Entra tenant of Business Central: domain (lmints.io) or GUID.",
                          local="lmints.io")
    environment: str = setting("BC_ENVIRONMENT", "production",
                               "BC environment name (`production`, `sandbox`, ...).")
    client_id: str = setting("BC_CLIENT_ID", None, "Entra app (client) id.",
                             local="5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60")
    client_secret: str = setting(
        "BC_CLIENT_SECRET", "",
        "Entra client secret (Key Vault reference in Azure; never stored in tables). Required unless "
        "BC_CLIENT_CREDENTIAL is `managed-identity`.",
        secret=True, local="emulator-secret")
    client_credential: str = setting(
        "BC_CLIENT_CREDENTIAL", "secret",
        "How the app proves itself to Entra: `secret` (BC_CLIENT_SECRET) or `managed-identity` (a client "
        "assertion: a token of this Function App's managed identity, which the app registration trusts "
        "as a federated credential; no secret to rotate).", choices=CLIENT_CREDENTIALS)
    managed_identity_client_id: str = setting(
        "BC_MANAGED_IDENTITY_CLIENT_ID", "",
        "Client id of the user-assigned managed identity whose token is the client assertion; empty = "
        "the identity storage uses (`AzureWebJobsStorage__clientId`, as Bicep deploys it), else the "
        "system-assigned one.")
    admin_center: bool = setting(
        "BC_ADMIN_CENTER", "false",
        "Watch the environment through BC's Admin Center API (copy, point-in-time restore, rename, "
        "update): needs the app permission AdminCenter.ReadWrite.All, which can also delete environments; "
        "grant it only if you accept that.")
    client_secret_expires: str = setting(
        "BC_CLIENT_SECRET_EXPIRES", "",
        "The day BC_CLIENT_SECRET expires (YYYY-MM-DD, from the app registration): the status page warns "
        "and a `bc.connector.secret.expiring` event is sent 30 days ahead. Empty = not tracked.")
    grant_type: str = setting("BC_GRANT_TYPE", "authorization_code",
                              "`authorization_code` (a user signs in at /api/connections/{name}/login) or "
                              "`client_credentials` (service-to-service, unattended).",
                              choices=GRANT_TYPES, local="client_credentials")
    extra_client_ids: tuple[str, ...] = setting(
        "BC_EXTRA_CLIENT_IDS", "",
        "More app registrations (client ids, comma list) that BC counts as principals of their own, each "
        "with its own limits: requests spread over them by free capacity (`client_credentials` only; "
        "each registered in BC like BC_CLIENT_ID).")
    extra_client_secrets: tuple[str, ...] = setting(
        "BC_EXTRA_CLIENT_SECRETS", "",
        "The secrets of BC_EXTRA_CLIENT_IDS, comma list in the same order (Key Vault reference).",
        secret=True)
    read_only_intent: bool = setting(
        "BC_READ_ONLY_INTENT", "true",
        "Item pulls and sweeps read from BC's read-only replica (`Data-Access-Intent: ReadOnly`); the "
        "read after a notification and key checks always read the primary.")
    company: str = setting("BC_COMPANY", "", "Company id or name; empty = the first company discovered.")
    pull_item_variants: bool = setting("PULL_ITEM_VARIANTS", "true", "Items events carry `itemVariants`.")
    pull_sales_shipment_lines: bool = setting("PULL_SALES_SHIPMENT_LINES", "true",
                                              "Shipment events carry `salesShipmentLines`.")
    pull_sales_invoice_lines: bool = setting("PULL_SALES_INVOICE_LINES", "true",
                                             "Invoice events carry `salesInvoiceLines`.")
    item_change_types: frozenset[str] = setting(
        "ITEM_CHANGE_TYPES", "created",
        "Which item changes are announced on `bc-items`: comma list of `created,updated,deleted`.",
        choices=CHANGE_TYPES)
    sales_shipment_change_types: frozenset[str] = setting(
        "SALES_SHIPMENT_CHANGE_TYPES", "created",
        "Which posted-shipment changes are announced: comma list of `created,updated,deleted`.",
        choices=CHANGE_TYPES)
    sales_invoice_change_types: frozenset[str] = setting(
        "SALES_INVOICE_CHANGE_TYPES", "created",
        "Which sales-invoice changes are announced: comma list of `created,updated,deleted,drafted`; "
        "`created` = BC posted the invoice (once, under the draft's id when it had one), `drafted` = a "
        "new draft (`bc.salesInvoice.drafted`; off by default: a draft may never be posted).",
        choices=DRAFTED_CHANGE_TYPES)
    business_events: bool = setting(
        "BUSINESS_EVENTS", "false",
        "Also receive BC's external business events (SalesInvoicePosted, SalesShipmentPosted) for the "
        "posting triggers: sent after the posting commits, so faster than the table webhook; the "
        "webhook and the sweep stay as the fallback. Needs BC's permission set `Ext. Events - Subscr` "
        "(off by default for that reason; a 403 shows on /api/status). On for `make run`: the emulator "
        "has them.", local="true")
    authority_host: str = setting("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com",
                                  "Entra ID host; authority = {host}/{tenant}. Point at the emulator for "
                                  "local runs.", local="https://127.0.0.1:8443")
    api_host: str = setting("BC_API_HOST", "https://api.businesscentral.dynamics.com",
                            "BC API host; base URL = {host}/v2.0/{tenant}/{environment}/api/v2.0.",
                            local="https://127.0.0.1:8443")
    trigger_declarations: str = setting(
        "TRIGGERS", "",
        "More triggers, as a JSON list of declarations (entity set, standard or custom API, queue, "
        "change types, children, `$select`, watched fields): see docs/entities.md. A declaration "
        "of `items`, `salesShipments` or `salesInvoices` replaces that seed trigger.")
    triggers: tuple[WatchedEntitySet, ...] = ()  # the seed's and the declared ones (`_connection`)
    command_declarations: str = setting(
        "COMMANDS", "",
        "Commands on `bc-commands` beyond sales orders, as a JSON list of declarations (name = the "
        "messages' `type`, entity set, key field, lines, `create` or `upsert`): see docs/entities.md.")
    commands: tuple[Command, ...] = ()  # parsed from COMMANDS (`_connection`)

    def command(self, name: str) -> Command | None:
        """The declared command of this name (a `bc-commands` message's `type`), if any."""
        return next((c for c in self.commands if c.name == name), None)

    def trigger(self, key: str) -> WatchedEntitySet | None:
        """The trigger with this key (entity set, or `publisher/group/version/entitySet`), if declared."""
        return next((t for t in self.triggers if t.key == key), None)

    def __post_init__(self) -> None:
        ids, secrets = self.extra_client_ids or (), self.extra_client_secrets or ()
        if len(ids) != len(secrets):
            raise SettingsError(f"BC_EXTRA_CLIENT_IDS names {len(ids)} client(s) but "
                                f"BC_EXTRA_CLIENT_SECRETS has {len(secrets)} secret(s)")
        if ids and self.grant_type != "client_credentials":
            raise SettingsError("BC_EXTRA_CLIENT_IDS needs BC_GRANT_TYPE=client_credentials (each extra "
                                "principal signs in on its own)")

    @property
    def principals(self) -> tuple[ConnectionSettings, ...]:
        """One settings object per app registration BC counts as a principal: this connection, then
        one per extra client named `<name>.2`, `<name>.3`, … (its own tokens and token state)."""
        pairs = zip(self.extra_client_ids or (), self.extra_client_secrets or (), strict=True)
        extra = tuple(dataclasses.replace(self, name=f"{self.name}.{n}", client_id=client_id,
                                          client_secret=secret, extra_client_ids=(), extra_client_secrets=())
                      for n, (client_id, secret) in enumerate(pairs, start=2))
        return (self, *extra)

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
@declared
class StorageSettings:
    """Where storage lives: a connection string, or an account/service URIs for a managed identity.

    Only `AzureWebJobsStorage` is a declared setting; the `AzureWebJobsStorage__*` forms are the
    Functions host's identity-based connection (read by `load_storage_settings`)."""

    connection_string: str = setting(
        "AzureWebJobsStorage", "UseDevelopmentStorage=true",
        "Storage connection string. In Azure use identity-based `AzureWebJobsStorage__accountName` "
        "(or `__queueServiceUri`/`__tableServiceUri`/`__blobServiceUri`) instead.")
    account: str = ""
    service_uris: Mapping[str, str] = field(default_factory=dict)
    client_id: str = ""


@dataclass(frozen=True, kw_only=True)
@declared
class BCLimits:
    """How hard the connector may use BC: the shared budget, retries and timeouts."""

    max_concurrency: int = setting("BC_MAX_CONCURRENCY", "5",
                                   "Concurrent BC requests per principal (app registration or signed-in "
                                   "user), all instances together.", minimum=1)
    max_requests_per_window: int = setting("BC_MAX_REQUESTS_PER_5_MIN", "6000",
                                           "BC requests per principal per 5 minutes, all instances together.",
                                           minimum=1)
    window_seconds: float = 300.0
    shared: bool = setting("BC_SHARED_BUDGET", "true",
                           "Share each principal's BC budget across instances through Table Storage "
                           "(`false`: each instance keeps to the limits on its own, so several instances "
                           "together may exceed them).")
    max_retries: int = setting("BC_MAX_RETRIES", "6",
                               "Retries of a throttled/failed BC request (429, 502-504, timeouts).")
    backoff_seconds: float = setting("BC_BACKOFF_SECONDS", "1.0",
                                     "First back-off delay; doubles each retry, with jitter.")
    backoff_max_seconds: float = setting("BC_BACKOFF_MAX_SECONDS", "60", "Longest single back-off delay.")
    timeout_seconds: float = setting("BC_TIMEOUT_SECONDS", "100", "Timeout of one BC request.")


@dataclass(frozen=True, kw_only=True)
@declared
class TelemetrySettings:
    """Where OpenTelemetry goes: Azure Monitor (connection string set), a local exporter, or nowhere.

    The two `APPLICATIONINSIGHTS_*` values are the host's own settings (read by
    `load_telemetry_settings`), not declared here."""

    exporter: str = setting("TELEMETRY_EXPORTER", "",
                            "OpenTelemetry exporter for local runs: `console` or `otlp` "
                            "(OTEL_EXPORTER_OTLP_ENDPOINT); empty = none. In Azure, "
                            "APPLICATIONINSIGHTS_CONNECTION_STRING turns on Azure Monitor.",
                            choices=TELEMETRY_EXPORTERS)
    connection_string: str = field(default="", repr=False)
    authentication_string: str = ""  # `ClientId=<id>;Authorization=AAD`: sign in with the identity

    @property
    def enabled(self) -> bool:
        return bool(self.connection_string or self.exporter)


@dataclass(frozen=True, kw_only=True)
@declared
class Settings:
    """The whole configuration, typed."""

    storage: StorageSettings = _nested(StorageSettings)
    connection_names: tuple[str, ...] = setting(
        "BC_CONNECTIONS", DEFAULT_CONNECTION,
        "Comma-separated connection names. Settings of a connection other than `default` are "
        "prefixed with its upper-case name and `__` (e.g. `EMEA__BC_TENANT`).")
    connections: Mapping[str, ConnectionSettings] = _nested(ConnectionSettings)
    connections_refresh_seconds: float = setting(
        "CONNECTIONS_REFRESH_SECONDS", "60",
        "How often each instance re-reads the connection table `bcconnectiondefs` (rows added, changed "
        "or removed take effect without a restart; a name not loaded yet is looked up at once).",
        minimum=1)
    key_vault_cache_seconds: float = setting(
        "KEY_VAULT_CACHE_SECONDS", "3600",
        "How long a secret read through a connection row's Key Vault reference is kept before it is "
        "read again (and at once when Entra refuses it: a rotated secret).", minimum=0)
    key_vault_host: str = setting(
        "KEY_VAULT_HOST", "",
        "Where the Key Vault references of connection rows are read: empty = each reference's own vault "
        "(`https://<vault>.vault.azure.net`); the emulator locally (vault `<name>` under "
        "`/keyvault/<name>`).", local="https://127.0.0.1:8443")
    values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)  # the app settings
    tls_ca_bundle: str = setting("TLS_CA_BUNDLE", "",
                                 "Optional CA bundle (PEM path) for Entra and BC calls; the emulator's "
                                 "self-signed CA locally.", local=".devdata/emulator-ca.pem")
    public_base_url: str = setting("PUBLIC_BASE_URL", "",
                                   "Public base URL of this app, for the OAuth redirect URI and the webhook "
                                   "notificationUrl. Empty = https://$WEBSITE_HOSTNAME in Azure, "
                                   "http://127.0.0.1:7071 locally.", local="http://127.0.0.1:7071")
    token_encryption_keys: tuple[str, ...] = setting(
        "TOKEN_ENCRYPTION_KEY", None,
        "Fernet key (urlsafe base64, 32 bytes) that encrypts token caches at rest. Key Vault "
        "reference in Azure. Several keys separated by commas rotate (first encrypts).",
        secret=True, local="9vojfjfiSnHXn6bFONOibYRAB7MW-UIPY24Iz20cIPs=")
    item_pull_schedule: str = setting("ITEM_PULL_SCHEDULE", "0 */15 * * * *",
                                      "NCRONTAB schedule of Schedule Pull Items.", host_binding=True)
    subscription_renewal_schedule: str = setting("SUBSCRIPTION_RENEWAL_SCHEDULE", "0 7 * * * *",
                                                 "NCRONTAB schedule of the webhook renewal/recreation run.",
                                                 host_binding=True)
    sweep_schedule: str = setting("SWEEP_SCHEDULE", "0 */30 * * * *",
                                  "NCRONTAB schedule of the sweep that emits what webhooks missed.",
                                  host_binding=True)
    timer_fan_out_min_connections: int = setting(
        "TIMER_FAN_OUT_MIN_CONNECTIONS", "10",
        "With at least this many connections, the item pull, sweep and renewal timers queue one unit "
        "per connection on `bc-connection-work` (run in parallel on every instance) instead of running "
        "them all in the timer's invocation; 0 = never.", minimum=0)
    sweep_max_seconds: float = setting("SWEEP_MAX_SECONDS", "480",
                                       "A sweep run stops after this long and checkpoints; the next run "
                                       "resumes.")
    subscription_renew_before_hours: float = setting(
        "SUBSCRIPTION_RENEW_BEFORE_HOURS", "36",
        "Renew a subscription when less than this is left of its 3-day life.")
    item_pull_page_size: int = setting("ITEM_PULL_PAGE_SIZE", "1000",
                                       "Items per BC page (`Prefer: odata.maxpagesize`).", minimum=1)
    item_pull_max_seconds: float = setting("ITEM_PULL_MAX_SECONDS", "480",
                                           "A pull run stops after this long and checkpoints; the next run "
                                           "resumes.")
    cursor_overlap_seconds: float = setting("CURSOR_OVERLAP_SECONDS", "60",
                                            "Incremental reads go back this far before the cursor (clock "
                                            "skew, SQL rounding).")
    event_publish_concurrency: int = setting("EVENT_PUBLISH_CONCURRENCY", "16",
                                             "Queue sends in flight at once when emitting events.", minimum=1)
    event_max_inline_bytes: int = setting("EVENT_MAX_INLINE_BYTES", "60000",
                                          "Larger events carry their data in blob storage (`dataref`); queue "
                                          "limit is 64 KiB.", minimum=1024)
    dedupe_ttl_days: float = setting("DEDUPE_TTL_DAYS", "14",
                                     "How long an entity that vanished before it could be read is remembered "
                                     "as gone (announced and pre-existing entities are remembered for good).")
    bc_limits: BCLimits = _nested(BCLimits)
    sales_order_ambiguity_seconds: float = setting(
        "SALES_ORDER_AMBIGUITY_SECONDS", "600",
        "After a sales-order POST with an unknown outcome (timeout, 5xx) that BC does not show, wait "
        "this long before sending it again: BC may still commit it (8-minute operation timeout).")
    sales_order_max_payload_bytes: int = setting(
        "SALES_ORDER_MAX_PAYLOAD_BYTES", "4194304",
        "Largest order blob a `sales-orders` message may reference (`dataref`, container "
        "`sales-order-payloads`); a larger one fails with `DataRefTooLarge`.", minimum=1)
    webhook_max_body_bytes: int = setting(
        "WEBHOOK_MAX_BODY_BYTES", "4194304",
        "Notification bodies declared larger (`Content-Length`) are acknowledged unread and logged "
        "as errors (the sweep recovers them). BC sends up to 1,000 notifications per subscription "
        "(~400 KB) in one POST for all subscriptions of a URL: three trigger subscriptions ~1.2 MB.",
        minimum=1024)
    functions_request_body_size_limit: int = setting(
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "8388608",
        "Read by the Functions host (and the local host): a request body larger than this gets 413 "
        "before any function sees it (Azure's default is 100 MB). Twice WEBHOOK_MAX_BODY_BYTES, so "
        "the receiver still acknowledges a genuine oversized BC bundle.", host_binding=True, minimum=1024)
    python_threadpool_thread_count: int = setting(
        "PYTHON_THREADPOOL_THREAD_COUNT", str(host_queue_concurrency() + HTTP_THREADS),
        "Read by the Python worker (and the local host): how many sync invocations run at once per "
        "worker. host.json's batchSize + newBatchThreshold plus 32 (the default is derived from it), "
        "so a queue function's whole batch runs at once and HTTP requests (BC's webhook handshakes, "
        "the status page) still find a thread; unset, the worker (Python 3.9+) allows "
        "min(32, CPUs + 4).", host_binding=True, minimum=1)
    auth_flow_ttl_seconds: int = setting("AUTH_FLOW_TTL_SECONDS", "600",
                                         "How long a started sign-in may take.", minimum=1)
    telemetry: TelemetrySettings = _nested(TelemetrySettings)

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url}/api/auth/callback"

    @property
    def notification_url(self) -> str:
        return f"{self.public_base_url}/api/webhooks/bc"

    @property
    def business_event_url(self) -> str:
        """Where BC sends business events (`?connection=<name>` is added per connection)."""
        return f"{self.public_base_url}/api/webhooks/bc/events"

    def connection(self, name: str | None) -> ConnectionSettings:
        key = name or DEFAULT_CONNECTION
        try:
            return self.connections[key]
        except UnknownConnection:
            raise  # the live catalogue says why (removed, an invalid row)
        except KeyError:
            raise UnknownConnection(key, tuple(self.connections)) from None

    def principal(self, name: str) -> ConnectionSettings:
        """A connection's principal by name: `default`, or an extra one such as `default.2`."""
        for principal in self.connection(name.partition(".")[0]).principals:
            if principal.name == name:
                return principal
        raise UnknownConnection(name, tuple(self.connections))


class UnknownConnection(ConnectorError, KeyError):
    """A connection name that BC_CONNECTIONS does not declare (a route answers 404)."""

    retryable = False
    http_status = 404

    def __init__(self, name: str, known: tuple[str, ...], reason: str = ""):
        super().__init__(name)
        self.name = name
        self.known = known
        self.reason = reason  # e.g. "is no longer configured (removed ...)"

    def __str__(self) -> str:
        if self.reason:
            return f"connection {self.name!r} {self.reason}"
        more = f", … ({len(self.known)} in all)" if len(self.known) > 10 else ""
        shown = ", ".join(self.known[:10]) + more
        return f"unknown connection {self.name!r} (configured: {shown})"


# ---- the catalogue and the reader, both derived from the fields above -----------------------------

def _declared(cls: type, per_connection: bool = False) -> Iterator[tuple[dataclasses.Field, Setting | None]]:
    """Each field of `cls` with its Setting (None for a nested object), in declaration order."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if spec is not None:
            yield f, dataclasses.replace(spec, per_connection=per_connection)
        elif "nested" in f.metadata:
            yield f, None


def _catalogue(cls: type = Settings, per_connection: bool = False) -> Iterator[Setting]:
    for f, spec in _declared(cls, per_connection):
        if spec is not None:
            yield spec
        else:
            nested = f.metadata["nested"]
            yield from _catalogue(nested, per_connection or nested is ConnectionSettings)


SETTINGS: tuple[Setting, ...] = tuple(_catalogue())
_BY_NAME = {s.name: s for s in SETTINGS}


def read(cls: type, env: Mapping[str, str], *, prefix: str = "", connection: str = "",
          **given: Any) -> Any:
    """An object of `cls` with each declared field read from `env` (the `prefix`ed name first);
    fields in `given` are taken as they are."""
    values = dict(given)
    for f, spec in _declared(cls, per_connection=bool(connection)):
        if f.name in values or spec is None:
            continue
        text = env.get(f"{prefix}__{spec.name}") if prefix else None
        if text is None:
            text = env.get(spec.name, spec.default)
        if spec.required and not (text or "").strip():
            where = f"{prefix}__{spec.name} or {spec.name}" if prefix else spec.name
            raise SettingsError(f"connection {connection!r}: setting {where} is required")
        values[f.name] = spec.parse(text or "", _kind(f.type))
    return cls(**values)


def seed_triggers(conn: ConnectionSettings) -> tuple[WatchedEntitySet, ...]:
    """The seed's webhook triggers with the connection's options (`PULL_*`, `*_CHANGE_TYPES`)."""
    def children(on: bool, name: str) -> tuple[str, ...]:
        return (name,) if on else ()

    return (
        WatchedEntitySet("items", QUEUE_ITEMS, "item", changes=conn.item_change_types,
                         expand=children(conn.pull_item_variants, "itemVariants")),
        WatchedEntitySet("salesShipments", QUEUE_SALES_SHIPMENTS, "salesShipment",
                         changes=conn.sales_shipment_change_types,
                         expand=children(conn.pull_sales_shipment_lines, "salesShipmentLines")),
        WatchedEntitySet("salesInvoices", QUEUE_SALES_INVOICES, "salesInvoice",
                         changes=conn.sales_invoice_change_types, draft=("status", "Draft"),
                         expand=children(conn.pull_sales_invoice_lines, "salesInvoiceLines")),
    )


def _connection(env: Mapping[str, str], name: str, prefix: str | None = None) -> ConnectionSettings:
    if prefix is None:
        prefix = "" if name == DEFAULT_CONNECTION else name.upper().replace("-", "_")
    try:
        conn = read(ConnectionSettings, env, prefix=prefix, connection=name, name=name)
        _check_credential(conn, prefix)
        setting_name = f"{prefix}__TRIGGERS" if prefix and f"{prefix}__TRIGGERS" in env else "TRIGGERS"
        triggers = parse_triggers(setting_name, conn.trigger_declarations, seed_triggers(conn))
        setting_name = f"{prefix}__COMMANDS" if prefix and f"{prefix}__COMMANDS" in env else "COMMANDS"
        commands = parse_commands(setting_name, conn.command_declarations)
        return dataclasses.replace(conn, triggers=triggers, commands=commands)
    except (SettingsError, DeclarationError) as e:
        if str(e).startswith("connection "):
            raise
        raise SettingsError(f"connection {name!r}: {e}") from None


def _check_credential(conn: ConnectionSettings, prefix: str) -> None:
    """A secret is needed unless the managed identity signs; an expiry date must be a date."""
    where = f"{prefix}__BC_CLIENT_SECRET or BC_CLIENT_SECRET" if prefix else "BC_CLIENT_SECRET"
    if conn.client_credential == "secret" and not conn.client_secret.strip():
        raise SettingsError(f"connection {conn.name!r}: setting {where} is required (or set "
                            "BC_CLIENT_CREDENTIAL=managed-identity and trust the app's managed identity)")
    if conn.client_secret_expires:
        try:
            date.fromisoformat(conn.client_secret_expires)
        except ValueError:
            raise SettingsError(f"connection {conn.name!r}: BC_CLIENT_SECRET_EXPIRES must be a date "
                                f"(YYYY-MM-DD), not {conn.client_secret_expires!r}") from None


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

# The settings a connection row may hold (`bcconnectiondefs`): the fields of ConnectionSettings.
CONNECTION_SETTINGS: tuple[Setting, ...] = tuple(spec for _, spec in _declared(ConnectionSettings, True)
                                                  if spec is not None)
CONNECTION_SECRETS: frozenset[str] = frozenset(s.name for s in CONNECTION_SETTINGS if s.secret)


def check_connection_name(name: str, where: str = "BC_CONNECTIONS") -> None:
    """SettingsError unless `name` is a valid connection name."""
    if not _NAME_RE.match(name):
        raise SettingsError(f"{where}: {name!r} is not a valid connection name (a-z, 0-9, -; at most 32)")


def check_connection_values(name: str, row: Mapping[str, str]) -> None:
    """SettingsError for a setting a connection row may not hold, or a value its setting refuses
    (what can be checked without the app settings the row falls back to)."""
    fields = {spec.name: (spec, f) for f, spec in _declared(ConnectionSettings, True) if spec is not None}
    unknown = sorted(set(row) - set(fields))
    if unknown:
        raise SettingsError(f"connection {name!r}: {', '.join(unknown)} is no per-connection setting "
                            f"(those are: {', '.join(sorted(fields))})")
    for key, text in row.items():
        spec, f = fields[key]
        try:
            spec.parse(str(text), _kind(f.type))
        except SettingsError as exc:
            raise SettingsError(f"connection {name!r}: {exc}") from None


def table_connection(env: Mapping[str, str], name: str, row: Mapping[str, str]) -> ConnectionSettings:
    """The connection a row of `bcconnectiondefs` declares: `row` holds per-connection settings by
    name (BC_TENANT, ...; secrets already resolved), read like `NAME__X` app settings (an unset one
    falls back to the plain app setting), with the same validation. SettingsError naming the fault."""
    check_connection_name(name, f"connection table row {name!r}")
    check_connection_values(name, row)
    prefix = name.upper().replace("-", "_")
    values = {k: v for k, v in env.items() if not k.startswith(f"{prefix}__")}  # the row, not these
    values.update({f"{prefix}__{k}": str(v) for k, v in row.items()})
    try:
        return _connection(values, name, prefix)
    except SettingsError as exc:
        raise SettingsError(str(exc).replace(f"{prefix}__", "the row's ")) from None


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


def load_telemetry_settings(env: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Only the telemetry part (the host's APPLICATIONINSIGHTS_* settings and TELEMETRY_EXPORTER)."""
    env = os.environ if env is None else env
    telemetry = read(TelemetrySettings, env,
                      connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip(),
                      authentication_string=env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").strip())
    return dataclasses.replace(telemetry, exporter="") if telemetry.exporter == "none" else telemetry


def environment_values() -> dict[str, str]:
    """A copy of the process environment (what `doctor` inspects, e.g. unresolved Key Vault references)."""
    return dict(os.environ)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises SettingsError naming the culprit."""
    env = os.environ if env is None else env
    names = _BY_NAME["BC_CONNECTIONS"].parse(env.get("BC_CONNECTIONS", DEFAULT_CONNECTION), tuple[str, ...])
    for n in names:
        check_connection_name(n)
    public = env.get("PUBLIC_BASE_URL", "").strip().rstrip("/")
    if not public:
        host = env.get("WEBSITE_HOSTNAME", "").strip()
        public = f"https://{host}" if host else "http://127.0.0.1:7071"
    settings = read(
        Settings, env,
        storage=load_storage_settings(env),
        connection_names=names,
        connections={n: _connection(env, n) for n in names},
        public_base_url=public,
        values=dict(env),
        bc_limits=read(BCLimits, env),
        telemetry=load_telemetry_settings(env),
    )
    refuse_example_key(settings)
    return settings


def _on_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host.startswith("127.") or host == "::1"


def refuse_example_key(settings: Settings) -> None:
    """SettingsError when TOKEN_ENCRYPTION_KEY holds the published example key while a connection
    talks to a host other than loopback (Microsoft's Entra ID and BC): anyone could open its tokens."""
    example = _BY_NAME["TOKEN_ENCRYPTION_KEY"].local
    if example not in settings.token_encryption_keys:
        return
    for conn in settings.connections.values():
        if not (_on_loopback(conn.authority_host) and _on_loopback(conn.api_host)):
            raise SettingsError(
                f"TOKEN_ENCRYPTION_KEY: the example key from local.settings.example.json is public and is "
                f"refused for connection {conn.name!r}, which talks to {conn.authority_host} and "
                f"{conn.api_host}; generate a key of your own: python -c \"from cryptography.fernet "
                f"import Fernet; print(Fernet.generate_key().decode())\"")


def host_max_dequeue_count(host_json: Path = HOST_JSON) -> int:
    """`extensions.queues.maxDequeueCount` of host.json (the host's default 5 if absent)."""
    return int(_host_queues(host_json).get("maxDequeueCount", 5))


def environment_value(name: str, default: str = "") -> str:
    """A variable of the environment outside the app settings, for tools (the CLI's `FUNCTION_KEY`,
    `NO_COLOR`, `PUBLIC_BASE_URL` when no settings file is named)."""
    return os.environ.get(name, default)
