"""The HTML pages a person sees after signing a connection in (or failing to): the status page's
look, what to do next and a link back to the status page; every value escaped."""
from __future__ import annotations

import html

from connector.auth.signin import SignedIn
from connector.ops.status_page import STYLE

STATUS_LINK = "../status"  # from /api/auth/callback (and /api/connections/{c}/login): /api/status
_PAGE = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
         '<meta name="viewport" content="width=device-width,initial-scale=1">'
         "<title>{title}</title><style>{style}</style></head>"
         '<body><h1>{title}</h1>{body}<h2>Next</h2>{next}'
         f'<p><a class="button" href="{STATUS_LINK}" data-back="status">Back to the status page</a> '
         '<span class="muted">(in Azure, with your function key: <code>?code=&lt;key&gt;</code>)</span></p>'
         "</body></html>")


def signed_in_page(result: SignedIn) -> str:
    """The page after a sign-in: who signed in, the companies found and the one chosen."""
    e = html.escape
    rows = "".join(
        f"<li>{e(c.get('displayName') or c.get('name', ''))} <code>{e(c['id'])}</code>"
        + (" (chosen)" if c["id"] == result.company_id else "") + "</li>"
        for c in result.companies
    )
    who = f" as {e(result.user)}" if result.user else ""
    body = (f'<p class="ok">Connection <strong>{e(result.connection)}</strong> is signed in{who}.</p>'
            f"<h2>Companies</h2><ul>{rows}</ul>")
    if result.problem:
        body += f'<p class="warn"><strong>Note:</strong> {e(result.problem)}</p>'
    subscribe = f"POST /api/connections/{e(result.connection)}/subscriptions"
    next_step = (f"<p>Turn the webhooks on: <code>{subscribe}</code> (the hourly renewal run does it "
                 "too). Then watch the events arrive: <code>python -m connector tail</code>, and check the "
                 "deployment end to end: <code>python -m connector doctor</code>.</p>")
    return _PAGE.format(title="Business Central connected", body=body, next=next_step, style=STYLE)


def sign_in_failed_page(message: str) -> str:
    """The page for a sign-in that could not start or complete."""
    next_step = ("<p>Fix what the message names, then sign in again with the status page's <em>Sign in</em> "
                 "button (a sign-in link works once and for a few minutes).</p>")
    return _PAGE.format(title="Sign-in failed", body=f'<p class="bad">{html.escape(message)}</p>',
                        next=next_step, style=STYLE)
