"""`python -m connector connections add|list|remove`: the connection table, without a redeploy.

`add NAME --set BC_TENANT=contoso.com --set BC_COMPANY=... --secret-ref kv-name/contoso-secret`
writes (or replaces) the row of NAME in `bcconnectiondefs`; a secret is only ever a Key Vault
reference (`--secret-ref VAULT/SECRET[/VERSION]` writes one for BC_CLIENT_SECRET). Each value is
checked by its setting; with `--settings FILE` the whole connection is checked against those app
settings (what an unset value falls back to). `list` shows every row with its state and the app's
verdict (secrets as the reference, never a value); `remove NAME` marks the row `removing`: the app
deletes the connection's BC subscriptions, then the row. The running app picks each change up within
CONNECTIONS_REFRESH_SECONDS (at once for a name it has not loaded).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from connector.cli.errors import CLIError
from connector.cli.target import Target, add_target_options

SECRET_REF_HELP = "VAULT/SECRET[/VERSION]: BC_CLIENT_SECRET as a Key Vault reference to this secret"


def register(commands: argparse._SubParsersAction) -> None:
    """Add `connections` with its sub-commands `add`, `list`, `remove`."""
    connections = commands.add_parser(
        "connections", help="connections in the connection table (add, list, remove; no redeploy)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = connections.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add or replace a connection's row")
    add_target_options(add)
    add.add_argument("name", help="the connection's name (a-z, 0-9, -)")
    add.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE", dest="values",
                     help="a per-connection setting (repeatable), e.g. BC_TENANT=contoso.com")
    add.add_argument("--secret-ref", default=None, metavar="VAULT/SECRET", help=SECRET_REF_HELP)
    listing = actions.add_parser("list", help="every connection row, its state and the app's verdict")
    add_target_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per row")
    remove = actions.add_parser("remove", help="remove a connection (its BC subscriptions are deleted)")
    add_target_options(remove)
    remove.add_argument("name")


def run(args: argparse.Namespace, target: Target) -> int:
    from connector.connection_table import list_rows, mark_removing, put_connection
    from connector.settings import SettingsError

    if args.action == "add":
        values = parse_values(args.values, args.secret_ref)
        try:
            checked = check(args.name, values, target)
            put_connection(target.storage(), args.name, values)
        except SettingsError as exc:
            raise CLIError(str(exc)) from None
        print(f"connection {args.name}: row written ({', '.join(sorted(values)) or 'no settings of its own'})"
              f"; {checked}; the app picks it up within CONNECTIONS_REFRESH_SECONDS (at once when asked "
              "for it)")
        return 0
    if args.action == "remove":
        if not mark_removing(target.storage(), args.name):
            raise CLIError(f"no connection row {args.name!r} (`connections list` shows them; a connection "
                           "of BC_CONNECTIONS is an app setting)")
        print(f"connection {args.name}: marked for removal; the app deletes its BC subscriptions, then the "
              "row (`connections list` shows it until then)")
        return 0
    rows = list_rows(target.storage())
    for row in rows:
        shown = shown_row(row)
        print(json.dumps(shown) if args.json else line(shown))
    if not rows and not args.json:
        print(f"no connection rows ({target.where()})")
    return 0


def parse_values(pairs: list[str], secret_ref: str | None) -> dict[str, str]:
    """`--set` pairs (and `--secret-ref`) as the row's settings; CLIError for a malformed one."""
    from connector.keyvault import BadReference, reference_text

    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set {pair!r}: give SETTING=VALUE, e.g. BC_TENANT=contoso.com")
        values[key.strip()] = value
    if secret_ref:
        parts = secret_ref.split("/")
        if len(parts) not in (2, 3):
            raise CLIError(f"--secret-ref {secret_ref!r}: give VAULT/SECRET or VAULT/SECRET/VERSION")
        try:
            values["BC_CLIENT_SECRET"] = reference_text(*parts)
        except BadReference as exc:
            raise CLIError(f"--secret-ref: {exc}") from None
    return values


def check(name: str, values: Mapping[str, str], target: Target) -> str:
    """Check a row before it is written; what was checked (SettingsError otherwise)."""
    from connector.connection_table import secret_references
    from connector.settings import CONNECTION_SECRETS, check_connection_name, check_connection_values

    check_connection_name(name, "connection name")
    check_connection_values(name, values)
    refs = secret_references(name, values)
    if "BC_TENANT" not in target.values:
        return f"each value checked ({len(refs)} Key Vault reference(s), read by the app)"
    from connector.settings import load_settings, table_connection

    stand_in = {k: ",".join("stand-in" if i.strip() else "" for i in v.split(",")) if k in CONNECTION_SECRETS
                else v for k, v in values.items()}  # references are read by the app, with its identity
    table_connection(load_settings(target.values).values, name, stand_in)
    return f"checked with the app settings of {target.source}"


def shown_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as `list` shows it: settings, secrets as their reference (never a plaintext value)."""
    from connector.connection_table import INVALID, REMOVING, STATE, row_settings
    from connector.keyvault import is_reference
    from connector.settings import CONNECTION_SECRETS

    settings = {}
    for key, value in sorted(row_settings(row).items()):
        if key in CONNECTION_SECRETS:
            items = [v.strip() for v in value.split(",") if v.strip()]
            value = ",".join(v if is_reference(v) else "<plaintext: refused>" for v in items)
        settings[key] = value
    invalid = str(row.get(INVALID) or "")
    state = "removing" if row.get(STATE) == REMOVING else ("invalid" if invalid else "active")
    return {"name": row["RowKey"], "state": state, "invalid": invalid, "settings": settings}


def line(shown: Mapping[str, Any]) -> str:
    settings = " ".join(f"{k}={v}" for k, v in shown["settings"].items())
    why = f"  ({shown['invalid']})" if shown["invalid"] else ""
    return f"{shown['name']:<24} {shown['state']:<9} {settings}{why}"
