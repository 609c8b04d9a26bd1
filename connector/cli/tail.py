"""`python -m connector tail`: every output queue live, one line per new message.

It only peeks, so it never takes a message another consumer needs (nor changes its dequeue count).
The price: a peek sees the oldest 32 messages of a queue, so on a queue that holds 32 or more
messages nobody takes, newer ones show only once older ones are taken; tail says so once per queue
(`--take` consumes instead: for a local run where nothing else reads the output queues).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from connector.cli.lines import format_line, message_type, parse, type_matches, use_colour
from connector.ops.queues import RECEIVE_BATCH, TAKE_LEASE_SECONDS
from connector.settings import (
    QUEUE_COMMAND_RESULTS,
    QUEUE_COMMANDS_POISON,
    QUEUE_HEALTH,
    QUEUE_ITEM_PULLS_POISON,
    QUEUE_ITEMS,
    QUEUE_NOTIFICATIONS_POISON,
    QUEUE_SALES_INVOICES,
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_SALES_ORDERS_POISON,
    QUEUE_SALES_SHIPMENTS,
)
from connector.storage import Storage

OUTPUT_QUEUES = (QUEUE_ITEMS, QUEUE_SALES_SHIPMENTS, QUEUE_SALES_INVOICES, QUEUE_SALES_ORDER_RESULTS,
                 QUEUE_COMMAND_RESULTS, QUEUE_HEALTH, QUEUE_SALES_ORDERS_POISON, QUEUE_COMMANDS_POISON,
                 QUEUE_NOTIFICATIONS_POISON, QUEUE_ITEM_PULLS_POISON)
POLL_SECONDS = 0.5
REMEMBERED = 20_000  # message ids kept to print each message once


class Tail:
    """Polls the queues; `step()` returns the new messages as (queue, text, inserted_on)."""

    def __init__(self, storage: Storage, queues: tuple[str, ...] = OUTPUT_QUEUES, take: bool = False):
        self.clients = {name: storage.queue(name) for name in queues}
        self.take = take
        self.seen: dict[str, None] = {}
        self.full: set[str] = set()

    def step(self) -> list[tuple[str, str, Any]]:
        found = []
        for name, client in self.clients.items():
            if self.take:
                for message in client.receive_messages(messages_per_page=RECEIVE_BATCH,
                                                       max_messages=RECEIVE_BATCH,
                                                       visibility_timeout=TAKE_LEASE_SECONDS):
                    found.append((name, message.content, message.inserted_on))
                    client.delete_message(message)
                continue
            peeked = client.peek_messages(max_messages=RECEIVE_BATCH)
            for message in peeked:
                if message.id not in self.seen:
                    self.seen[message.id] = None
                    found.append((name, message.content, message.inserted_on))
            if len(peeked) >= RECEIVE_BATCH:
                self.full.add(name)
        while len(self.seen) > REMEMBERED:
            del self.seen[next(iter(self.seen))]
        found.sort(key=lambda m: (m[2] is None, m[2]))
        return found


def run_tail(storage: Storage, *, types: list[str], as_json: bool, existing: bool, take: bool,
             limit: int | None, seconds: float | None, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Print new messages until interrupted, `limit` messages or `seconds`; exit code 0 (1 if a
    limit was given and not reached)."""
    tail = Tail(storage, take=take)
    colour = use_colour(out) and not as_json
    waiting = 0 if existing or take else len(tail.step())
    shown = 0
    warned: set[str] = set()
    how = "taking (consuming) them" if take else "peeking, nothing is taken"
    note = f"; {waiting} already waiting not shown (--existing shows them)" if waiting else ""
    print(f"tailing {', '.join(tail.clients)} ({how}){note}; Ctrl-C to stop", file=err, flush=True)
    deadline = None if seconds is None else clock() + seconds
    while True:
        for queue, text, inserted in tail.step():
            body = parse(text)
            if not type_matches(message_type(queue, body), types):
                continue
            if as_json:
                line = json.dumps({"queue": queue, "message": body}, ensure_ascii=False)
            else:
                line = format_line(queue, text, inserted, colour)
            print(line, file=out, flush=True)
            shown += 1
            if limit is not None and shown >= limit:
                return 0
        for queue in sorted(tail.full - warned):
            warned.add(queue)
            print(f"note: {queue} holds {RECEIVE_BATCH} or more messages nobody takes; a peek sees the "
                  f"oldest {RECEIVE_BATCH}, so newer ones show as those are taken (locally: "
                  "`python -m connector tail --take` consumes them)", file=err, flush=True)
        if deadline is not None and clock() >= deadline:
            return 1 if limit is not None else 0
        sleep(POLL_SECONDS)
