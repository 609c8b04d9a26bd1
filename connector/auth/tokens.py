"""Access tokens for BC per connection, with msal: the token plumbing behind every BC call.

The shared encrypted token cache, what a refused refresh token does, the `state` row and the
remembered Entra refusals (one token request a minute, across instances): docs/architecture.md
("Tokens").
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msal
import requests
from azure.data.tables import UpdateMode

from connector.auth.assertion import AssertionUnavailable, ManagedIdentityAssertion
from connector.auth.crypto import SealedDataError, TokenCipher, cipher_for
from connector.auth.token_store import TokenStore
from connector.bc.errors import BCError, TokenUnavailable
from connector.errors import ConnectorError
from connector.health.events import SIGN_IN_NEEDED, TOKEN_FAILING, HealthEvents
from connector.retry import RetryPolicy
from connector.settings import BC_SCOPE, TABLE_CONNECTIONS, ConnectionSettings, Settings
from connector.storage import Storage, read_entity

log = logging.getLogger(__name__)

class _TokenEventDumps(logging.Filter):
    """Drops msal's DEBUG dump of every token event (`event=...`): it masks tokens but shows the
    authorization code and PKCE verifier."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("event="))


logging.getLogger("msal.token_cache").addFilter(_TokenEventDumps())

MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
BC_RESOURCE = BC_SCOPE.rsplit("/", 1)[0].lower()
SAVE_ATTEMPTS = 3
ENTRA_TIMEOUT_SECONDS = 30.0
# Entra errors that only a new interactive sign-in cures (RFC 6749 §5.2, OIDC Core §3.1.2.6).
SIGN_IN_ERRORS = frozenset({"invalid_grant", "interaction_required", "login_required", "consent_required"})
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
FIRST_BACKOFF = timedelta(minutes=1)  # after a refusal, the next token request waits this long...
MAX_BACKOFF = timedelta(minutes=8)  # ...doubling up to this (no jitter: the wait is shown and stored)
REFUSAL_BACKOFF = RetryPolicy(backoff_seconds=FIRST_BACKOFF.total_seconds(),
                              backoff_max_seconds=MAX_BACKOFF.total_seconds())
VERIFY_INTERVAL = timedelta(minutes=1)  # `verify` asks Entra at most this often per connection
# Token states (`token_state` in the connection's `state` row, `token.state` in /api/status)
OK = "ok"
NOT_SIGNED_IN = "not-signed-in"  # authorization code: nobody signed in (under this grant type)
REFRESH_FAILED = "refresh-failed"  # authorization code: Entra refused the signed-in user's refresh token
CREDENTIALS_REFUSED = "credentials-refused"  # Entra refused the app's secret or client assertion
FAILED_STATES = frozenset({REFRESH_FAILED, CREDENTIALS_REFUSED})


class TokenEndpointUnavailable(BCError):
    """Entra ID could not be reached or failed temporarily; trying again later can help."""

    token_failure = True

    def __init__(self, connection: str, detail: str):
        super().__init__(f"connection {connection!r}: token endpoint unavailable ({detail})",
                         retryable=True)


# ---- pure decisions ------------------------------------------------------------------------------

def describe_token_error(result: Mapping[str, Any] | None) -> str:
    """`invalid_grant (AADSTS50173)`: the error code and Entra's number, never a description or token."""
    if not result:
        return "no refresh token in the cache"
    error = str(result.get("error") or "unknown_error")
    codes = result.get("error_codes") or []
    return f"{error} (AADSTS{codes[0]})" if codes else error


def token_failure_kind(result: Mapping[str, Any] | None) -> str:
    """`sign-in` (only a new sign-in helps), `transient` (retry later) or `config` (fix the app
    registration or settings) for a failed msal token request."""
    error = str((result or {}).get("error") or "")
    if result is None or error in SIGN_IN_ERRORS:
        return "sign-in"
    if error in TRANSIENT_ERRORS:
        return "transient"
    return "config"


@dataclass(frozen=True)
class TokenFailure:
    """Entra's last refusal for a connection: why, what fixes it, and when to ask again."""

    reason: str
    fix: str
    attempts: int
    retry_at: datetime

    def message(self) -> str:
        after = self.retry_at.isoformat(timespec="seconds")
        return f"{self.reason}; {self.fix}; next token request after {after}"


def token_fix(conn: ConnectionSettings, kind: str, sign_in_url: str) -> str:
    """What an operator does about a refused token request."""
    if kind == "sign-in" and conn.uses_code_flow:
        return f"sign in again at {sign_in_url}"
    if "." in conn.name:  # an extra principal of a connection
        base, number = conn.name.split(".", 1)
        return (f"check entry {int(number) - 1} of BC_EXTRA_CLIENT_SECRETS (and BC_EXTRA_CLIENT_IDS, "
                f"BC_TENANT) of connection {base!r}: Entra refused client {conn.client_id}'s credentials")
    if conn.client_credential == "managed-identity":
        return (f"check the app registration {conn.client_id} trusts this Function App's managed identity "
                "(federated credential: issuer https://login.microsoftonline.com/<tenant>/v2.0, subject the "
                "identity's principal id, audience api://AzureADTokenExchange) and BC_TENANT of connection "
                f"{conn.name!r}")
    return (f"check BC_CLIENT_SECRET (and BC_CLIENT_ID, BC_TENANT) of connection {conn.name!r}: Entra "
            "refused the app's credentials; a new secret is made under the app registration's "
            "Certificates & secrets")


def failed_state(conn: ConnectionSettings) -> str:
    """The state a refused token request leaves: a user's refresh token, or the app's credentials."""
    return REFRESH_FAILED if conn.uses_code_flow else CREDENTIALS_REFUSED


def credential_fingerprint(conn: ConnectionSettings) -> str:
    """Which credentials a remembered refusal was for (a changed secret is asked about at once);
    a truncated hash, never the secret."""
    credential = conn.client_secret if conn.client_credential == "secret" else (
        f"managed-identity:{conn.managed_identity_client_id}")
    material = f"bc-connector token refusal|{conn.authority}|{conn.client_id}|{credential}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def shared_failure(row: Mapping[str, Any] | None, fingerprint: str) -> TokenFailure | None:
    """The refusal another instance recorded in the connection's `state` row, if it was for the
    same credentials."""
    if not row or row.get("token_state") not in FAILED_STATES or row.get("token_credential") != fingerprint:
        return None
    try:
        retry_at = datetime.fromisoformat(str(row.get("token_retry_at", "")))
    except ValueError:
        return None
    return TokenFailure(str(row.get("token_error", "")), str(row.get("token_fix", "")),
                        int(row.get("token_attempts", 1) or 1), retry_at)


class _RefusedElsewhere(ConnectorError):
    """Another instance's refusal for these credentials still holds: do not ask Entra."""

    def __init__(self, failure: TokenFailure):
        super().__init__(failure.reason)
        self.failure = failure


def next_failure(previous: TokenFailure | None, reason: str, fix: str, now: datetime) -> TokenFailure:
    """The failure to remember after a refusal: the back-off doubles from FIRST_BACKOFF to MAX_BACKOFF."""
    attempts = (previous.attempts if previous else 0) + 1
    wait = timedelta(seconds=REFUSAL_BACKOFF.ceiling(attempts - 1))
    return TokenFailure(reason, fix, attempts, now + wait)


def silent_scopes(granted_targets: Iterable[str]) -> list[str]:
    """The scopes to ask msal for silently: the BC scopes Entra granted (from the refresh token's
    target), else `.default`. msal files tokens under the scopes Entra answers, which for `.default`
    are the consented permissions; asking for `.default` again would miss the cached access token
    and redeem the refresh token on every call (msal-python issue #450)."""
    for target in granted_targets:
        scopes = sorted(s for s in target.split() if s.lower().startswith(f"{BC_RESOURCE}/"))
        if scopes:
            return scopes
    return [BC_SCOPE]


def compact_cache(serialized: str) -> str:
    """msal's serialized cache without its indentation (table properties are limited to 64 KiB)."""
    return json.dumps(json.loads(serialized), separators=(",", ":")) if serialized else ""


# ---- access tokens -------------------------------------------------------------------------------

class _EntraSession(requests.Session):
    """msal's HTTP session: `verify` is passed on every request, because requests otherwise lets
    REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override `Session.verify` (TLS_CA_BUNDLE would be ignored);
    and no call to Entra waits forever."""

    def __init__(self, verify: bool | str, before_token_request: Callable[[], None] | None = None):
        super().__init__()
        self.verify = verify
        self._before_token_request = before_token_request

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        if self._before_token_request is not None and str(method).upper() == "POST":
            self._before_token_request()  # msal's only POSTs go to the token endpoint
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", ENTRA_TIMEOUT_SECONDS)
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]


@dataclass
class _ConnectionTokens:
    """One connection's msal app and cache in this instance, and what it last loaded and reported."""

    cache: msal.SerializableTokenCache = field(default_factory=msal.SerializableTokenCache)
    settings: ConnectionSettings | None = None  # what the app was built from (a change starts afresh)
    app: msal.ConfidentialClientApplication | None = None
    etag: str | None = None  # of the `bctokens` row the cache was loaded from or saved as
    loaded: bool = False
    reported: tuple[str, str] | None = None  # (token_state, token_error + retry time) last written
    failure: TokenFailure | None = None  # Entra's last refusal, remembered until its retry_at
    verified_at: datetime | None = None  # when `verify` last asked Entra
    lock: threading.Lock = field(default_factory=threading.Lock)


class TokenService:
    """Access tokens per connection; the sign-in (`auth/signin.py`) stores its tokens through it."""

    def __init__(self, settings: Settings, storage: Storage,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 health: HealthEvents | None = None,
                 assertion: Callable[[ConnectionSettings], Callable[[], str]] | None = None,
                 reread: Callable[[str], bool] | None = None):
        """`reread(connection)`: read a connection's settings again, its secrets fresh from Key Vault,
        after Entra refused them (True when they changed: asked again at once)."""
        self.settings = settings
        self._reread = reread
        self.storage = storage
        self.clock = clock
        self.health = health
        self._assertion = assertion or (lambda conn: ManagedIdentityAssertion(
            conn.managed_identity_client_id or settings.storage.client_id, settings.tls_ca_bundle or True))
        self._connections: dict[str, _ConnectionTokens] = {}
        self._lock = threading.Lock()
        self._cipher: TokenCipher | None = None
        self._versions: dict[str, int] = {}  # highest token-row version seen per connection

    # -- plumbing --
    def _tokens(self, conn: ConnectionSettings) -> _ConnectionTokens:
        """The connection's token state; a fresh one when its settings changed (a new tenant, secret)."""
        with self._lock:
            tokens = self._connections.get(conn.name)
            if tokens is None or (tokens.settings is not conn and tokens.settings != conn):
                tokens = self._connections[conn.name] = _ConnectionTokens(settings=conn)
            return tokens

    def cipher(self, why: str) -> TokenCipher:
        """The cipher; SettingsError saying `why` it is needed when TOKEN_ENCRYPTION_KEY is unusable."""
        if self._cipher is None:
            self._cipher = cipher_for(self.settings, why)
        return self._cipher

    def _store(self, conn: ConnectionSettings) -> TokenStore | None:
        """Where the connection's cache persists; None = memory only (client credentials, no key)."""
        if not conn.uses_code_flow and not self.settings.token_encryption_keys:
            return None
        return TokenStore(self.storage, self.cipher(
            f"connection {conn.name!r} keeps its tokens encrypted in table storage"), seen=self._versions)

    def new_app(self, conn: ConnectionSettings, cache: msal.SerializableTokenCache,
                before_token_request: Callable[[], None] | None = None) -> msal.ConfidentialClientApplication:
        """An msal app (its constructor fetches the authority's OpenID configuration)."""
        try:
            credential: str | dict[str, Any] = conn.client_secret
            if conn.client_credential == "managed-identity":
                credential = {"client_assertion": self._assertion(conn)}  # msal calls it per request
            return msal.ConfidentialClientApplication(
                conn.client_id,
                client_credential=credential,
                authority=conn.authority,
                instance_discovery=conn.authority_host.rstrip("/") == MICROSOFT_AUTHORITY_HOST,
                token_cache=cache,
                http_client=_EntraSession(self.settings.tls_ca_bundle or True, before_token_request),
            )
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(conn.name, type(exc).__name__) from None
        except ValueError as exc:  # msal: the authority is malformed or unknown
            raise TokenUnavailable(conn.name, "refresh-failed",
                                   f"authority {conn.authority}: {exc}") from None

    def _app(self, conn: ConnectionSettings, tokens: _ConnectionTokens) -> msal.ConfidentialClientApplication:
        if tokens.app is None:
            tokens.app = self.new_app(conn, tokens.cache, lambda: self._raise_if_refused_elsewhere(conn))
        return tokens.app

    def _stored_failure(self, conn: ConnectionSettings) -> TokenFailure | None:
        row = read_entity(self.storage.table(TABLE_CONNECTIONS), conn.name, "state")
        return shared_failure(row[0] if row else None, credential_fingerprint(conn))

    def _raise_if_refused_elsewhere(self, conn: ConnectionSettings) -> None:
        failure = self._stored_failure(conn)
        if failure is not None and self.clock() < failure.retry_at:
            raise _RefusedElsewhere(failure)

    def _write_state(self, conn: ConnectionSettings, values: dict[str, Any]) -> None:
        self.storage.table(TABLE_CONNECTIONS).upsert_entity(
            {"PartitionKey": conn.name, "RowKey": "state", **values}, mode=UpdateMode.MERGE)

    def _report(self, conn: ConnectionSettings, tokens: _ConnectionTokens, state: str, error: str,
                fix: str = "", retry_at: str = "", attempts: int = 0) -> None:
        """Record the connection's token state for /api/status (and the other instances) when it
        differs from the last report; a new failure is also a health event."""
        if tokens.reported != (state, error + retry_at):
            self._write_state(conn, {"token_state": state, "token_error": error, "token_fix": fix,
                                     "token_retry_at": retry_at, "token_attempts": attempts,
                                     "token_grant": conn.grant_type,
                                     "token_credential": credential_fingerprint(conn) if retry_at else ""})
            tokens.reported = (state, error + retry_at)
            if state != OK:
                self._report_health(conn, state, error, fix)

    def _report_health(self, conn: ConnectionSettings, state: str, error: str, fix: str) -> None:
        """One health event per failure (state, credentials and cause) a day."""
        if self.health is None:
            return
        kind = SIGN_IN_NEEDED if state in (NOT_SIGNED_IN, REFRESH_FAILED) else TOKEN_FAILING
        day = self.clock().date().isoformat()
        self.health.emit(kind, connection=conn.name, company_id=conn.company,
                         occurrence=f"{state}:{credential_fingerprint(conn)}:{error}:{day}",
                         summary=f"no token for BC: {state} ({error or 'nobody signed in'})", fix=fix,
                         details={"tokenState": state, "error": error})

    def _signed_out_state(self, conn: ConnectionSettings) -> str:
        """`refresh-failed` when this grant's sign-in was lost to a refused refresh token, else
        `not-signed-in` (also when the recorded state belongs to another grant type)."""
        row = read_entity(self.storage.table(TABLE_CONNECTIONS), conn.name, "state")
        saved = row[0] if row else {}
        same_grant = saved.get("token_grant", conn.grant_type) == conn.grant_type
        return REFRESH_FAILED if same_grant and saved.get("token_state") == REFRESH_FAILED else NOT_SIGNED_IN

    # -- tokens --
    def access_token(self, connection: str, force_refresh: bool = False) -> str:
        """A bearer token for BC. `force_refresh`: the last one was refused, get a new one.

        Raises TokenUnavailable (not signed in, refresh token refused, app misconfigured) or
        TokenEndpointUnavailable (Entra unreachable; retryable). Refused credentials are read again
        first (`reread`: a secret rotated in Key Vault) and, if they changed, asked about at once.
        """
        try:
            return self._access_token(connection, force_refresh)
        except TokenUnavailable as exc:
            if (exc.state not in FAILED_STATES or self._reread is None
                    or not self._reread(connection.partition(".")[0])):
                raise
            log.info("tokens %s: credentials changed after a refusal; asking Entra again", connection)
        return self._access_token(connection, force_refresh)

    def _access_token(self, connection: str, force_refresh: bool) -> str:
        conn = self.settings.principal(connection)
        tokens = self._tokens(conn)
        with tokens.lock:
            failure = tokens.failure
            if failure is not None and self.clock() < failure.retry_at:
                raise TokenUnavailable(conn.name, failed_state(conn), failure.message(), failure.fix)
            for _ in range(SAVE_ATTEMPTS):
                if not tokens.loaded:
                    self._load(conn, tokens)
                token = self._acquire(conn, tokens, force_refresh)
                if token is not None and self._persist(conn, tokens):
                    self._report(conn, tokens, OK, "")
                    return token
                log.info("tokens %s: another instance changed the token cache first; reloading", conn.name)
                tokens.loaded = False
                force_refresh = False  # the cache we reload was just written by a fresh acquisition
            raise TokenEndpointUnavailable(conn.name, "the token cache kept changing concurrently")

    def _load(self, conn: ConnectionSettings, tokens: _ConnectionTokens) -> None:
        store = self._store(conn)
        stored, etag = None, None
        if store is not None:
            try:
                stored = store.load(conn.name)
            except SealedDataError as exc:
                if conn.uses_code_flow:
                    fix = f"sign in again at {login_url(self.settings, conn.name)}"
                    raise TokenUnavailable(conn.name, NOT_SIGNED_IN, str(exc), fix) from None
                log.warning("tokens %s: %s; starting with an empty cache", conn.name, exc)
                etag = store.overwrite(conn.name, "")
        if stored is None and conn.uses_code_flow:
            state = self._signed_out_state(conn)
            raise TokenUnavailable(conn.name, state, fix=f"sign in at {login_url(self.settings, conn.name)}")
        tokens.cache.deserialize(stored.state if stored else None)
        tokens.etag = stored.etag if stored else etag
        tokens.loaded = True

    def _acquire(self, conn: ConnectionSettings, tokens: _ConnectionTokens,
                 force_refresh: bool) -> str | None:
        """A token from msal (cache, refresh token or secret); None when the cache must be reloaded."""
        try:
            app = self._app(conn, tokens)
            if conn.uses_code_flow:
                accounts = app.get_accounts()
                # list(): msal's search() holds the cache lock until its generator is exhausted
                refresh_tokens = list(tokens.cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN,
                                                          query={"client_id": conn.client_id}))
                if not accounts:  # a cache from another grant type (client credentials): no sign-in yet
                    fix = f"sign in at {login_url(self.settings, conn.name)}"
                    self._report(conn, tokens, NOT_SIGNED_IN, "", fix)
                    raise TokenUnavailable(conn.name, NOT_SIGNED_IN, fix=fix)
                scopes = silent_scopes(rt.get("target", "") for rt in refresh_tokens)
                result = app.acquire_token_silent_with_error(
                    scopes, account=accounts[0], force_refresh=force_refresh)
            else:
                if force_refresh:
                    app.remove_tokens_for_client()
                result = app.acquire_token_for_client(scopes=[BC_SCOPE])
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(conn.name, type(exc).__name__) from None
        except _RefusedElsewhere as refused:
            tokens.failure = refused.failure
            raise TokenUnavailable(conn.name, failed_state(conn), refused.failure.message(),
                                   refused.failure.fix) from None
        except AssertionUnavailable as exc:  # the managed identity gave no client assertion
            result = {"error": "managed_identity_unavailable", "error_description": str(exc)}
        if result and "access_token" in result:
            tokens.failure = None
            return str(result["access_token"])
        error = describe_token_error(result)
        if result and result.get("error") == "managed_identity_unavailable":
            error += f" ({result.get('error_description', '')})"
        kind = token_failure_kind(result)
        if kind == "transient":
            raise TokenEndpointUnavailable(conn.name, error)
        if kind == "sign-in" and conn.uses_code_flow and not self._sign_out(conn, tokens, error):
            return None
        fix = token_fix(conn, kind, login_url(self.settings, conn.name))
        log.error("tokens %s: Entra refused the token request: %s", conn.name, error)
        if (kind == "sign-in" and conn.uses_code_flow) or result is None:
            # nothing to remember: the tokens are gone, so no caller asks Entra until a new sign-in
            # (which another instance may complete at any time)
            self._report(conn, tokens, REFRESH_FAILED, error, fix)
            raise TokenUnavailable(conn.name, REFRESH_FAILED, error, fix)
        previous = tokens.failure or self._stored_failure(conn)
        tokens.failure = next_failure(previous, error, fix, self.clock())
        self._report(conn, tokens, failed_state(conn), error, fix, tokens.failure.retry_at.isoformat(),
                     tokens.failure.attempts)
        raise TokenUnavailable(conn.name, failed_state(conn), tokens.failure.message(), fix)

    def verify(self, connection: str) -> None:
        """Ask Entra for a fresh client-credentials token (at most once per VERIFY_INTERVAL, else the
        cached one), so a changed or revoked secret is seen now rather than when the cached token
        expires. Code-flow
        connections are left alone (their refresh token is checked on use). Raises like
        `access_token`."""
        conn = self.settings.principal(connection)
        if conn.uses_code_flow:
            return
        tokens = self._tokens(conn)
        now = self.clock()
        with tokens.lock:
            due = tokens.verified_at is None or now - tokens.verified_at >= VERIFY_INTERVAL
            if due:
                tokens.verified_at = now
        self.access_token(conn.name, force_refresh=due)

    def _sign_out(self, conn: ConnectionSettings, tokens: _ConnectionTokens, error: str) -> bool:
        """Delete tokens Entra refused; False if another instance changed them meanwhile (a new sign-in)."""
        store = self._store(conn)
        tokens.cache.deserialize(None)
        tokens.loaded = False
        if store is not None and tokens.etag is not None and not store.discard(conn.name, tokens.etag):
            return False
        tokens.etag = None
        log.warning("tokens %s: refresh token refused (%s); BC calls stop until someone signs in at "
                    "%s", conn.name, error, login_url(self.settings, conn.name))
        return True

    def _persist(self, conn: ConnectionSettings, tokens: _ConnectionTokens) -> bool:
        """Save the cache if msal changed it; False when another instance wrote first."""
        store = self._store(conn)
        if store is None or not tokens.cache.has_state_changed:
            return True
        etag = store.save(conn.name, compact_cache(tokens.cache.serialize()), tokens.etag)
        if etag is None:
            return False
        tokens.etag = etag
        return True

    # -- for the sign-in --
    def app(self, conn: ConnectionSettings) -> msal.ConfidentialClientApplication:
        """The connection's msal app in this instance (built on first use)."""
        tokens = self._tokens(conn)
        with tokens.lock:
            return self._app(conn, tokens)

    def signed_in(self, conn: ConnectionSettings, serialized: str, user: str) -> None:
        """Adopt the token cache a sign-in just redeemed: store it and record who signed in."""
        tokens = self._tokens(conn)
        with tokens.lock:
            etag = TokenStore(self.storage, self.cipher("sign-ins and tokens are stored encrypted"),
                              seen=self._versions).overwrite(conn.name, serialized)
            tokens.cache.deserialize(serialized)
            tokens.etag, tokens.loaded = etag, True
            tokens.failure = None
            self._write_state(conn, {"token_state": OK, "token_error": "", "token_fix": "",
                                     "token_retry_at": "", "signed_in_at": datetime.now(UTC),
                                     "signed_in_as": user, "token_grant": conn.grant_type})
            tokens.reported = ("ok", "")



def login_url(settings: Settings, connection: str) -> str:
    """Where an operator signs a connection in (the master key is needed in Azure: admin level)."""
    return f"{settings.public_base_url}/api/connections/{connection}/login"
