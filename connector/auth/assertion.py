"""Client assertions for a federated credential: the Function App's managed identity signs the app in.

The app registration trusts the managed identity (a federated identity credential: issuer
`https://login.microsoftonline.com/<tenant>/v2.0`, subject the identity's principal id, audience
`api://AzureADTokenExchange`), so msal sends a token of that identity as `client_assertion` instead
of a secret: there is no secret to leak or to expire. azure-identity fetches and caches the
identity's token (App Service / Functions: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`).
"""
from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError

TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"


class AssertionUnavailable(ConnectorError):
    """The managed identity gave no token (not enabled, not assigned, endpoint unreachable)."""

    internal = True
    token_failure = True


class ManagedIdentityAssertion:
    """A callable for msal's `client_credential={"client_assertion": ...}`: the managed identity's
    token for the token-exchange audience (`client_id`: a user-assigned identity; empty =
    system-assigned; `verify`: a CA bundle for the identity endpoint, the emulator's locally)."""

    def __init__(self, client_id: str = "", verify: bool | str = True, credential: Any = None):
        self._client_id = client_id
        self._verify = verify
        self._credential = credential

    def _get_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import ManagedIdentityCredential

            kwargs: dict[str, Any] = {"client_id": self._client_id} if self._client_id else {}
            if self._verify is not True:
                kwargs["connection_verify"] = self._verify
            self._credential = ManagedIdentityCredential(**kwargs)
        return self._credential

    def __call__(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self._get_credential().get_token(TOKEN_EXCHANGE_SCOPE).token)
        except ClientAuthenticationError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AssertionUnavailable(first_line) from None
