"""The HTML pages a person sees after signing a connection in (or failing to); every value escaped."""
from __future__ import annotations

import html

from connector.auth.signin import SignedIn

_PAGE = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
         "<body><h1>{title}</h1>{body}</body></html>")


def signed_in_page(result: SignedIn) -> str:
    """The page after a sign-in: who signed in, the companies found and the one chosen."""
    e = html.escape
    rows = "".join(
        f"<li>{e(c.get('displayName') or c.get('name', ''))} <code>{e(c['id'])}</code>"
        + (" (chosen)" if c["id"] == result.company_id else "") + "</li>"
        for c in result.companies
    )
    who = f" as {e(result.user)}" if result.user else ""
    body = (f"<p>Connection <strong>{e(result.connection)}</strong> is signed in{who}.</p>"
            f"<h2>Companies</h2><ul>{rows}</ul>")
    if result.problem:
        body += f"<p><strong>Note:</strong> {e(result.problem)}</p>"
    return _PAGE.format(title="Business Central connected", body=body)


def sign_in_failed_page(message: str) -> str:
    """The page for a sign-in that could not start or complete."""
    return _PAGE.format(title="Sign-in failed", body=f"<p>{html.escape(message)}</p>")
