"""Operator commands.

* `python -m connector replay-poison <queue>` moves the messages of `<queue>-poison` back to `<queue>`
  unchanged (after the cause was fixed), e.g. `make replay-poison QUEUE=sales-orders`.
* `python -m connector schema` writes the message JSON Schemas (`schemas/*.json`) from the models.

Storage comes from the app settings in the environment (`AzureWebJobsStorage`, ...) or, with
`--settings`, from the `Values` of a `local.settings.json`-style file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from connector.orders.schema import json_schemas, schema_text
from connector.settings import load_storage_settings
from connector.storage import Storage

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
RECEIVE_BATCH = 32  # the most one receive returns
REPLAY_LEASE_SECONDS = 60


def replay_poison(storage: Storage, queue: str, limit: int | None = None) -> int:
    """Move messages from `<queue>-poison` to `<queue>` as they are (send, then delete); returns how many.

    At most the number waiting at the start (or `limit`) are moved, so a message that fails again
    while the replay runs is not cycled forever. A crash between send and delete leaves a copy in
    both queues; an `externalDocumentNumber` makes the second delivery a `duplicate`, not a new order.
    """
    poison = storage.queue(f"{queue}-poison")
    target = storage.queue(queue)
    waiting = poison.get_queue_properties().approximate_message_count or 0
    todo = waiting if limit is None else min(limit, waiting)
    moved = 0
    while moved < todo:
        size = min(RECEIVE_BATCH, todo - moved)
        batch = list(poison.receive_messages(messages_per_page=size, max_messages=size,
                                             visibility_timeout=REPLAY_LEASE_SECONDS))
        if not batch:
            break
        for message in batch:
            target.send_message(message.content)
            poison.delete_message(message)
            moved += 1
    return moved


def write_schemas(directory: Path) -> list[Path]:
    """Write every published JSON Schema into `directory`; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


def _settings_values(path: Path) -> dict[str, str]:
    raw = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    return {key: str(value) for key, value in raw.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay-poison", help="move <queue>-poison messages back to <queue>")
    replay.add_argument("queue", help="the queue to refill, e.g. sales-orders")
    replay.add_argument("--max", type=int, default=None, help="move at most this many")
    replay.add_argument("--settings", type=Path, default=None,
                        help="read the app settings from this local.settings.json-style file")
    schema = commands.add_parser("schema", help="write the message JSON Schemas")
    schema.add_argument("--out", type=Path, default=SCHEMA_DIR, help=f"directory (default {SCHEMA_DIR})")
    args = parser.parse_args(argv)

    if args.command == "schema":
        for path in write_schemas(args.out):
            print(f"wrote {path}")
        return 0
    if args.queue.endswith("-poison"):
        parser.error(f"name the queue to refill, not its poison queue: {args.queue.removesuffix('-poison')}")
    storage = load_storage_settings(_settings_values(args.settings) if args.settings else None)
    moved = replay_poison(Storage(storage), args.queue, args.max)
    print(f"moved {moved} message(s) from {args.queue}-poison to {args.queue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
