"""`python -m connector doctor`: the go-live checklist, each failure with its fix.

Runs against the configured BC (real or emulated), with the connection's own settings and sign-in:
settings that look like the emulator's against Microsoft hosts, storage and Key Vault references,
the token for the connection's grant and what it grants, the companies BC shows, BC permission for
webhooks and business events, a real handshake to the public notification URL (a temporary
subscription, deleted after), and the clock against BC's. Exit code 0 only when every check passes.
"""
from __future__ import annotations

import base64
import email.utils
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from connector.auth.crypto import TokenCipher
from connector.bc.client import BCClient
from connector.bc.errors import BCError
from connector.errors import ConnectorError
from connector.settings import (
    BC_SCOPE,
    QUEUE_NOTIFICATIONS,
    TABLE_CONNECTIONS,
    ConnectionSettings,
    Settings,
    SettingsError,
)
from connector.storage import Storage

# What the bundled emulator and the example settings use: against Microsoft's hosts they are a mistake.
EMULATOR_CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
EMULATOR_SECRET = "emulator-secret"
EMULATOR_TENANT = "lmints.io"
EXAMPLE_ENCRYPTION_KEY = "9vojfjfiSnHXn6bFONOibYRAB7MW-UIPY24Iz20cIPs="
MICROSOFT_SUFFIXES = (".microsoftonline.com", ".dynamics.com", ".microsoft.com")
APP_ROLES = frozenset({"API.ReadWrite.All", "Automation.ReadWrite.All"})
DELEGATED_SCOPES = frozenset({"Financials.ReadWrite.All", "user_impersonation"})
MAX_SKEW_SECONDS = 60.0
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


@dataclass(frozen=True)
class Check:
    """One line of the checklist: what, whether it passed, what was seen, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class DoctorContext:
    """What the checks use: settings, storage, tokens and BC clients (the CLI builds them)."""

    settings: Settings
    storage: Storage
    access_token: Callable[[str, bool], str]
    bc: Callable[[str], BCClient]
    company_id: Callable[[str], str]
    environ: Mapping[str, str] = field(default_factory=dict)


# ---- pure checks ---------------------------------------------------------------------------------

def is_microsoft_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host.endswith(suffix) for suffix in MICROSOFT_SUFFIXES)


def emulator_lookalikes(conn: ConnectionSettings, settings: Settings) -> list[str]:
    """Settings of the emulator or the example file used against Microsoft's hosts (pure)."""
    if not (is_microsoft_host(conn.api_host) or is_microsoft_host(conn.authority_host)):
        return []
    found = []
    if conn.client_id == EMULATOR_CLIENT_ID:
        found.append("BC_CLIENT_ID is the emulator's app")
    if conn.client_secret == EMULATOR_SECRET:
        found.append("BC_CLIENT_SECRET is the emulator's secret")
    if conn.tenant.lower() == EMULATOR_TENANT:
        found.append("BC_TENANT is the emulator's tenant")
    if EXAMPLE_ENCRYPTION_KEY in settings.token_encryption_keys:
        found.append("TOKEN_ENCRYPTION_KEY is the public example key")
    if "emulator" in settings.tls_ca_bundle:
        found.append("TLS_CA_BUNDLE trusts the emulator's CA")
    if is_microsoft_host(conn.api_host) != is_microsoft_host(conn.authority_host):
        found.append("BC_API_HOST and ENTRA_AUTHORITY_HOST point at different worlds")
    return found


def public_url_problem(url: str, real_bc: bool) -> str:
    """Why BC could not call this notification URL ('' when it may)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if real_bc and parts.scheme != "https":
        return "BC calls only https URLs"
    if real_bc and (host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local")):
        return "a loopback address is not reachable from BC's data centre"
    return ""


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (to read what Entra granted; never for a trust decision)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def grant_check(conn: ConnectionSettings, claims: Mapping[str, Any]) -> Check:
    """The token is for BC and carries the app role (client credentials) or scope (sign-in) it needs."""
    audience = str(claims.get("aud", "")).rstrip("/")
    if audience != BC_SCOPE.rsplit("/", 1)[0]:
        return Check("token grants", False, f"the token is for {audience or 'an unknown audience'}",
                     "ask for the scope https://api.businesscentral.dynamics.com/.default (BC_TENANT and "
                     "the app registration's API permissions: Dynamics 365 Business Central)")
    if conn.uses_code_flow:
        scopes = set(str(claims.get("scp", "")).split())
        if scopes & DELEGATED_SCOPES:
            return Check("token grants", True, f"delegated scopes {' '.join(sorted(scopes))}")
        return Check("token grants", False, f"delegated scopes {' '.join(sorted(scopes)) or 'none'}",
                     "add the delegated permission Dynamics 365 Business Central / Financials.ReadWrite.All "
                     "to the app registration and sign in again")
    roles = set(claims.get("roles") or [])
    if roles & APP_ROLES:
        return Check("token grants", True, f"app roles {' '.join(sorted(roles))}")
    return Check("token grants", False, f"app roles {' '.join(sorted(roles)) or 'none'}",
                 "add the application permission Dynamics 365 Business Central / API.ReadWrite.All to the "
                 "app registration and grant admin consent")


def clock_check(bc_date: str | None, now: datetime) -> Check:
    """Our clock against BC's `Date` header."""
    if not bc_date:
        return Check("clock", True, "BC sent no Date header; not compared")
    skew = (now - email.utils.parsedate_to_datetime(bc_date)).total_seconds()
    if abs(skew) <= MAX_SKEW_SECONDS:
        return Check("clock", True, f"{skew:+.0f} s from BC's clock")
    return Check("clock", False, f"{skew:+.0f} s from BC's clock (more than {MAX_SKEW_SECONDS:.0f} s)",
                 "synchronise this machine's clock (NTP): tokens, subscription renewal and the sweep "
                 "overlap depend on it")


def unresolved_key_vault(environ: Mapping[str, str]) -> list[str]:
    """Settings still holding a Key Vault reference: the platform could not resolve them."""
    return sorted(name for name, value in environ.items() if str(value).startswith(KEY_VAULT_REFERENCE))


# ---- the checklist -------------------------------------------------------------------------------

def _bc_fix(exc: BCError, what: str) -> str:
    if exc.status in (401, 403):
        return (f"give the app's user in BC (page Microsoft Entra Applications) a permission set allowing "
                f"{what}, e.g. D365 AUTOMATION, and grant consent in BC")
    if exc.status == 404:
        return "check BC_ENVIRONMENT (the environment name in the BC admin center) and BC_TENANT"
    return "BC did not answer as expected; try again, and check BC's service health"


def connection_checks(ctx: DoctorContext, conn: ConnectionSettings) -> Iterator[Check]:
    """The checks of one connection, in order; later ones are skipped when an earlier one makes
    them meaningless (no token, no company)."""
    lookalikes = emulator_lookalikes(conn, ctx.settings)
    if lookalikes:
        yield Check("settings", False, "; ".join(lookalikes) + " (against Microsoft's hosts)",
                    "set the real tenant, app registration, secret and a new TOKEN_ENCRYPTION_KEY; drop "
                    "TLS_CA_BUNDLE (local.settings.json holds the emulator's values)")
        yield Check("BC checks", False, "not run against Microsoft with the emulator's settings",
                    "fix the settings above first")
        return
    yield Check("settings", True, f"{conn.grant_type}, {conn.client_credential}, tenant {conn.tenant}, "
                                  f"environment {conn.environment}")
    try:
        token = ctx.access_token(conn.name, True)
    except ConnectorError as exc:
        yield Check("token", False, str(exc), getattr(exc, "fix", "") or "check the app registration and "
                    "the BC_* settings of this connection")
        return
    yield Check("token", True, f"{conn.grant_type} token from {conn.authority}")
    yield grant_check(conn, token_claims(token))
    for extra in conn.principals[1:]:  # the connection's other app registrations (BC_EXTRA_CLIENT_IDS)
        try:
            claims = token_claims(ctx.access_token(extra.name, True))
        except ConnectorError as exc:
            yield Check(f"token of {extra.client_id}", False, str(exc), getattr(exc, "fix", "") or
                        "check BC_EXTRA_CLIENT_IDS / BC_EXTRA_CLIENT_SECRETS of this connection")
            continue
        grants = grant_check(extra, claims)
        yield Check(f"token of {extra.client_id}", grants.ok, grants.detail, grants.fix)
    bc = ctx.bc(conn.name)
    try:
        first = next(bc.pages("companies"))
        names = [str(c.get("name", "")) for c in first.entities]
    except BCError as exc:
        yield Check("companies", False, str(exc), _bc_fix(exc, "reading companies"))
        return
    if not names:
        yield Check("companies", False, "BC shows no company to this principal",
                    "give the app's BC user access to a company (permission sets per company)")
        return
    try:
        company_id = ctx.company_id(conn.name)
    except ConnectorError as exc:
        yield Check("companies", False, str(exc),
                    "set BC_COMPANY to one of them (id or name), or leave it empty for the first")
        return
    yield Check("companies", True, f"{len(names)} visible ({', '.join(names)}); using {company_id}")
    yield clock_check(first.headers.get("Date"), datetime.now(UTC))
    try:
        bc.get("subscriptions")
        yield Check("webhook permission", True, "BC lists the environment's subscriptions")
    except BCError as exc:
        yield Check("webhook permission", False, str(exc), _bc_fix(exc, "API webhook subscriptions"))
        return
    yield business_events_check(bc)
    yield handshake_check(ctx, conn, bc, company_id)


def business_events_check(bc: BCClient) -> Check:
    """BC lets the principal read the business-event catalogue (subscribing needs the same set)."""
    url = f"{bc.environment_root}/api/microsoft/runtime/v1.0/externalbusinesseventdefinitions"
    try:
        bc.get(url, params={"$top": "1"})
    except BCError as exc:
        if exc.status == 404:
            return Check("business events permission", True,
                         "this BC does not offer external business events; webhooks and the sweep only")
        return Check("business events permission", False, str(exc),
                     "give the app's BC user the permission set Ext. Events - Subscr (and read on the "
                     "events' data)" if exc.status in (401, 403) else _bc_fix(exc, "business events"))
    return Check("business events permission", True, "BC shows its business-event catalogue")


def handshake_check(ctx: DoctorContext, conn: ConnectionSettings, bc: BCClient, company_id: str) -> Check:
    """A real handshake: a temporary subscription to the public notification URL, deleted after."""
    from connector.bc.keys import subscription_path
    from connector.webhooks.subscription_plan import notification_url

    url = notification_url(ctx.settings, conn.name)
    problem = public_url_problem(url, is_microsoft_host(conn.api_host))
    fix = ("set PUBLIC_BASE_URL to this app's public https URL (in Azure: https://<app>.azurewebsites.net) "
           "and make sure the app answers within seconds (warm instance: alwaysReadyHttpInstances)")
    if problem:
        return Check("notification URL", False, f"{url}: {problem}", fix)
    body = {"notificationUrl": url, "resource": f"companies({company_id})/items",
            "clientState": f"doctor-{secrets.token_hex(8)}"}
    try:
        sub = bc.post("subscriptions", body)
    except BCError as exc:
        return Check("notification URL", False, f"BC's handshake to {url} failed: {exc}", fix)
    try:
        bc.delete(subscription_path(sub["subscriptionId"]), sub.get("@odata.etag") or "*")
    except BCError as exc:
        return Check("notification URL", True, f"BC reached {url}; the temporary subscription "
                     f"{sub['subscriptionId']} was not deleted ({exc}): it expires in 3 days")
    return Check("notification URL", True, f"BC reached {url} (handshake answered; test subscription "
                                          "deleted)")


def app_checks(ctx: DoctorContext) -> Iterator[Check]:
    """The checks that are not per connection: Key Vault references, the encryption key, storage."""
    unresolved = unresolved_key_vault(ctx.environ)
    if unresolved:
        yield Check("Key Vault", False, f"{', '.join(unresolved)} still hold a Key Vault reference",
                    "give the app's identity the role Key Vault Secrets User on the vault, and check the "
                    "secret names exist")
    else:
        yield Check("Key Vault", True, "every secret setting has a value")
    try:
        TokenCipher(ctx.settings.token_encryption_keys)
        yield Check("TOKEN_ENCRYPTION_KEY", True, f"{len(ctx.settings.token_encryption_keys)} key(s)")
    except SettingsError as exc:
        yield Check("TOKEN_ENCRYPTION_KEY", False, str(exc),
                    "generate one: python -c \"from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())\"")
    try:
        list(ctx.storage.table(TABLE_CONNECTIONS, retry_total=0).query_entities(
            "PartitionKey eq 'doctor'", results_per_page=1))
        ctx.storage.queue(QUEUE_NOTIFICATIONS, retry_total=0).get_queue_properties()
        yield Check("storage", True, "tables and queues answer")
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        yield Check("storage", False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    "check AzureWebJobsStorage (locally: is Azurite running?); in Azure the identity needs "
                    "Storage Table/Queue/Blob Data Contributor")


def run_checks(ctx: DoctorContext, connection: str | None = None) -> list[tuple[str, Check]]:
    """Every check: (scope, check) pairs, the app's first, then each connection's (or just one)."""
    results = [("app", check) for check in app_checks(ctx)]
    names = [ctx.settings.connection(connection).name] if connection else list(ctx.settings.connections)
    for name in names:
        results += [(name, check) for check in connection_checks(ctx, ctx.settings.connection(name))]
    return results


def render(results: list[tuple[str, Check]]) -> str:
    """The checklist as text: one line per check, the fix under each failure, a verdict last."""
    lines = []
    for scope, check in results:
        mark = "PASS" if check.ok else "FAIL"
        lines.append(f"[{mark}] {scope}: {check.name} — {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"       fix: {check.fix}")
    failed = sum(1 for _, c in results if not c.ok)
    lines.append("all checks passed: ready to go live" if not failed else
                 f"{failed} check(s) failed: fix them and run doctor again")
    return "\n".join(lines)
