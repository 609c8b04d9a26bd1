"""One-time sign-in links: the master key never goes into a browser URL.

An admin call (`POST connections/{c}/login-link`, the key in the `x-functions-key` header), or the
status page behind its function key, mints a link `…/api/auth/login?ticket=<t>` for one connection:
the ticket names the connection, expires within minutes and is signed (HMAC, key derived from
TOKEN_ENCRYPTION_KEY; `connector.signing`). The anonymous `auth/login` route accepts a ticket once
(its nonce is spent with an insert into `bcauthflows`) and starts the sign-in as the admin-level
`connections/{c}/login` does (both: `SignInService`).
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError

from connector.auth.signin import SignInRejected
from connector.auth.tokens import login_url
from connector.settings import TABLE_AUTH_FLOWS, Settings
from connector.signing import MissingSigningKey, Signer, b64, unb64
from connector.storage import Storage

PURPOSE = "sign-in link"
LINK_TTL = timedelta(minutes=5)
MAX_TICKET_CHARS = 512
SPENT_ROW = "spent"


@dataclass(frozen=True)
class SignInLink:
    """A minted link and when it stops working."""

    connection: str
    url: str
    expires_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"connection": self.connection, "url": self.url,
                "expiresAt": self.expires_at.isoformat().replace("+00:00", "Z")}


@dataclass(frozen=True)
class Ticket:
    connection: str
    nonce: str
    expires_at: datetime


def signer(settings: Settings) -> Signer:
    return Signer(settings.token_encryption_keys, PURPOSE)


def mint_link(settings: Settings, connection: str, now: datetime, ttl: timedelta = LINK_TTL) -> SignInLink:
    """A signed one-time link for `connection` (UnknownConnection if it is not configured;
    MissingSigningKey without TOKEN_ENCRYPTION_KEY)."""
    conn = settings.connection(connection)
    expires = now + ttl
    fields = {"c": conn.name, "exp": int(expires.timestamp()), "n": b64(secrets.token_bytes(16))}
    body = b64(json.dumps(fields, separators=(",", ":")).encode())
    ticket = f"{body}.{signer(settings).sign(body.encode())}"
    return SignInLink(conn.name, f"{settings.public_base_url}/api/auth/login?ticket={quote(ticket)}",
                      expires.replace(microsecond=0))


def open_ticket(sign: Signer, ticket: str, now: datetime) -> Ticket:
    """The ticket's connection and nonce when its signature holds and it has not expired; else
    SignInRejected (403, 410 when expired)."""
    body, _, signature = (ticket or "").partition(".")
    if not body or len(ticket) > MAX_TICKET_CHARS or not sign.verify(body.encode(), signature):
        raise SignInRejected("This sign-in link is not valid. Ask for a new one (the status page's "
                             "Sign in button, or POST connections/{name}/login-link).", 403)
    try:
        fields = json.loads(unb64(body))
        found = Ticket(str(fields["c"]), str(fields["n"]), datetime.fromtimestamp(int(fields["exp"]), UTC))
    except (ValueError, KeyError, TypeError, OverflowError):
        raise SignInRejected("This sign-in link is not valid. Ask for a new one.", 403) from None
    if found.expires_at <= now:
        raise SignInRejected("This sign-in link has expired (they last a few minutes). Ask for a new "
                             "one.", 410)
    return found


def spend(storage: Storage, ticket: Ticket) -> None:
    """Mark the ticket used (one insert); SignInRejected (410) if it already was."""
    try:
        storage.table(TABLE_AUTH_FLOWS).create_entity({
            "PartitionKey": f"link:{ticket.nonce}", "RowKey": SPENT_ROW, "connection": ticket.connection})
    except ResourceExistsError:
        raise SignInRejected("This sign-in link was already used. Ask for a new one.", 410) from None


def page_link(settings: Settings, now: datetime) -> Callable[[str], str]:
    """What the status page links its Sign in button to: a fresh one-time link per connection (the
    page is behind a function key; Azure answers the bare admin-level login URL with 401), or that
    URL when no key is set to sign with."""
    def link(connection: str) -> str:
        try:
            return mint_link(settings, connection, now).url
        except MissingSigningKey:
            return login_url(settings, connection)

    return link
