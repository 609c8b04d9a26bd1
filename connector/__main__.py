"""Operator commands (`python -m connector <command> --help` for the options).

* `peek <queue>` prints the oldest messages of one of the connector's queues, JSON indented, and leaves
  them there; `--take` takes them off instead, `--wait N` waits up to N seconds for one, e.g.
  `python -m connector peek sales-order-results --wait 30`.
* `replay-poison <queue>` moves the messages of `<queue>-poison` back to `<queue>` unchanged (after the
  cause was fixed), e.g. `make replay-poison QUEUE=sales-orders`.
* `tail`, `send`, `trigger`, `status`: see `connector/cli/` (`python -m connector tail --help`).
* `schema` writes the message and event-data JSON Schemas (`schemas/*.json`) from the models;
  `--from-metadata --connection C` writes those of the connection's declared triggers from BC's
  `$metadata` (a file already there is kept unless `--overwrite`: the published ones stay).
* `entities --connection C` lists what BC can watch (`webhookSupportedResources`, custom API pages
  included) and its API routes, marks what the connection declares, and with `--entity-set X`
  (`--api publisher/group/version` for a custom page) prints a ready `TRIGGERS` declaration.
* `doctor [--connection C]` runs the go-live checklist against the configured BC (real or emulated) and
  prints a fix under each failure; exit code 0 only when every check passes.

An unknown queue is an error (exit 2). Storage comes from the app settings in the environment
(`AzureWebJobsStorage`, ...) or, with `--settings`, from the `Values` of a `local.settings.json`-style file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from connector.cli import commands as cli_commands
from connector.cli.errors import explain
from connector.cli.target import add_target_options, resolve, settings_values
from connector.event_schemas import event_data_schemas
from connector.ops.queues import (
    RECEIVE_BATCH,
    UnknownQueue,
    check_queue,
    check_replayable,
    pretty,
    read_messages,
    replay_poison,
)
from connector.orders import commands
from connector.orders.schema import json_schemas, schema_text
from connector.storage import Storage

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def write_schemas(directory: Path) -> list[Path]:
    """Write every published JSON Schema into `directory`; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in (json_schemas() | commands.json_schemas() | event_data_schemas()).items():
        path = directory / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


def _settings_values(path: Path) -> dict[str, str]:
    """The `Values` of a settings file (CLIError, one line, when it is missing or not JSON)."""
    return settings_values(path)


def _storage(args: argparse.Namespace) -> Storage:
    """Storage as `--settings`, the running `make run` or the environment name it; fails fast."""
    return resolve(args).storage()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m connector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    settings = argparse.ArgumentParser(add_help=False)
    add_target_options(settings)
    peek = commands.add_parser("peek", parents=[settings],
                               help="print the oldest messages of a queue (left there unless --take)")
    peek.add_argument("queue", help="one of the connector's queues, e.g. sales-order-results")
    peek.add_argument("--max", type=int, default=RECEIVE_BATCH,
                      help=f"at most this many (default and most for a peek: {RECEIVE_BATCH})")
    peek.add_argument("--take", action="store_true", help="take the messages off the queue (consume them)")
    peek.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="wait up to this long for a message; exit 1 if none came")
    replay = commands.add_parser("replay-poison", parents=[settings],
                                 help="move <queue>-poison messages back to <queue>")
    replay.add_argument("queue", help="the queue to refill, e.g. sales-orders")
    replay.add_argument("--max", type=int, default=None, help="move at most this many")
    schema = commands.add_parser("schema", parents=[settings], help="write the message JSON Schemas")
    schema.add_argument("--out", type=Path, default=SCHEMA_DIR, help=f"directory (default {SCHEMA_DIR})")
    schema.add_argument("--from-metadata", action="store_true",
                        help="write the event schemas of the connection's declared triggers from BC's "
                             "$metadata (a schema already in --out is kept unless --overwrite)")
    schema.add_argument("--connection", default=None, help="with --from-metadata: the connection")
    schema.add_argument("--overwrite", action="store_true", help="with --from-metadata: replace files")
    entities = commands.add_parser("entities", parents=[settings],
                                   help="what BC can watch, and a ready trigger declaration for one")
    entities.add_argument("--connection", default=None, help="the connection (default: default)")
    entities.add_argument("--entity-set", default=None, help="print a declaration for this entity set")
    entities.add_argument("--api", default="v2.0",
                          help="its API route (default v2.0), e.g. contoso/shop/v1.0")
    doctor = commands.add_parser("doctor", parents=[settings],
                                 help="the go-live checklist (exit 0 only when every check passes)")
    doctor.add_argument("--connection", default=None, help="check only this connection (default: all)")
    cli_commands.register(commands)
    return parser


def _doctor(args: argparse.Namespace) -> int:
    """The `doctor` command: every check of `connector/ops/doctor.py`, with the app's own objects."""
    from connector.ops.doctor import Check, DoctorContext, render, run_checks
    from connector.runtime import Runtime
    from connector.settings import SettingsError, environment_values, load_settings

    values = _settings_values(args.settings) if args.settings else environment_values()
    try:
        settings = load_settings(values)
        if args.connection is None or args.connection in settings.connections:
            settings.connection(args.connection)
        else:  # maybe a row of the connection table: the runtime's live catalogue knows
            runtime = Runtime(settings)
            try:
                runtime.settings.connection(args.connection)
            finally:
                runtime.close()
    except (SettingsError, KeyError) as exc:
        print(render([("app", Check("settings", False, str(exc).strip('"'),
                                    "set the named setting (README: settings)"))]))
        return 1
    runtime = Runtime(settings)
    settings = runtime.settings  # the app settings' connections and the connection table's
    try:
        ctx = DoctorContext(settings, runtime.storage,
                            lambda name, force: runtime.tokens.access_token(name, force_refresh=force),
                            runtime.bc, runtime.company_id, values)
        results = run_checks(ctx, args.connection)
        print(render(results))
        return 0 if all(check.ok for _, check in results) else 1
    finally:
        runtime.close()


def _schemas_from_metadata(args: argparse.Namespace) -> int:
    """`schema --from-metadata`: each declared trigger's event-data schemas and each declared command's
    message schema (`bc-command.<name>.schema.json`) from its API's $metadata."""
    from connector.event_schemas import command_schema, metadata_schemas, parse_csdl
    from connector.runtime import Runtime
    from connector.settings import load_settings

    runtime = Runtime(load_settings(_settings_values(args.settings) if args.settings else None))
    try:
        conn = runtime.settings.connection(args.connection)
        bc = runtime.bc(conn.name)
        documents: dict[str, tuple] = {}

        def csdl(api: str) -> tuple:
            if api not in documents:
                metadata = bc.request("GET", f"{bc.environment_root}/api/{api}/$metadata",
                                      headers={"Accept": "application/xml"})
                documents[api] = parse_csdl(metadata.text)
            return documents[api]

        schemas = [item for trigger in conn.triggers
                   for item in metadata_schemas(trigger, *csdl(trigger.api)).items()]
        schemas += [(f"bc-command.{command.name}.schema.json", command_schema(command, *csdl(command.api)))
                    for command in conn.commands]
        args.out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas:
            target = args.out / name
            if target.exists() and not args.overwrite:
                print(f"kept {target}")
                continue
            target.write_text(schema_text(schema), encoding="utf-8")
            print(f"wrote {target}")
        return 0
    finally:
        runtime.close()


def _entities(args: argparse.Namespace) -> int:
    """The `entities` command: BC's answer, read with the connection's own sign-in."""
    from connector.declarations import STANDARD_API
    from connector.runtime import Runtime
    from connector.settings import load_settings
    from connector.webhooks import discovery

    runtime = Runtime(load_settings(_settings_values(args.settings) if args.settings else None))
    try:
        conn = runtime.settings.connection(args.connection)
        bc = runtime.bc(conn.name)
        company_id = runtime.company_id(conn.name)
        watched = {t.resource for t in conn.triggers}
        if args.entity_set:
            resource = f"{args.api}/{args.entity_set}"
            supported = discovery.supported_resources(bc, company_id)
            if supported is not None and resource not in supported:
                print(f"BC cannot watch {resource} in company {company_id} (not in "
                      "webhookSupportedResources)", file=sys.stderr)
                return 1
            print(json.dumps(discovery.declaration(args.api, args.entity_set), indent=2))
            return 0
        print(f"connection {conn.name}, company {company_id}")
        print("API routes (apiRoutes): " + ", ".join(discovery.api_routes(bc, company_id)))
        print("what BC can watch (webhookSupportedResources; * = declared on this connection):")
        for resource in sorted(discovery.supported_resources(bc, company_id) or (),
                               key=lambda r: (not r.startswith(STANDARD_API + "/"), r)):
            print(f"  {'*' if resource in watched else ' '} {resource}")
        return 0
    finally:
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    """Run a command; an expected failure (storage or the app down, a bad settings file) is one line."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the expected ones become one line, the rest re-raise
        message = explain(exc)
        if message is None:
            raise
        return cli_commands.fail(message)


def _main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in cli_commands.COMMANDS:
        return cli_commands.run(args)
    if args.command == "schema" and args.from_metadata:
        return _schemas_from_metadata(args)
    if args.command == "schema":
        for path in write_schemas(args.out):
            print(f"wrote {path}")
        return 0
    if args.command == "entities":
        return _entities(args)
    if args.command == "doctor":
        return _doctor(args)
    try:
        (check_replayable if args.command == "replay-poison" else check_queue)(args.queue)
    except UnknownQueue as exc:
        parser.error(str(exc))
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")
    if args.command == "replay-poison":
        moved = replay_poison(_storage(args), args.queue, args.max)
        print(f"moved {moved} message(s) from {args.queue}-poison to {args.queue}")
        return 0
    texts = read_messages(_storage(args), args.queue, limit=args.max, take=args.take, wait=args.wait)
    for text in texts:
        print(pretty(text))
    verb = "took" if args.take else "peeked at"
    print(f"{verb} {len(texts)} message(s) on {args.queue}", file=sys.stderr)
    return 1 if args.wait and not texts else 0


if __name__ == "__main__":
    sys.exit(main())
