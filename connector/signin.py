"""Entra ID sign-in and access tokens for BC, with msal.

Client credentials (service-to-service): msal caches the token and asks for a new one near expiry;
when BC refuses a token anyway (clock skew, revocation) `force_refresh` drops msal's cached tokens.
"""
from __future__ import annotations

import threading

import msal

from connector.bc_errors import TokenUnavailable
from connector.settings import BC_SCOPE, ConnectionSettings, Settings
from connector.storage import Storage


class TokenService:
    """Access tokens per connection."""

    def __init__(self, settings: Settings, storage: Storage):
        self.settings = settings
        self.storage = storage
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()

    def _app(self, conn: ConnectionSettings) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(conn.name)
            if app is None:
                app = msal.ConfidentialClientApplication(
                    conn.client_id,
                    client_credential=conn.client_secret,
                    authority=conn.authority,
                    instance_discovery=conn.authority_host.rstrip("/") == "https://login.microsoftonline.com",
                    token_cache=msal.SerializableTokenCache(),
                    verify=self.settings.tls_ca_bundle or True,
                )
                self._apps[conn.name] = app
            return app

    def access_token(self, connection: str, force_refresh: bool = False) -> str:
        conn = self.settings.connection(connection)
        app = self._app(conn)
        if force_refresh:
            app.remove_tokens_for_client()
        result = app.acquire_token_for_client(scopes=[BC_SCOPE])
        if "access_token" not in result:
            raise TokenUnavailable(conn.name, "refresh-failed", str(result.get("error", "")))
        return result["access_token"]
