"""Timer work fanned out through a queue: one `bc-connection-work` message per connection and task.

A timer run (item pull, sweep, subscription renewal) with many connections does not loop over them in
one invocation: it queues one unit per connection (`WorkQueue.enqueue`), so the host scales the units
out over its instances and one slow company delays no other. A unit runs the same single-connection
run the loop ran (leased as before: a unit that meets another run of its connection ends at once, that
run covers it), so running one twice is harmless. Units are signed (`connector.signing`); one that can
never run (unsigned, unknown task or connection) goes to `bc-connection-work-poison` at once with the
reason beside it, and a replayed poison message is read back as the unit it keeps. A connection that is
not signed in is skipped with a log line (the next timer run queues it again).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from connector.bc.errors import TokenUnavailable
from connector.errors import ConnectorError
from connector.settings import (
    QUEUE_CONNECTION_WORK,
    QUEUE_CONNECTION_WORK_POISON,
    Settings,
    UnknownConnection,
)
from connector.signing import UnsignedMessage, open_json, queue_signer, seal_json
from connector.storage import Storage

log = logging.getLogger(__name__)

TASKS = ("pull", "sweep", "renewal")
ENQUEUE_SENDERS = 16  # units a timer run sends at once
SKIPPED_STATES = frozenset({"not-signed-in", "refresh-failed", "credentials-refused", "paused"})


class BadWorkUnit(ConnectorError, ValueError):
    """A `bc-connection-work` message that is no unit the connector queued."""

    retryable = False
    http_status = 400


@dataclass(frozen=True)
class WorkUnit:
    """One task for one connection, queued by a timer run at `queued_at` (epoch seconds)."""

    task: str
    connection: str
    queued_at: float

    def text(self) -> str:
        return json.dumps({"task": self.task, "connection": self.connection, "queuedAt": self.queued_at},
                          separators=(",", ":"))


def parse_unit(text: str) -> WorkUnit:
    """The unit in an (opened) message; BadWorkUnit naming the problem otherwise."""
    try:
        body = json.loads(text)
    except ValueError:
        raise BadWorkUnit("not JSON") from None
    if not isinstance(body, dict):
        raise BadWorkUnit("not a JSON object")
    task, connection, queued = body.get("task"), body.get("connection"), body.get("queuedAt")
    if task not in TASKS:
        raise BadWorkUnit(f"task {task!r} is not one of {', '.join(TASKS)}")
    if not isinstance(connection, str) or not connection:
        raise BadWorkUnit("connection missing")
    if not isinstance(queued, int | float) or isinstance(queued, bool):
        raise BadWorkUnit("queuedAt missing")
    return WorkUnit(task, connection, float(queued))


def kept_unit(text: str) -> str:
    """The unit a poison message keeps (`{"reason", "message"}`), or `text` itself."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and set(body) == {"reason", "message"} and isinstance(body["message"], str):
        return body["message"]
    return text


class WorkQueue:
    """Queues and runs the units (built once by the runtime)."""

    def __init__(self, settings: Settings, storage: Storage, *, clock: Callable[[], float] = time.time):
        self._settings = settings
        self._storage = storage
        self._clock = clock
        self._signer = queue_signer(settings.token_encryption_keys, QUEUE_CONNECTION_WORK)

    @property
    def enabled(self) -> bool:
        """Whether timers fan out (TIMER_FAN_OUT_MIN_CONNECTIONS; fewer connections run in the timer)."""
        least = self._settings.timer_fan_out_min_connections
        return least > 0 and len(self._settings.connections) >= least

    def enqueue(self, task: str) -> int:
        """One unit of `task` per configured connection, ENQUEUE_SENDERS sends at once (1,000 one
        after the other took 5-10 s on Azure, over 100 s on a loaded machine, and every unit's wait
        counts from the timer's start); the number queued."""
        if task not in TASKS:
            raise BadWorkUnit(f"task {task!r} is not one of {', '.join(TASKS)}")
        sender = self._storage.sender(QUEUE_CONNECTION_WORK)
        now = self._clock()
        texts = [seal_json(self._signer, WorkUnit(task, name, now).text())
                 for name in self._settings.connections]
        senders = max(1, min(ENQUEUE_SENDERS, len(texts)))
        with ThreadPoolExecutor(senders, thread_name_prefix="fan-out") as pool:
            list(pool.map(sender.send, texts))
        log.info("%s: %d unit(s) queued on %s", task, len(texts), QUEUE_CONNECTION_WORK)
        return len(texts)

    def run(self, text: str, message_id: str, runners: Mapping[str, Callable[[str], object]]) -> object:
        """Run the unit a message carries with `runners[task](connection)` (the blueprint names
        the single-connection runs: the item pull, the sweep, the subscription reconcile). One that
        can never run goes to the poison queue with the reason; a connection without a usable token
        is skipped; any other failure is raised (the host retries, then moves it to poison)."""
        try:
            unit = parse_unit(self._opened(kept_unit(text)))
            self._settings.connection(unit.connection)
        except (BadWorkUnit, UnknownConnection) as exc:
            self._poison(text, message_id, str(exc))
            return None
        waited = max(0.0, self._clock() - unit.queued_at)
        log.info("work unit %s %s: waited %.3f s", unit.task, unit.connection, waited)
        try:
            return runners[unit.task](unit.connection)
        except TokenUnavailable as exc:
            if exc.state not in SKIPPED_STATES:
                raise
            log.warning("work unit %s %s: skipped: %s", unit.task, unit.connection, exc)
            return None

    def _opened(self, text: str) -> str:
        try:
            return open_json(self._signer, text)
        except UnsignedMessage as exc:
            raise BadWorkUnit(f"not a unit the connector queued: {exc}") from None

    def _poison(self, text: str, message_id: str, reason: str) -> None:
        kept = json.dumps({"reason": reason, "message": kept_unit(text)})
        self._storage.sender(QUEUE_CONNECTION_WORK_POISON).send(kept)
        log.error("work unit %s cannot run: %s; kept on %s (replay it once fixed)", message_id, reason,
                  QUEUE_CONNECTION_WORK_POISON)
