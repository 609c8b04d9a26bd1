"""Timer triggers: a scheduler thread per function, singleton like the host (dev tooling, not deployed)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from .config import resolve_settings
from .functions import FunctionSpec, Invoker
from .ncrontab import Schedule
from .stopping import STOP_SECONDS, Deadline, join_within

PAST_DUE_TOLERANCE = timedelta(seconds=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TimerRunner:
    """Fires one timer function on its schedule (and at start if `runOnStartup`); never overlaps itself."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker, env: Mapping[str, str]) -> None:
        self.spec = spec
        expression = resolve_settings(spec.trigger["schedule"], env, f"function {spec.name!r} schedule")
        self.schedule = Schedule.parse(expression)
        self.run_on_startup = bool(spec.trigger.get("runOnStartup"))
        self._invoker = invoker
        self._singleton = threading.Lock()
        self._stopping = threading.Event()
        self._startup_pending = False
        self._thread = threading.Thread(target=self._loop, name=f"timer-{spec.name}", daemon=True)

    @property
    def busy(self) -> bool:
        """Running now, or the start-up run has not finished yet."""
        return self._startup_pending or self._singleton.locked()

    def start(self) -> None:
        self._startup_pending = self.run_on_startup
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Stop scheduling and wait up to `timeout` s for a running invocation; what did not stop."""
        self.halt()
        return self.wait_stopped(Deadline(timeout))

    def halt(self) -> None:
        """Schedule no more runs; a running one goes on."""
        self._stopping.set()

    def wait_stopped(self, deadline: Deadline) -> list[str]:
        """After `halt`: wait until `deadline` for the scheduler thread (and so a run in progress)."""
        return join_within(self._thread, deadline, f"timer {self.spec.name}: a running invocation")

    def fire(self, past_due: bool = False) -> Any:
        """Run the function now (after any running invocation of it); return its result or raise."""
        with self._singleton:
            return self._invoker.invoke(self.spec, lambda: TimerRequest(past_due=past_due))

    def _loop(self) -> None:
        if self._startup_pending:
            try:
                self.fire()
            except Exception:  # logged by the invoker; the schedule goes on, as in the host
                pass
            finally:
                self._startup_pending = False
        while not self._stopping.is_set():
            due = self.schedule.next_after(_utcnow())
            if not self._sleep_until(due):
                return
            try:
                self._fire_scheduled(due)
            except Exception:  # logged by the invoker
                pass

    def _fire_scheduled(self, due: datetime) -> None:
        with self._singleton:
            past_due = _utcnow() - due > PAST_DUE_TOLERANCE
            self._invoker.invoke(self.spec, lambda: TimerRequest(past_due=past_due))

    def _sleep_until(self, due: datetime) -> bool:
        while not self._stopping.is_set():
            remaining = (due - _utcnow()).total_seconds()
            if remaining <= 0:
                return True
            self._stopping.wait(min(remaining, 60.0))
        return False
