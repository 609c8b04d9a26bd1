"""`GET /api/status` for people: the status report as one server-rendered HTML page, read in seconds.

Content negotiation picks it (`Accept` prefers `text/html`, as a browser's does); JSON stays the
default for tools. At the top a verdict in words (all well, or what needs a person); per connection
the counts of the last 24 hours including failures, small inline SVG charts per hour, names instead
of bare GUIDs (ids on hover), relative times (exact on hover), the last health events. Every value is
escaped; no script, no external asset (a Content-Security-Policy may forbid both); it refreshes
itself every minute (`<meta http-equiv="refresh">`) and reads on a phone (one column, wrapping tables).
"""
from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from connector.bc.timestamps import parse_iso

REPLAY_COMMAND = "make replay-poison QUEUE={queue}"
REFRESH_SECONDS = 60

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:60rem;color:#1b1b1b}
p,li{overflow-wrap:anywhere}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.2rem;border-top:1px solid #ccc;padding-top:.8rem}
h3{font-size:1rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}th,td{text-align:left;padding:.3rem .4rem;
border-bottom:1px solid #e3e3e3;vertical-align:top;word-break:break-word}th{font-size:.9rem}
.ok{color:#0a6b2d;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#8a5a00;font-weight:600}
code{background:#f3f3f3;padding:0 .2rem;overflow-wrap:anywhere}.muted{color:#666}
a.button{display:inline-block;padding:.4rem .8rem;background:#0b57d0;color:#fff;border-radius:4px;
text-decoration:none}
.verdict{padding:.6rem .8rem;border-radius:6px;margin:.6rem 0}.verdict h2{border:0;margin:0;padding:0}
.verdict.good{background:#e6f4ea}.verdict.needs{background:#fce8e6}
.verdict ul{margin:.3rem 0 0;padding-left:1.2rem}
.counts{display:flex;flex-wrap:wrap;gap:.4rem;margin:.4rem 0}.count{border:1px solid #ddd;border-radius:6px;
padding:.3rem .5rem;min-width:6.5rem}.count b{display:block;font-size:1.2rem}
.charts{display:flex;flex-wrap:wrap;gap:.6rem}.chart{flex:1 1 15rem;max-width:100%;margin:0}
.chart svg{width:100%;height:auto}
abbr,time{text-decoration:none;border-bottom:1px dotted #999}
@media (max-width:600px){table,tbody,tr,td{display:block}thead{display:none}
tr{border-bottom:1px solid #e3e3e3;padding:.3rem 0}td{border:0;padding:.05rem .2rem}
td[data-label]:not(:empty)::before{content:attr(data-label) ": ";color:#666}}
"""

# ---- small pure helpers ----------------------------------------------------------------------------


def page_headers() -> dict[str, str]:
    """Headers of the connector's HTML pages: no script at all, only this STYLE (by hash), never in a
    frame (clickjacking), no MIME sniffing, and no Referer: the page's own URL carries the function key
    (`?code=`), which a followed link would otherwise hand to Entra ID."""
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    return {"Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
                                       "form-action 'none'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}


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


def ago(moment: datetime, now: datetime) -> str:
    """`just now`, `3 min ago`, `2 h ago`, `4 d ago` (or `in 5 min` for the future)."""
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        text = f"{round(seconds / 60)} min"
    elif seconds < 86400 * 2:
        text = f"{round(seconds / 3600)} h"
    else:
        text = f"{round(seconds / 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def exact(moment: datetime) -> str:
    """`2026-12-05 16:20:03 UTC`: the exact time, without microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def when(value: Any, now: datetime) -> str:
    """A time as `<time>`: relative, the exact time on hover; `—` when absent or unreadable."""
    if value in (None, ""):
        return "—"
    try:
        moment = value if isinstance(value, datetime) else parse_iso(str(value))
    except ValueError:
        return _e(value)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (f'<time datetime="{_e(moment.isoformat())}" title="{_e(exact(moment))}">'
            f"{_e(ago(moment, now))}</time>")


def _exact(value: Any) -> str:
    """A stored time as its exact UTC text (no microseconds); `—` when absent."""
    if value in (None, ""):
        return "—"
    try:
        return _e(exact(parse_iso(str(value))))
    except ValueError:
        return _e(value)


def named(name: str, ident: str) -> str:
    """A name with its id on hover (`<abbr title=id>`); the id itself when there is no name."""
    if not name or name == ident:
        return f"<code>{_e(ident)}</code>"
    return f'<abbr title="{_e(ident)}">{_e(name)}</abbr>'


def _table(headers: Iterable[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    headers = list(headers)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td data-label="{_e(h)}">{cell}</td>' for h, cell in zip(
        headers, row, strict=False)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- the verdict -----------------------------------------------------------------------------------


def problems(report: Mapping[str, Any], now: datetime) -> list[str]:
    """What needs a person, in words (pure): empty when all is well."""
    found = []
    for conn in report.get("connections", []):
        name = conn.get("name", "")
        token = conn.get("token", {})
        if conn.get("paused"):
            found.append(f"{name}: paused — {conn['paused'].get('reason')}; {conn['paused'].get('fix')}")
        if token.get("state") not in (None, "ok"):
            advice = ("sign in with its Sign in button below" if token.get("login_url")
                      else token.get("fix") or token.get("error") or "")
            found.append(f"{name}: token {token.get('state')} — {advice}")
        if conn.get("secret_warning"):
            found.append(f"{name}: {conn['secret_warning']}")
        bad = [s for s in conn.get("subscriptions", []) if s.get("status") == "failed"
               or s.get("url_current") is False]
        if bad:
            found.append(f"{name}: {len(bad)} webhook subscription(s) failing — "
                         f"{bad[0].get('last_error') or 'see below'}")
        failed = int(sum(h.get("orders.failed", 0) for h in conn.get("activity_24h", [])))
        if failed:
            found.append(f"{name}: {failed} sales order(s) failed in 24 h — see sales-order-results")
        since = now - timedelta(hours=24)
        for event in conn.get("health_events", []):
            try:
                recent = parse_iso(str(event.get("time"))) >= since
            except ValueError:
                recent = False
            if event.get("severity") == "action" and recent:
                found.append(f"{name}: {event.get('summary')} — {event.get('fix')}")
    for queue, count in report.get("dead_letters", {}).items():
        if count:
            found.append(f"{queue}: {count} message(s) failed for good — "
                         f"{REPLAY_COMMAND.format(queue=queue.removesuffix('-poison'))} after a fix")
    return list(dict.fromkeys(found))


def _verdict(report: Mapping[str, Any], now: datetime) -> str:
    found = problems(report, now)
    if not found:
        return ('<section class="verdict good" data-verdict="ok"><h2 class="ok">All well</h2>'
                '<p class="muted">Every connection has a token, its subscriptions and no failures to act on.'
                "</p></section>")
    items = "".join(f"<li>{_e(p)}</li>" for p in found[:12])
    return (f'<section class="verdict needs" data-verdict="needs-a-person"><h2 class="bad">Needs a person '
            f"({len(found)})</h2><ul>{items}</ul></section>")


# ---- charts (inline SVG, no script) ----------------------------------------------------------------


def bar_chart(title: str, hours: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]],
              unit: str = "") -> str:
    """Bars per hour (one colour per series, side by side), a `<title>` per bar for hover; 24 hours."""
    width, height, top = 240, 70, 12
    peak = max([v for _, values, _ in series for v in values] + [0]) or 1
    slot = width / max(1, len(hours))
    bar = max(1.0, (slot - 1) / max(1, len(series)))
    rects = []
    for s_index, (label, values, colour) in enumerate(series):
        for h_index, value in enumerate(values):
            h = (height - top) * value / peak
            x = h_index * slot + s_index * bar
            hour = hours[h_index]
            tip = f"{hour[8:10]}:00 — {label}: {value:.0f}{unit}" if value == int(value) else (
                f"{hour[8:10]}:00 — {label}: {value:.1f}{unit}")
            rects.append(f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{_e(tip)}</title></rect>')
    legend = " · ".join(f'<tspan fill="{c}">■</tspan> {_e(label)}' for label, _, c in series)
    return (f'<figure class="chart"><svg viewBox="0 0 {width} {height + 14}" role="img" '
            f'aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="0" y="9" font-size="9" fill="#444">{_e(title)} (max {peak:.0f}{unit})</text>'
            f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#ccc" stroke-width="0.5"/>'
            + "".join(rects)
            + f'<text x="0" y="{height + 11}" font-size="8" fill="#666">{legend} · last 24 h</text></svg>'
            "</figure>")


def _charts(activity: Sequence[Mapping[str, Any]]) -> str:
    if not activity:
        return ""
    hours = [str(h.get("hour", "")) for h in activity]

    def col(name: str) -> list[float]:
        return [float(h.get(name, 0) or 0) for h in activity]

    orders = [a + b for a, b in zip(col("orders.created"), col("orders.duplicate"), strict=True)]
    lag = [s / c if c else 0.0 for s, c in zip(col("lag.sum"), col("lag.count"), strict=True)]
    return ('<div class="charts">'
            + bar_chart("Events per hour", hours, [("changes", col("events"), "#0b57d0"),
                                                   ("pulled", col("events.pulled"), "#7baaf7")])
            + bar_chart("Orders per hour", hours, [("created", orders, "#0a6b2d"),
                                                   ("failed", col("orders.failed"), "#b00020")])
            + bar_chart("BC requests per hour", hours, [("requests", col("bc.requests"), "#5f6368"),
                                                        ("429", col("bc.429"), "#e37400")])
            + bar_chart("Change → event lag", hours, [("average", lag, "#8430ce")], " s")
            + "</div>")


# ---- a connection -------------------------------------------------------------------------------------


def _counts(conn: Mapping[str, Any]) -> str:
    activity = conn.get("activity_24h", [])
    recent = conn.get("throughput_24h", {})

    def total(name: str) -> int:
        return int(sum(h.get(name, 0) or 0 for h in activity))

    orders = recent.get("orders", {})
    boxes = [("orders created", total("orders.created") or orders.get("created", 0), ""),
             ("duplicates", total("orders.duplicate") or orders.get("duplicate", 0), ""),
             ("orders failed", total("orders.failed"), "bad"),
             ("change events", total("events") or sum(recent.get("events", {}).values()), ""),
             ("pulled items", total("events.pulled"), ""),
             ("BC requests", total("bc.requests"), ""),
             ("BC 429s", total("bc.429"), "warn")]
    cells = "".join(f'<div class="count" data-count="{_e(label)}"><b class="{css if n else ""}">{_e(n)}</b>'
                    f"{_e(label)}</div>" for label, n, css in boxes)
    return f'<div class="counts">{cells}</div>'


def _token(token: Mapping[str, Any], now: datetime) -> str:
    state = str(token.get("state", ""))
    css = "ok" if state == "ok" else "bad"
    parts = [f'<p>Token: <span class="{css}" data-token-state="{_e(state)}">{_e(state)}</span>']
    if token.get("signed_in_as"):
        parts.append(f' — signed in as {_e(token["signed_in_as"])} {when(token.get("signed_in_at"), now)}')
    parts.append("</p>")
    if token.get("error"):
        parts.append(f'<p class="bad">{_e(token["error"])}</p>')
    if token.get("fix") and state != "ok" and not token.get("login_url"):
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


def _company_names(conn: Mapping[str, Any]) -> dict[str, str]:
    names = {}
    for company in conn.get("companies", []):
        if isinstance(company, Mapping) and company.get("id"):
            names[str(company["id"]).lower()] = str(company.get("displayName") or company.get("name") or "")
    return names


def _resource(resource: str, entity_set: str, companies: Mapping[str, str]) -> str:
    """`items in CRONUS UK Ltd.` for `companies(<id>)/items`, the resource on hover."""
    company = ""
    if "companies(" in resource:
        company = resource.split("companies(", 1)[1].split(")", 1)[0].strip("'").lower()
    entity = entity_set or resource.rsplit("/", 1)[-1]
    where = companies.get(company, "")
    label = f"{entity} in {where}" if where else entity
    return f'<abbr title="{_e(resource)}">{_e(label)}</abbr>'


def _cursor(name: str, companies: Mapping[str, str]) -> str:
    """`sweep items (CRONUS UK Ltd.)` for `sweep:items:<id>`, the row key on hover."""
    parts = name.split(":")
    company = companies.get(parts[-1].lower(), "") if len(parts) > 1 else ""
    label = " ".join(parts[:-1]) if company else name.replace(":", " ")
    return f'<abbr title="{_e(name)}">{_e(label)}{_e(f" ({company})" if company else "")}</abbr>'


def _connection(conn: Mapping[str, Any], now: datetime) -> str:
    companies = _company_names(conn)
    subscriptions = [[_resource(str(s.get("resource", "")), str(s.get("entity_set", "")), companies),
                      _e(s.get("status")) + _url_flag(s),
                      _e(time_left(str(s.get("expires_at") or ""), now)), _e(s.get("last_error")),
                      (_e(s.get("removed_reason")) + " " + when(s.get("removed_at"), now)
                       if s.get("removed_reason") else "")]
                     for s in conn.get("subscriptions", [])]
    health = [[when(h.get("time"), now), _e(str(h.get("type", "")).removeprefix("bc.connector.")),
               f'<span class="{"bad" if h.get("severity") == "action" else "muted"}">'
               f'{_e(h.get("summary"))}</span>', _e(h.get("fix"))] for h in conn.get("health_events", [])]
    cursors = [[_cursor(str(c.get("name", "")), companies), _exact(c.get("cursor")),
                when(c.get("updated_at"), now),
                "paging" if c.get("next_link") else "done"] for c in conn.get("cursors", [])]
    # Several principals per connection (orders, issue 25): one line each, below the token.
    principals = [[_e(p.get("name")), _e(p.get("client_id")), _e(p.get("token", {}).get("state")),
                   _e(p.get("token", {}).get("error")), _e(p.get("token", {}).get("fix"))]
                  for p in conn.get("principals", [])]
    company_id = str(conn.get("company_id") or "")
    company = named(companies.get(company_id.lower(), ""), company_id) if company_id else "—"
    others = ", ".join(n for i, n in companies.items() if i != company_id.lower())
    paused = conn.get("paused")
    return (
        f'<section data-connection="{_e(conn["name"])}" id="c-{_e(conn["name"])}">'
        f'<h2>Connection {_e(conn["name"])}</h2>'
        f'<p class="muted">{_e(conn.get("grant_type"))} · {_e(conn.get("credential", "secret"))} · tenant '
        f'{_e(conn.get("tenant"))} · environment {_e(conn.get("environment"))}</p>'
        + (f'<p class="bad" data-paused>Paused: {_e(paused.get("reason"))}. {_e(paused.get("fix"))}</p>'
           if paused else "")
        + _token(conn.get("token", {}), now)
        + (f'<p class="warn" data-secret-warning>{_e(conn["secret_warning"])}: add a new secret to the '
           "app registration and update BC_CLIENT_SECRET, or switch to BC_CLIENT_CREDENTIAL=managed-identity"
           "</p>" if conn.get("secret_warning") else "")
        + f"<p>Company: {company}"
        + (f' <span class="muted">(also visible: {_e(others)})</span>' if others else "") + "</p>"
        + ("<h3>Principals</h3>" + _table(("principal", "client id", "token", "error", "fix"), principals, "")
           if principals else "")
        + "<h3>Last 24 hours</h3>" + _counts(conn) + _charts(conn.get("activity_24h", []))
        + "<h3>Health events</h3>"
        + _table(("when", "what", "summary", "fix"), health, "No health events in the last 7 days.")
        + "<h3>Webhook subscriptions</h3>"
        + _table(("watches", "state", "expires in", "last error", "BC removed"),
                 subscriptions, "No subscriptions yet.")
        + "<h3>Last pull and sweep</h3>"
        + _table(("read", "up to", "moved", "state"), cursors, "No pull or sweep has run yet.")
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


def _invalid_rows(table: Mapping[str, Any]) -> str:
    """The connection table's rows the app refused (`connections list` shows them too)."""
    invalid = table.get("invalid") or {}
    if not invalid:
        return ""
    rows = [[_e(name), f'<span class="bad">{_e(why)}</span>'] for name, why in invalid.items()]
    return "<h2>Connection table: invalid rows</h2>" + _table(("connection", "why"), rows, "")


def _summary_row(conn: Mapping[str, Any]) -> list[str]:
    subscriptions = Counter(str(s.get("status", "")) for s in conn.get("subscriptions", []))
    token = str(conn.get("token", {}).get("state", ""))
    return [f'<a href="#c-{_e(conn["name"])}">{_e(conn["name"])}</a>', _e(conn.get("tenant")),
            _e(conn.get("environment")),
            f'<span class="{"ok" if token == "ok" else "bad"}">{_e(token)}</span>',
            _e(", ".join(f"{n} {s}" for s, n in sorted(subscriptions.items())) or "—")]


def _pages(paging: Mapping[str, Any], keep: Mapping[str, str]) -> str:
    """Where this page stands among the connections, with links to the others (function key kept)."""
    def link(page: int, text: str) -> str:
        return f'<a href="?{_e(urlencode({**keep, "page": page}))}">{text}</a>'

    page, pages = int(paging["page"]), int(paging["pages"])
    return (f'<p data-paging>Connections {paging["first"]:,}–{paging["last"]:,} of {paging["connections"]:,}'
            f" · page {page} of {pages}"
            + (" · " + link(page - 1, "‹ previous") if page > 1 else "")
            + (" · " + link(page + 1, "next ›") if page < pages else "") + "</p>")


def _overview(report: Mapping[str, Any], keep: Mapping[str, str]) -> str:
    """Many connections: where the page stands, then one summary row per connection on it."""
    paging = report.get("paging")
    if not paging:
        return ""
    rows = [_summary_row(c) for c in report.get("connections", [])]
    return ("<h2>Connections</h2>" + _pages(paging, keep)
            + _table(("connection", "tenant", "environment", "token", "subscriptions"), rows, "None."))


def render_status_page(report: Mapping[str, Any], now: datetime,
                       keep: Mapping[str, str] | None = None) -> str:
    """The whole page for a status report (`keep`: query parameters the page links carry, the
    function key)."""
    keep = keep or {}
    sections = "".join(_connection(c, now) for c in report.get("connections", []))
    if report.get("paging"):
        sections = _overview(report, keep) + sections + _pages(report["paging"], keep)
    try:
        generated = exact(parse_iso(str(report.get("generated_at"))))
    except ValueError:
        generated = ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>bc-connector status</title><style>{STYLE}</style></head><body>"
        f'<h1>bc-connector status</h1><p class="muted">As of {_e(generated)}; refreshes every minute '
        '(<a href="">refresh now</a>). Read from storage; no call to Business Central.</p>'
        + _verdict(report, now) + sections + _invalid_rows(report.get("connection_table", {}))
        + _dead_letters(report.get("dead_letters", {})) + "</body></html>"
    )
