"""`python -m connector status`: the banner of the `make run` going on this checkout again (URLs,
functions, settings file and overrides in effect) and the connections as the app reports them now;
against Azure (`--url`, `--key`) the connections only."""
from __future__ import annotations

import sys
from typing import Any, TextIO

from connector.cli.errors import CLIError
from connector.cli.http import app_call
from connector.cli.lines import printable
from connector.cli.target import Target


def connection_lines(report: dict[str, Any]) -> list[str]:
    """One line per connection (token, company, subscriptions), and the poison queues in use."""
    lines = []
    for conn in report.get("connections", []):
        token = conn.get("token", {})
        subs = conn.get("subscriptions", [])
        active = sum(1 for s in subs if s.get("status") == "active")
        stale = [s for s in subs if s.get("url_current") is False]
        state = token.get("state", "?")
        company = conn.get("company_id") or "(not chosen yet)"
        text = f"  {conn.get('name')}: token {state}, company {company}, " + (
            f"{active}/{len(subs)} subscriptions active" if subs else
            "no webhook subscriptions yet (`python -m connector trigger item.created` creates them)")
        if stale:
            text += f"; {len(stale)} notify an old URL (recreated at the next renewal run or `make run`)"
        if token.get("error"):
            text += f"; {token['error']}"
        lines.append(printable(text))
    dead = {q: n for q, n in (report.get("dead_letters") or {}).items() if n}
    if dead:
        lines.append("  poison: " + ", ".join(f"{q} {n}" for q, n in dead.items())
                     + " (python -m connector peek <queue>)")
    return lines


def run_status(target: Target, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if target.run is not None:
        for line in target.run.banner:
            print(line, file=out)
    else:
        print(f"target: {target.source}; app {target.host_url or '(no URL: --url)'}", file=out)
    response = app_call(target, "GET", "status", headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise CLIError(f"{target.host_url}/api/status answered {response.status_code}: {response.text[:200]}")
    print("connections (now):", file=out)
    for line in connection_lines(response.json()):
        print(line, file=out)
    out.flush()
    return 0
