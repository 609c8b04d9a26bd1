"""`LocalHost`: a v2 `FunctionApp` run with the Functions host's semantics (dev tooling, not deployed).

For machines without Functions Core Tools: HTTP triggers on a werkzeug server, queue triggers polled
from Azure Storage / Azurite per host.json, timer triggers on their NCRONTAB schedules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import azure.functions as func

from .config import HostConfig, worker_threads
from .functions import TRIGGERS, FunctionSpec, Invocation, Invoker, index
from .http import HttpApp, HttpServer
from .queues import DEFAULT_LEASE, QueueListener
from .stopping import STOP_SECONDS, Deadline
from .timers import TimerRunner


class LocalHost:
    """The app's functions served on 127.0.0.1 with host semantics; `start()`, then `stop()`.

    `env` holds the app settings (`%NAME%` resolution, storage connections, `LOCAL_HOST_*` key
    settings); it defaults to `os.environ`. `queue_lease` is how long (s) a running message stays
    invisible before its lease is renewed.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        host_json: Path,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        queue_lease: int = DEFAULT_LEASE,
    ) -> None:
        self.app = app
        self.config = HostConfig.load(Path(host_json))
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._port = port
        self._queue_lease = queue_lease
        self._invoker = Invoker(str(Path(host_json).resolve().parent), worker_threads(self.env))
        self._server: HttpServer | None = None
        self._queues: list[QueueListener] = []
        self._timers: dict[str, TimerRunner] = {}

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHost is not started")
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def invocations(self) -> list[Invocation]:
        """Finished invocations, oldest first."""
        return self._invoker.invocations

    @property
    def functions(self) -> list[FunctionSpec]:
        return index(self.app)

    def start(self) -> LocalHost:
        """Index the app, validate every trigger, then serve HTTP, poll queues and schedule timers."""
        if self._server is not None:
            raise RuntimeError("LocalHost is already started")
        specs = self.functions
        by_type = {t: [s for s in specs if s.trigger_type == t] for t in TRIGGERS}
        queues = [
            QueueListener(s, self._invoker, self.config.queues, self.env, self._queue_lease)
            for s in by_type["queueTrigger"]
        ]
        timers = {s.name: TimerRunner(s, self._invoker, self.env) for s in by_type["timerTrigger"]}
        http = HttpApp(by_type["httpTrigger"], self.config.route_prefix, self._invoker, self.env)
        self._server = HttpServer(http, self._port)
        self._server.start()
        self._queues, self._timers = queues, timers
        for listener in queues:
            listener.start()
        for timer in timers.values():
            timer.start()
        return self

    def stop(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Stop serving, polling and scheduling, then wait for running invocations, `timeout` s in all.
        What did not stop in time (each also logged as a warning); [] when everything did."""
        deadline = Deadline(timeout)
        server, queues, timers = self._server, self._queues, list(self._timers.values())
        self._server, self._queues, self._timers = None, [], {}
        stuck = server.stop(deadline) if server is not None else []
        parts: list[TimerRunner | QueueListener] = [*timers, *queues]
        for part in parts:
            part.halt()
        for part in parts:
            stuck += part.wait_stopped(deadline)
        return stuck

    def fire_timer(self, function_name: str, past_due: bool = False) -> Any:
        """Run a timer function now, synchronously; return its result or raise its error."""
        timer = self._timers.get(function_name)
        if timer is None:
            raise KeyError(f"no timer function {function_name!r} (started: {sorted(self._timers)})")
        return timer.fire(past_due=past_due)

    def wait_idle(self, timeout: float) -> None:
        """Block until watched queues are empty (invisible messages included) and nothing runs."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self._busy()
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"LocalHost not idle after {timeout}s: {busy}")
            time.sleep(0.05)

    def _busy(self) -> str:
        reasons = [f"{t.spec.name} running" for t in self._timers.values() if t.busy]
        if self._invoker.active:
            reasons.append(f"{self._invoker.active} invocation(s) running")
        for listener in self._queues:
            count = listener.approximate_message_count()
            if count or listener.running:
                reasons.append(f"queue {listener.queue_name}: {count} message(s), {listener.running} running")
        return "; ".join(reasons)

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
