"""Operator commands (`python -m connector <command> --help` for the options).

* `peek <queue>` prints the oldest messages of one of the connector's queues, JSON indented, and leaves
  them there; `--take` takes them off instead, `--wait N` waits up to N seconds for one, e.g.
  `python -m connector peek sales-order-results --wait 30`.
* `replay-poison <queue>` moves the messages of `<queue>-poison` back to `<queue>` unchanged (after the
  cause was fixed), e.g. `make replay-poison QUEUE=sales-orders`.
* `tail`, `send`, `trigger`, `status`: see `connector/cli/` (`python -m connector tail --help`).
* `schema` writes the message and event-data JSON Schemas (`schemas/*.json`) from the models.

An unknown queue is an error (exit 2). Storage comes from the app settings in the environment
(`AzureWebJobsStorage`, ...) or, with `--settings`, from the `Values` of a `local.settings.json`-style file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from connector.cli import commands as cli_commands
from connector.cli.errors import explain
from connector.cli.target import add_target_options, resolve
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
from connector.orders.schema import json_schemas, schema_text
from connector.storage import Storage

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def write_schemas(directory: Path) -> list[Path]:
    """Write every published JSON Schema into `directory`; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in (json_schemas() | event_data_schemas()).items():
        path = directory / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


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
    schema = commands.add_parser("schema", help="write the message JSON Schemas")
    schema.add_argument("--out", type=Path, default=SCHEMA_DIR, help=f"directory (default {SCHEMA_DIR})")
    cli_commands.register(commands)
    return parser


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
    if args.command == "schema":
        for path in write_schemas(args.out):
            print(f"wrote {path}")
        return 0
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
