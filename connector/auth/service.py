"""The sign-in service: start a connection's authorization-code sign-in (from the admin route or a
one-time link), mint those links, and complete the sign-in at Entra's callback.

Built once by the runtime from the settings, storage, the token service, the company directory and
a connection's BC client; the blueprint calls `get_runtime().sign_in.<method>`. The story of the
flow: `signin.py`; the links: `signin_links.py`.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msal
import requests

from connector.auth.signin import SignedIn, SignInRejected, callback_problem
from connector.auth.signin_links import SignInLink, mint_link, open_ticket, signer, spend
from connector.auth.token_store import AuthFlowStore, PendingSignIn
from connector.auth.tokens import TokenEndpointUnavailable, TokenService, compact_cache, describe_token_error
from connector.bc.client import BCClient
from connector.bc.companies import Companies
from connector.bc.errors import BCError, TokenUnavailable
from connector.settings import BC_SCOPE, ConnectionSettings, Settings, SettingsError, UnknownConnection
from connector.storage import Storage

log = logging.getLogger(__name__)


class SignInService:
    """Sign-in of the connections that use the authorization-code flow."""

    def __init__(self, settings: Settings, storage: Storage, tokens: TokenService, companies: Companies,
                 bc: Callable[[str], BCClient]):
        self._settings = settings
        self._storage = storage
        self._tokens = tokens
        self._companies = companies
        self._bc = bc

    def start(self, connection: str) -> str:
        """Remember msal's flow (state, nonce, PKCE verifier) encrypted and return the Entra authorize
        URL to send the browser to. Raises SignInRejected."""
        try:
            conn = self._settings.connection(connection)
            if not conn.uses_code_flow:
                raise SignInRejected(
                    f"Connection {conn.name!r} uses client credentials; it needs no sign-in.")
            flows = AuthFlowStore(self._storage, self._tokens.cipher(
                f"connection {conn.name!r} signs in with authorization_code"))
        except UnknownConnection as exc:
            raise SignInRejected(str(exc), status=404) from None
        except SettingsError as exc:
            raise SignInRejected(f"Sign-in is not configured: {exc}", status=500) from None
        try:
            app = self._tokens.app(conn)
        except (TokenEndpointUnavailable, TokenUnavailable) as exc:
            raise SignInRejected(f"Entra ID cannot start the sign-in: {exc}", status=502) from None
        state = secrets.token_urlsafe(32)
        # form_post (msal's advice): the code comes in a POST body, never in a URL that logs or history keep
        flow = app.initiate_auth_code_flow(scopes=[BC_SCOPE], redirect_uri=self._settings.redirect_uri,
                                           state=state, response_mode="form_post")
        expires = datetime.now(UTC) + timedelta(seconds=self._settings.auth_flow_ttl_seconds)
        flows.put(state, PendingSignIn(conn.name, flow, expires))
        log.info("sign-in %s: started", conn.name)
        return str(flow["auth_uri"])

    def mint_link(self, connection: str, now: datetime) -> SignInLink:
        """A signed one-time sign-in link for `connection` (UnknownConnection if not configured)."""
        return mint_link(self._settings, connection, now)

    def start_from_link(self, ticket: str, now: datetime) -> str:
        """The Entra authorize URL for the connection a valid, unused ticket names (spending it)."""
        found = open_ticket(signer(self._settings), ticket, now)
        spend(self._storage, found)
        return self.start(found.connection)

    def complete(self, params: Mapping[str, str]) -> SignedIn:
        """Redeem the callback, then discover the connection's companies with the new tokens and save
        the chosen one (BC_COMPANY if set, else the first). Raises SignInRejected."""
        conn, claims = self._redeem(params)
        user = str(claims.get("preferred_username") or claims.get("name") or "")
        try:
            companies, chosen = self._companies.discover(self._bc(conn.name), conn.name, conn.company)
        except (BCError, TokenUnavailable) as exc:
            log.error("sign-in %s: listing companies failed: %s", conn.name, exc)
            return SignedIn(conn.name, user, [], "", f"Signed in, but listing the companies failed: {exc}")
        problem = ""
        if chosen is None:
            problem = (f"BC_COMPANY {conn.company!r} names none of these companies." if conn.company
                       else "The environment has no companies.")
        return SignedIn(conn.name, user, companies, chosen["id"] if chosen else "", problem)

    def _redeem(self, params: Mapping[str, str]) -> tuple[ConnectionSettings, dict[str, Any]]:
        """Claim the pending sign-in named by the callback's `state` (once), redeem the code and store
        the new token cache. Returns the connection and the ID token claims."""
        try:
            cipher = self._tokens.cipher("sign-ins and tokens are stored encrypted")
        except SettingsError as exc:
            raise SignInRejected(f"Sign-in is not configured: {exc}", status=500) from None
        pending = AuthFlowStore(self._storage, cipher).take(params.get("state", ""))
        problem = callback_problem(params, pending, datetime.now(UTC))
        if problem or pending is None:
            log.warning("sign-in callback rejected: %s", problem)
            raise SignInRejected(problem or "")
        try:
            conn = self._settings.connection(pending.connection)
        except UnknownConnection as exc:
            raise SignInRejected(str(exc)) from None
        cache = msal.SerializableTokenCache()
        try:
            result = self._tokens.new_app(conn, cache).acquire_token_by_auth_code_flow(
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
        self._tokens.signed_in(conn, compact_cache(cache.serialize()),
                               str(claims.get("preferred_username") or claims.get("name") or ""))
        log.info("sign-in %s: signed in", conn.name)
        return conn, claims
