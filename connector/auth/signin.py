"""The authorization-code sign-in of a connection, start to finish (Entra ID, msal).

An operator opens `/api/connections/{name}/login`; msal builds the authorize URL with state, nonce
and PKCE and adds `offline_access` itself, so Entra returns a refresh token. Entra answers with
`response_mode=form_post` (a POST to the callback; the GET callback stays for links already issued).
The flow waits encrypted in `bcauthflows` until the callback claims it (once), redeems the code and
hands the new token cache to the `TokenService`; then the connection's companies are discovered
with the new tokens.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msal
import requests

from connector.auth.token_store import AuthFlowStore, PendingSignIn
from connector.auth.tokens import TokenEndpointUnavailable, compact_cache, describe_token_error
from connector.bc.errors import BCError, TokenUnavailable
from connector.errors import ConnectorError
from connector.settings import BC_SCOPE, ConnectionSettings, SettingsError, UnknownConnection

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger(__name__)


class SignInRejected(ConnectorError):
    """A sign-in cannot start or complete; the message is safe to show to the person signing in."""

    retryable = False

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, http_status=status)
        self.status = status


@dataclass(frozen=True)
class SignedIn:
    """A completed sign-in: the connection, who signed in, the companies found and the one chosen."""

    connection: str
    user: str
    companies: list[dict[str, Any]]
    company_id: str
    problem: str = ""


def callback_problem(params: Mapping[str, str], pending: PendingSignIn | None,
                     now: datetime) -> str | None:
    """Why an OAuth callback cannot be redeemed (shown to the person signing in), or None."""
    if pending is None:
        return ("This sign-in is unknown or was already completed. "
                "Start again from the connection's login link.")
    if pending.expires_at <= now:
        return "This sign-in took too long and has expired. Start again from the connection's login link."
    if params.get("error"):
        described = params.get("error_description", "")
        return f"Entra ID did not sign you in: {params['error']}" + (f" ({described})" if described else "")
    if not params.get("code"):
        return "The answer from Entra ID carries no authorization code."
    return None


def start_sign_in(runtime: Runtime, connection: str) -> str:
    """Remember msal's flow (state, nonce, PKCE verifier) encrypted and return the Entra authorize
    URL to send the browser to. Raises SignInRejected."""
    try:
        conn = runtime.settings.connection(connection)
        if not conn.uses_code_flow:
            raise SignInRejected(f"Connection {conn.name!r} uses client credentials; it needs no sign-in.")
        flows = AuthFlowStore(runtime.storage, runtime.tokens.cipher(
            f"connection {conn.name!r} signs in with authorization_code"))
    except UnknownConnection as exc:
        raise SignInRejected(str(exc), status=404) from None
    except SettingsError as exc:
        raise SignInRejected(f"Sign-in is not configured: {exc}", status=500) from None
    try:
        app = runtime.tokens.app(conn)
    except (TokenEndpointUnavailable, TokenUnavailable) as exc:
        raise SignInRejected(f"Entra ID cannot start the sign-in: {exc}", status=502) from None
    state = secrets.token_urlsafe(32)
    # form_post (msal's advice): the code comes in a POST body, never in a URL that logs or history keep
    flow = app.initiate_auth_code_flow(scopes=[BC_SCOPE], redirect_uri=runtime.settings.redirect_uri,
                                       state=state, response_mode="form_post")
    expires = datetime.now(UTC) + timedelta(seconds=runtime.settings.auth_flow_ttl_seconds)
    flows.put(state, PendingSignIn(conn.name, flow, expires))
    log.info("sign-in %s: started", conn.name)
    return str(flow["auth_uri"])


def complete_sign_in(runtime: Runtime, params: Mapping[str, str]) -> SignedIn:
    """Redeem the callback, then discover the connection's companies with the new tokens and save the
    chosen one (BC_COMPANY if set, else the first). Raises SignInRejected."""
    conn, claims = redeem(runtime, params)
    user = str(claims.get("preferred_username") or claims.get("name") or "")
    try:
        companies, chosen = runtime.companies.discover(runtime.bc(conn.name), conn.name, conn.company)
    except (BCError, TokenUnavailable) as exc:
        log.error("sign-in %s: listing companies failed: %s", conn.name, exc)
        return SignedIn(conn.name, user, [], "", f"Signed in, but listing the companies failed: {exc}")
    problem = ""
    if chosen is None:
        problem = (f"BC_COMPANY {conn.company!r} names none of these companies." if conn.company
                   else "The environment has no companies.")
    return SignedIn(conn.name, user, companies, chosen["id"] if chosen else "", problem)


def redeem(runtime: Runtime, params: Mapping[str, str]) -> tuple[ConnectionSettings, dict[str, Any]]:
    """Claim the pending sign-in named by the callback's `state` (once), redeem the code and store the
    new token cache. Returns the connection and the ID token claims."""
    try:
        cipher = runtime.tokens.cipher("sign-ins and tokens are stored encrypted")
    except SettingsError as exc:
        raise SignInRejected(f"Sign-in is not configured: {exc}", status=500) from None
    pending = AuthFlowStore(runtime.storage, cipher).take(params.get("state", ""))
    problem = callback_problem(params, pending, datetime.now(UTC))
    if problem or pending is None:
        log.warning("sign-in callback rejected: %s", problem)
        raise SignInRejected(problem or "")
    try:
        conn = runtime.settings.connection(pending.connection)
    except UnknownConnection as exc:
        raise SignInRejected(str(exc)) from None
    cache = msal.SerializableTokenCache()
    try:
        result = runtime.tokens.new_app(conn, cache).acquire_token_by_auth_code_flow(
            pending.flow, dict(params), scopes=[BC_SCOPE])
    except ValueError:  # msal: state or nonce does not match the flow
        raise SignInRejected(
            "The answer from Entra ID does not match the sign-in that was started.") from None
    except (requests.RequestException, TokenEndpointUnavailable):
        raise SignInRejected("Entra ID could not be reached to complete the sign-in; start again.",
                             status=502) from None
    except TokenUnavailable as exc:
        raise SignInRejected(f"Sign-in is not configured: {exc}", status=500) from None
    if "access_token" not in result:
        error = describe_token_error(result)
        log.warning("sign-in %s: Entra refused the authorization code: %s", conn.name, error)
        raise SignInRejected(f"Entra ID refused the authorization code: {error}.")
    claims = dict(result.get("id_token_claims") or {})
    runtime.tokens.signed_in(conn, compact_cache(cache.serialize()),
                             str(claims.get("preferred_username") or claims.get("name") or ""))
    log.info("sign-in %s: signed in", conn.name)
    return conn, claims
