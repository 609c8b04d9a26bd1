"""Operator access to the connector's queues: look at messages, take them, replay a poison queue.

Only the connector's own queues (`QUEUE_NAMES`) are accepted, so a typo is an error rather than a
new, empty queue that "worked".
"""
from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from connector.errors import ConnectorError
from connector.settings import QUEUE_NAMES
from connector.storage import Storage

RECEIVE_BATCH = 32  # the most one peek or receive returns
REPLAY_LEASE_SECONDS = 60
TAKE_LEASE_SECONDS = 30
POLL_SECONDS = 0.5


class UnknownQueue(ConnectorError, ValueError):
    """A queue name that is not one of the connector's queues (or has no poison queue)."""

    retryable = False
    http_status = 404


def poisoned_queues() -> tuple[str, ...]:
    """The queues that have a `-poison` queue to replay from."""
    return tuple(q for q in QUEUE_NAMES if f"{q}-poison" in QUEUE_NAMES)


def check_queue(name: str) -> str:
    """`name` if it is one of the connector's queues, else UnknownQueue listing them."""
    if name not in QUEUE_NAMES:
        raise UnknownQueue(f"unknown queue {name!r}; the connector's queues: {', '.join(QUEUE_NAMES)}")
    return name


def check_replayable(name: str) -> str:
    """`name` if messages can be replayed into it from `<name>-poison`, else UnknownQueue."""
    if name.endswith("-poison") and name.removesuffix("-poison") in poisoned_queues():
        raise UnknownQueue(f"name the queue to refill, not its poison queue: {name.removesuffix('-poison')}")
    if name not in poisoned_queues():
        raise UnknownQueue(f"{name!r} is not a queue with a poison queue; replay one of: "
                           f"{', '.join(poisoned_queues())}")
    return name


def replay_poison(storage: Storage, queue: str, limit: int | None = None) -> int:
    """Move messages from `<queue>-poison` to `<queue>` as they are (send, then delete); returns how many.

    At most the number waiting at the start (or `limit`) are moved, so a message that fails again
    while the replay runs is not cycled forever. A crash between send and delete leaves a copy in
    both queues; an `externalDocumentNumber` makes the second delivery a `duplicate`, not a new order.
    """
    poison = storage.queue(f"{check_replayable(queue)}-poison")
    target = storage.queue(queue)
    waiting = poison.get_queue_properties().approximate_message_count or 0
    todo = waiting if limit is None else min(limit, waiting)
    moved = 0
    for message in _receive(poison, todo, REPLAY_LEASE_SECONDS):
        target.send_message(message.content)
        poison.delete_message(message)
        moved += 1
    return moved


def read_messages(storage: Storage, queue: str, *, limit: int = RECEIVE_BATCH, take: bool = False,
                  wait: float = 0.0, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """The texts of up to `limit` messages, oldest first. Peeks (leaves them on the queue) unless
    `take`, which receives and deletes them. With `wait`, polls up to that many seconds until at
    least one message is there."""
    client = storage.queue(check_queue(queue))
    deadline = clock() + wait
    while True:
        texts = _take(client, limit) if take else _peek(client, limit)
        if texts or clock() >= deadline:
            return texts
        sleep(POLL_SECONDS)


def _peek(client: Any, limit: int) -> list[str]:
    return [m.content for m in client.peek_messages(max_messages=min(limit, RECEIVE_BATCH))]


def _take(client: Any, limit: int) -> list[str]:
    texts = []
    for message in _receive(client, limit, TAKE_LEASE_SECONDS):
        texts.append(message.content)
        client.delete_message(message)
    return texts


def _receive(client: Any, count: int, lease_seconds: int) -> Iterator[Any]:
    """Up to `count` messages, received in batches, each invisible to others for `lease_seconds`
    (the caller deletes each one it is done with)."""
    received = 0
    while received < count:
        size = min(RECEIVE_BATCH, count - received)
        batch = list(client.receive_messages(messages_per_page=size, max_messages=size,
                                             visibility_timeout=lease_seconds))
        if not batch:
            return
        for message in batch:
            received += 1
            yield message


def pretty(text: str) -> str:
    """A message for people: JSON indented (non-ASCII kept), anything else as it is; either way with
    no character a terminal would act on (`printable`): a poison message is anyone's text."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return printable(text)
    return printable(json.dumps(value, indent=2, ensure_ascii=False))


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with control, format (bidi overrides, zero-width), surrogate, private-use, unassigned
    and line/paragraph-separator characters written as `\\uXXXX` (newlines and tabs kept), so no
    escape sequence reaches the terminal."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in _UNPRINTABLE
                   else (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}") for ch in text)
