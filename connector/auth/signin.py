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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.auth.token_store import PendingSignIn
from connector.errors import ConnectorError

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
