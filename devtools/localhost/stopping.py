"""Bounded stops for the local host (dev tooling, not deployed): a stop waits for what it started until
one shared deadline, then names in the log what is still running and returns, so a function that never
returns cannot hang a test or a tool."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("devtools.localhost")

STOP_SECONDS = 30.0  # how long a stop waits, in all, for running invocations and its threads
GRACE_SECONDS = 0.1  # the least any one wait gets: a thread already on its way out is not reported


class Deadline:
    """One point in (monotonic) time that the waits of a stop share."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds to wait now: what is left, but at least `GRACE_SECONDS`."""
        return max(GRACE_SECONDS, self._end - time.monotonic())


def join_within(thread: threading.Thread, deadline: Deadline, what: str) -> list[str]:
    """Join `thread` until `deadline`: `[]` once it ended, else `[what]` (logged by `not_stopped`)."""
    if thread.is_alive():
        thread.join(deadline.left())
    return not_stopped(what, deadline) if thread.is_alive() else []


def not_stopped(what: str, deadline: Deadline) -> list[str]:
    """`[what]`, with the warning that it did not stop in time and is no longer waited for."""
    log.warning("stop: %s did not stop within %g s; not waiting longer", what, deadline.seconds)
    return [what]
