"""`python -m connector send FILE|-`: a sales order (or, with a `type`, a declared command),
checked against its schema (the rules the connector applies: `connector.orders.schema`,
`connector.orders.commands`) before it is queued on `sales-orders` (`bc-commands`); then the result
from `sales-order-results` (`bc-command-results`), found by peeking (left there for its consumer) by
the order's `externalDocumentNumber` or by its trace (a `traceparent` is added when the message has
none: the result carries the same trace id)."""
from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from connector.cli.errors import CLIError
from connector.cli.lines import format_line, printable, use_colour
from connector.ops.queues import RECEIVE_BATCH
from connector.orders.commands import parse_command
from connector.orders.schema import OrderRejected, load_json, parse_order
from connector.settings import (
    QUEUE_COMMAND_RESULTS,
    QUEUE_COMMANDS,
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_SALES_ORDERS,
)
from connector.storage import Storage

MAX_MESSAGE_BYTES = 64 * 1024  # a queue message; a larger order goes by claim check (docs/sales-orders.md)
POLL_SECONDS = 0.5


def read_order(source: str, stdin: TextIO = sys.stdin) -> str:
    """The text of FILE, or of stdin for `-`."""
    if source == "-":
        return stdin.read()
    try:
        with open(source, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise CLIError(f"{source}: no such file (give a JSON order file, or - to read stdin)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{source} cannot be read: {exc}") from None


def is_command(text: str) -> bool:
    """A message with a `type` is a command (bc-commands); anything else is a sales order."""
    try:
        body = load_json(text)
    except OrderRejected:
        return False
    return isinstance(body, dict) and "type" in body


def queues_for(text: str) -> tuple[str, str]:
    """(the queue it goes to, the queue its result comes on)."""
    return (QUEUE_COMMANDS, QUEUE_COMMAND_RESULTS) if is_command(text) else \
        (QUEUE_SALES_ORDERS, QUEUE_SALES_ORDER_RESULTS)


def checked(text: str) -> tuple[str, str | None, str]:
    """(the message to queue, its key, its trace id) or CLIError naming every problem."""
    what = "command" if is_command(text) else "order"
    try:
        if what == "command":
            command = parse_command(text)
            key, traceparent = None, command.traceparent
        else:
            order = parse_order(text)
            key, traceparent = order.idempotency_key, order.traceparent
    except OrderRejected as exc:
        raise CLIError(f"not sent: the {what} is invalid ({exc.code}): {exc}") from None
    body = json.loads(text)
    if not traceparent:
        body["traceparent"] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    message = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        raise CLIError(f"not sent: the {what} is {len(message.encode())} bytes, over a queue message's "
                       "64 KiB; send it by claim check (docs/sales-orders.md)")
    return message, key, _trace_id(body["traceparent"])


def _trace_id(traceparent: Any) -> str:
    parts = str(traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else ""


def find_result(results: Any, key: str | None, trace_id: str, after: set[str]) -> tuple[dict, Any] | None:
    """The result for the order (by key, else by trace id) among the peekable results not in `after`."""
    for message in results.peek_messages(max_messages=RECEIVE_BATCH):
        if message.id in after:
            continue
        try:
            body = json.loads(message.content)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        if (key is not None and body.get("externalDocumentNumber") == key) or \
                _trace_id(body.get("traceparent")) == trace_id:
            return body, message.inserted_on
    return None


def run_send(storage: Storage, text: str, *, wait: float, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Queue the order and print its result; 0 created/duplicate, 1 failed or no result in `wait`."""
    message, key, trace_id = checked(text)
    queue, results_queue = queues_for(text)
    results = storage.queue(results_queue)
    before = {m.id for m in results.peek_messages(max_messages=RECEIVE_BATCH)}
    storage.queue(queue).send_message(message)
    shown = printable(key) if key else "(no externalDocumentNumber)" if queue == QUEUE_SALES_ORDERS else ""
    print(f"queued on {queue}: {shown + ', ' if shown else ''}trace {trace_id}", file=err, flush=True)
    if wait <= 0:
        return 0
    print(f"waiting up to {wait:g} s for its result on {results_queue} ...", file=err, flush=True)
    deadline = clock() + wait
    while clock() < deadline:
        found = find_result(results, key, trace_id, before)
        if found is not None:
            body, inserted = found
            print(format_line(results_queue, json.dumps(body), inserted, use_colour(out)),
                  file=out)
            for line in json.dumps(body, indent=2, ensure_ascii=False).splitlines():
                print(printable(line), file=out)
            out.flush()
            return 1 if body.get("status") == "failed" else 0
        sleep(POLL_SECONDS)
    raise CLIError(f"no result on {results_queue} within {wait:g} s: is the app running and reading "
                   f"{queue}? (`python -m connector status`; the message stays queued)")
