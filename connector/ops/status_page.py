"""`GET /api/status` for people: the status report as one plain, server-rendered HTML page.

Content negotiation picks it (`Accept` prefers `text/html`, as a browser's does); JSON stays the
default for tools. Every value is escaped; the page needs no script and no build step, and reads
on a phone (one column, wrapping tables).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import Any

from connector.bc.timestamps import parse_iso

REPLAY_COMMAND = "make replay-poison QUEUE={queue}"

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:60rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.2rem;border-top:1px solid #ccc;padding-top:.8rem}h3{font-size:1rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}th,td{text-align:left;padding:.3rem .4rem;
border-bottom:1px solid #e3e3e3;vertical-align:top;word-break:break-word}th{white-space:nowrap}
.ok{color:#0a6b2d;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#8a5a00;font-weight:600}
code{background:#f3f3f3;padding:0 .2rem;overflow-wrap:anywhere}.muted{color:#666}
a.button{display:inline-block;padding:.4rem .8rem;background:#0b57d0;color:#fff;border-radius:4px;
text-decoration:none}
"""


def wants_html(accept: str | None) -> bool:
    """True when `Accept` ranks `text/html` above `application/json` (a browser); JSON otherwise."""
    ranks: dict[str, float] = {}
    for part in (accept or "").split(","):
        kind, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranks[kind.lower()] = max(q, ranks.get(kind.lower(), 0.0))
    html = ranks.get("text/html", 0.0)
    return html > 0 and html > ranks.get("application/json", 0.0)


def time_left(expires_at: str, now: datetime) -> str:
    """`2 d 5 h`, `40 min`, `expired` or `—` for a subscription's expiry."""
    try:
        seconds = (parse_iso(expires_at) - now).total_seconds()
    except ValueError:
        return "—"
    if seconds <= 0:
        return "expired"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _table(headers: Iterable[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _token(token: Mapping[str, Any]) -> str:
    state = str(token.get("state", ""))
    css = "ok" if state == "ok" else "bad"
    parts = [f'<p>Token: <span class="{css}" data-token-state="{_e(state)}">{_e(state)}</span>']
    if token.get("signed_in_as"):
        parts.append(f' — signed in as {_e(token["signed_in_as"])} at {_e(token.get("signed_in_at"))}')
    parts.append("</p>")
    if token.get("error"):
        parts.append(f'<p class="bad">{_e(token["error"])}</p>')
        if token.get("fix"):
            parts.append(f'<p>Fix: {_e(token["fix"])}</p>')
    if token.get("login_url"):
        parts.append(f'<p><a class="button" href="{_e(token["login_url"])}">Sign in</a></p>')
    return "".join(parts)


def _url_flag(subscription: Mapping[str, Any]) -> str:
    """A warning when the subscription notifies another URL than this deployment's."""
    if subscription.get("url_current") is not False:
        return ""
    return (f' <span class="bad" data-url-mismatch="1">notifies {_e(subscription.get("notification_url"))}, '
            "not this app: recreated at the next subscription run (POST …/subscriptions)</span>")


def _connection(conn: Mapping[str, Any], now: datetime) -> str:
    subscriptions = [[_e(s.get("resource")), _e(s.get("status")) + _url_flag(s),
                      _e(time_left(str(s.get("expires_at") or ""), now)), _e(s.get("last_error")),
                      _e(s.get("removed_reason"))]
                     for s in conn.get("subscriptions", [])]
    health = [[_e(h.get("time")), _e(h.get("type", "").removeprefix("bc.connector.")),
               f'<span class="{"bad" if h.get("severity") == "action" else "muted"}">'
               f'{_e(h.get("summary"))}</span>', _e(h.get("fix"))] for h in conn.get("health_events", [])]
    cursors = [[_e(c.get("name")), _e(c.get("cursor")), _e(c.get("updated_at")),
                "paging" if c.get("next_link") else "done"] for c in conn.get("cursors", [])]
    recent = conn.get("throughput_24h", {})
    throughput = [[_e(kind), _e(name), _e(n)] for kind in ("orders", "events")
                  for name, n in sorted(recent.get(kind, {}).items())]
    principals = [[_e(p.get("name")), _e(p.get("client_id")), _e(p.get("token", {}).get("state")),
                   _e(p.get("token", {}).get("error")), _e(p.get("token", {}).get("fix"))]
                  for p in conn.get("principals", [])]
    companies = ", ".join(str(c.get("name", c.get("id", ""))) if isinstance(c, Mapping) else str(c)
                          for c in conn.get("companies", []))
    return (
        f'<section data-connection="{_e(conn["name"])}"><h2>Connection {_e(conn["name"])}</h2>'
        f'<p class="muted">{_e(conn.get("grant_type"))} · tenant {_e(conn.get("tenant"))} · '
        f'environment {_e(conn.get("environment"))}</p>'
        + _token(conn.get("token", {}))
        + (f'<p class="warn" data-secret-warning>{_e(conn["secret_warning"])}: add a new secret to the '
           "app registration and update BC_CLIENT_SECRET, or switch to BC_CLIENT_CREDENTIAL=managed-identity"
           "</p>" if conn.get("secret_warning") else "")
        + f'<p>Company: {_e(conn.get("company_id") or "—")}'
        + (f' <span class="muted">(of {_e(companies)})</span>' if companies else "") + "</p>"
        + ("<h3>Principals</h3>" + _table(("principal", "client id", "token", "error", "fix"), principals, "")
           if principals else "")
        + "<h3>Webhook subscriptions</h3>"
        + _table(("resource", "state", "expires in", "last error", "BC removed"),
                 subscriptions, "No subscriptions yet.")
        + "<h3>Health events</h3>"
        + _table(("when", "what", "summary", "fix"), health, "No health events in the last 7 days.")
        + "<h3>Last pull and sweep</h3>"
        + _table(("cursor", "up to", "moved at", "read"), cursors, "No pull or sweep has run yet.")
        + "<h3>Last 24 hours</h3>"
        + _table(("what", "kind", "count"), throughput, "Nothing processed in the last 24 hours.")
        + "</section>"
    )


def _dead_letters(dead_letters: Mapping[str, Any]) -> str:
    rows = []
    for queue, count in dead_letters.items():
        css = "bad" if count else "ok"
        command = REPLAY_COMMAND.format(queue=queue.removesuffix("-poison"))
        replay = f"<code>{_e(command)}</code>" if count else "—"
        rows.append([_e(queue), f'<span class="{css}">{_e(count)}</span>', replay])
    return "<h2>Poison queues</h2>" + _table(("queue", "messages", "after a fix, replay with"), rows,
                                             "No poison queues.")


def render_status_page(report: Mapping[str, Any], now: datetime) -> str:
    """The whole page for a status report."""
    sections = "".join(_connection(c, now) for c in report.get("connections", []))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>bc-connector status</title><style>{STYLE}</style></head><body>"
        f'<h1>bc-connector status</h1><p class="muted">As of {_e(report.get("generated_at"))} (UTC). '
        "Read from storage; no call to Business Central.</p>"
        + sections + _dead_letters(report.get("dead_letters", {})) + "</body></html>"
    )
