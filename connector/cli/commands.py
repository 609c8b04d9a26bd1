"""The CLI commands of this package: their options (`register`) and how they run (`run`)."""
from __future__ import annotations

import argparse
import sys

from connector.cli.target import add_target_options, resolve

COMMANDS = ("tail", "send", "trigger", "status", "connections")


def register(commands: argparse._SubParsersAction) -> None:
    """Add `tail`, `send`, `trigger`, `status` and `connections` to the CLI's sub-commands."""
    from connector.cli import connections
    from connector.cli.trigger import CHANGES

    tail = commands.add_parser("tail", help="every output queue live, one line per event (peeks: "
                                            "takes nothing)")
    add_target_options(tail)
    tail.add_argument("--type", action="append", default=[], metavar="PATTERN",
                      help="only these types (repeatable; shell patterns, `bc.` optional): item.created, "
                           "bc.salesShipment.*, order.failed, poison.*")
    tail.add_argument("--json", action="store_true", help="one JSON object per line: {queue, message}")
    tail.add_argument("--existing", action="store_true", help="show the messages already waiting, too")
    tail.add_argument("--take", action="store_true",
                      help="take (consume) the messages: only where nothing else reads these queues")
    tail.add_argument("--count", type=int, default=None, help="stop after this many")
    tail.add_argument("--seconds", type=float, default=None, help="stop after this long (exit 1 if --count "
                      "was not reached)")

    send = commands.add_parser("send", help="check a sales order against its schema, queue it, print "
                                            "its result")
    add_target_options(send)
    send.add_argument("file", help="a JSON sales order (docs/sales-orders.md), or - for stdin")
    send.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                      help="how long to wait for the result (0: do not wait); default 60")

    trigger = commands.add_parser("trigger", help="make a change in the local BC emulator; its event follows",
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  description="changes:\n" + "\n".join(
                                      f"  {c.name:<16} {c.what} -> {c.event}" for c in CHANGES.values()))
    add_target_options(trigger)
    trigger.add_argument("change", choices=sorted(CHANGES), metavar="change",
                         help="one of: " + ", ".join(CHANGES))
    trigger.add_argument("--connection", default="default", help="the connection (default: default)")
    trigger.add_argument("--item", default=None, metavar="NUMBER",
                         help="the item's number (item.created: the new one's; others: default the newest)")
    trigger.add_argument("--order", default=None, metavar="KEY",
                         help="order.*: the order's externalDocumentNumber or BC number (default the newest)")

    status = commands.add_parser("status", help="the banner of `make run` again, and the connections now")
    add_target_options(status)
    connections.register(commands)


def run(args: argparse.Namespace) -> int:
    """Run one of this package's commands (CLIError and the SDKs' errors propagate to the caller)."""
    target = resolve(args)
    if args.command == "tail":
        from connector.cli.tail import run_tail

        return run_tail(target.storage(), types=args.type, as_json=args.json, existing=args.existing,
                        take=args.take, limit=args.count, seconds=args.seconds)
    if args.command == "send":
        from connector.cli.send import checked, read_order, run_send

        text = read_order(args.file)
        checked(text)  # an invalid order is refused before storage is asked anything
        return run_send(target.storage(), text, wait=args.wait)
    if args.command == "trigger":
        from connector.cli.trigger import run_trigger

        return run_trigger(target, args.change, connection=args.connection, number=args.item,
                           order=args.order)
    if args.command == "connections":
        from connector.cli.connections import run as run_connections

        return run_connections(args, target)
    from connector.cli.status import run_status

    return run_status(target)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1
