"""Running one job for every configured connection: one connection's failure never stops the others.

Timers (subscription renewal, sweep, item pull) run for every connection. Each connection runs in its
own thread (each has its own BC budget); a connection without a usable token (not signed in, refresh
refused) is skipped with a log line, any other failure is collected and raised once all have run.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from connector.bc.errors import TokenUnavailable
from connector.settings import Settings
from connector.telemetry import per_connection

log = logging.getLogger(__name__)

T = TypeVar("T")


def for_each_connection(settings: Settings, fn: Callable[[str], T], *, task: str = "run",
                        skip_states: Iterable[str] = ("not-signed-in", "refresh-failed",
                                                      "credentials-refused", "paused"),
                        ) -> dict[str, T | Exception]:
    """`fn(name)` for every configured connection, concurrently: name → its result or its error.
    A connection whose token is unavailable in one of `skip_states` is left out (logged)."""
    names = list(settings.connections)
    skipped = frozenset(skip_states)
    with ThreadPoolExecutor(max(1, len(names)), thread_name_prefix=f"{task}-connection") as pool:
        futures = {name: pool.submit(per_connection(task, fn), name) for name in names}
    outcomes: dict[str, T | Exception] = {}
    for name, future in futures.items():
        error = future.exception()
        if isinstance(error, TokenUnavailable) and error.state in skipped:
            log.warning("%s %s: skipped: %s", task, name, error)
        elif isinstance(error, Exception):
            log.error("%s %s: failed: %s", task, name, error)
            outcomes[name] = error
        elif error is not None:  # KeyboardInterrupt and the like are not the job's to collect
            raise error
        else:
            outcomes[name] = future.result()
    return outcomes


def results_or_raise(outcomes: Mapping[str, T | Exception]) -> list[T]:
    """The results in connection order; the first error is raised if any connection failed."""
    errors = [o for o in outcomes.values() if isinstance(o, Exception)]
    if errors:
        raise errors[0]
    return [o for o in outcomes.values() if not isinstance(o, Exception)]
