"""BC operational limits and fault injection in front of the BC API emulator (dev tooling).

Per principal (the token's `oid`, else `appid`; bc-api.md §8): a sliding-window request rate (429 +
`Retry-After`), at most `max_concurrent` requests processing while the rest queue (429 when the
queue is full, 503 + `Retry-After` after `queue_timeout_seconds` in it) or, with
`reject_over_concurrency`, are refused with 429 at once; plus injectable latency, random 429/503
faults from a seeded RNG and targeted fault rules. Every request is logged with its principal and
how many of that principal's requests were in flight when it arrived (so overshoot can be counted).
"""
from __future__ import annotations

import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal

from .clock import Clock
from .config import EmulatorConfig, tenant_limit
from .entra import InvalidToken

FaultAction = Literal["error_before", "error_after_commit", "timeout_after_commit"]
WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
ARRIVED = "emulator.arrived"  # environ key: `time.monotonic()` when the server had read the request
MAX_LATENESS_SECONDS = 0.02  # `sleep_until` aims at most this much early

_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_CODES = {429: "TooManyRequests", 500: "Internal_ServerError", 502: "BadGateway",
          503: "ServiceUnavailable", 504: "GatewayTimeout"}


@dataclass(frozen=True)
class LoggedRequest:
    """One BC API request as seen by the emulator (status None = connection dropped).

    `in_flight`: the principal's requests inside the emulator (processing or queued) when this one
    arrived, this one included; above `max_concurrent` the client overshot BC's limit.
    """

    method: str
    path: str
    query: str
    status: int | None
    principal: str | None
    time: datetime
    fault: str | None = None
    in_flight: int = 1
    client_request_id: str | None = None  # the caller's `client-request-id` (BC's operation id)
    arrived: float = 0.0  # `time.monotonic()` when the server had read the request
    answered: float = 0.0  # `time.monotonic()` when its answer was ready to be written


class RequestLog:
    """A thread-safe list of `LoggedRequest`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        """A snapshot of the log."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class FaultRule:
    """A targeted fault for requests matching `method` (None = any) and `path_regex` (search).

    * ``error_before``: answer `status` without calling BC (nothing is written).
    * ``error_after_commit``: let BC process the request (a write commits), then answer `status`.
    * ``timeout_after_commit``: let BC process it, hold the response `hold_seconds` (longer than
      the client's timeout), then drop the connection (`then="drop"`) or answer 504.
    `count` is how many requests it hits (None = every one).
    """

    action: FaultAction
    method: str | None = None
    path_regex: str = ".*"
    status: int = 503
    count: int | None = 1
    retry_after: float | None = 1.0
    hold_seconds: float = 35.0
    then: Literal["drop", "504"] = "drop"

    def __post_init__(self) -> None:
        if self.action not in ("error_before", "error_after_commit", "timeout_after_commit"):
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.then not in ("drop", "504"):
            raise ValueError(f"unknown 'then' {self.then!r}")
        self._pattern = re.compile(self.path_regex)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and bool(
            self._pattern.search(path)
        )


class Faults:
    """Runtime fault configuration: latency, random 429/503 and targeted rules (thread-safe).

    `configure` takes the JSON form used by ``POST /_emulator/faults``::

        {"latency_seconds": 0.1, "rate": 0.2, "statuses": [429, 503], "retry_after": 1,
         "seed": 7, "rules": [{"method": "POST", "path_regex": ".*/salesOrders$",
                               "action": "timeout_after_commit", "hold_seconds": 3}]}
    """

    def __init__(self, latency_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._released = threading.Event()
        self._default_latency = latency_seconds
        self._lateness = 0.0  # how late waits have woken up lately (`sleep_until`)
        self.clear()

    def clear(self) -> None:
        """Back to the configured latency, no random faults, no rules."""
        with self._lock:
            self.latency_seconds = self._default_latency
            self.rate = 0.0
            self.statuses: tuple[int, ...] = (429, 503)
            self.retry_after: float = 1.0
            self.seed: int | None = None
            self._rng = random.Random(None)
            self.rules: list[FaultRule] = []

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the whole fault configuration with `spec` (see the class docstring)."""
        known = {"latency_seconds", "rate", "statuses", "retry_after", "seed", "rules"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        rules = [r if isinstance(r, FaultRule) else FaultRule(**r) for r in spec.get("rules", [])]
        statuses = tuple(int(s) for s in spec.get("statuses", (429, 503)))
        if not statuses or any(s not in (429, 503) for s in statuses):
            raise ValueError("random fault statuses must be 429 and/or 503")
        self.clear()
        with self._lock:
            self.latency_seconds = float(spec.get("latency_seconds", self._default_latency))
            self.rate = float(spec.get("rate", 0.0))
            self.statuses = statuses
            self.retry_after = float(spec.get("retry_after", 1.0))
            self.seed = spec.get("seed")
            self._rng = random.Random(self.seed)
            self.rules = rules

    def add_rule(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        """Append a rule (a `FaultRule` or its fields) to the current configuration."""
        rule = rule or FaultRule(**kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def to_dict(self) -> dict[str, Any]:
        """The current configuration in the JSON form of `configure`."""
        with self._lock:
            return {
                "latency_seconds": self.latency_seconds, "rate": self.rate,
                "statuses": list(self.statuses), "retry_after": self.retry_after,
                "seed": self.seed,
                "rules": [{f.name: getattr(r, f.name) for f in fields(r)} for r in self.rules],
            }

    def take_rule(self, method: str, path: str) -> FaultRule | None:
        """The first matching rule, consuming one of its `count`."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def random_status(self) -> int | None:
        """429 or 503 with probability `rate` (seeded RNG), else None."""
        with self._lock:
            if self.rate > 0 and self._rng.random() < self.rate:
                return self._rng.choice(self.statuses)
        return None

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` unless the emulator is stopping."""
        if seconds > 0:
            self._released.wait(seconds)

    def sleep_until(self, deadline: float) -> None:
        """Wait until `deadline` (`time.monotonic()`) unless the emulator is stopping, aimed early by
        how late recent waits woke up: on a loaded machine the OS wakes a sleeping thread late (2-3 ms
        a request at 400 requests/s on 2 busy cores), and BC's latency is the time to its answer, not
        that time plus the emulator's own scheduling."""
        aim = deadline - self._lateness
        wait = aim - self._clock()
        if wait <= 0:
            return
        self._released.wait(wait)
        late = min(MAX_LATENESS_SECONDS, max(0.0, self._clock() - aim))
        with self._lock:  # a moving average, so one stall does not move the aim much
            self._lateness += (late - self._lateness) / 16

    def release(self) -> None:
        """End every pending wait now and make later ones return immediately (on stop)."""
        self._released.set()

    def rearm(self) -> None:
        """Make waits wait again (on start)."""
        self._released.clear()


def format_seconds(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, or a decimal for sub-second test settings."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def bc_error_body(code: str, message: str) -> bytes:
    """A BC error document; like BC, the message ends with a correlation id."""
    text = f"{message}  CorrelationId:  {uuid.uuid4()}."
    return json.dumps({"error": {"code": code, "message": text}}).encode()


@dataclass
class _Result:
    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    fault: str | None = None


def _error(status: int, message: str, retry_after: float | None = None,
           fault: str | None = None) -> _Result:
    headers = [("Content-Type", "application/json; charset=utf-8")]
    if retry_after is not None:
        headers.append(("Retry-After", format_seconds(retry_after)))
    return _Result(status, headers, bc_error_body(_CODES.get(status, "Unknown"), message), fault)


class LimitsMiddleware:
    """WSGI middleware enforcing BC's per-principal limits and injecting faults."""

    def __init__(self, app: WsgiApp, config: EmulatorConfig, clock: Clock,
                 validate_token: Callable[[str], dict], faults: Faults, log: RequestLog) -> None:
        self.app, self.config, self.clock = app, config, clock
        self.validate_token, self.faults, self.log = validate_token, faults, log
        self._cond = threading.Condition()
        self._active: dict[str, int] = {}
        self._queued: dict[str, int] = {}
        self._inside: dict[str | None, int] = {}  # arrived, not yet answered
        self._windows: dict[str, deque[float]] = {}
        self._tenant_of: dict[str, str | None] = {}  # principal -> its tenant GUID

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        started = self.clock.now()
        principal = self._principal(environ)
        with self._cond:
            in_flight = self._inside[principal] = self._inside.get(principal, 0) + 1
        try:
            result, hold = self._process(environ, method, path, principal)
            if hold is not None:
                self.faults.sleep(hold.hold_seconds)
                if hold.then == "504":
                    result = _error(504, "The request timed out at the gateway.",
                                    fault="timeout_after_commit")
                else:
                    result = _Result(None, fault="timeout_after_commit")
        finally:
            with self._cond:
                self._inside[principal] -= 1
        self.log.append(LoggedRequest(method, path, environ.get("QUERY_STRING", ""),
                                      result.status, principal, started, result.fault, in_flight,
                                      environ.get("HTTP_CLIENT_REQUEST_ID"),
                                      environ.get(ARRIVED, 0.0), time.monotonic()))
        if result.status is None:
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError("emulator fault: connection dropped")
        headers = [(k, v) for k, v in result.headers if k.lower() not in ("content-length", "date")]
        headers.append(("Content-Length", str(len(result.body))))
        headers.append(("Date", format_datetime(self.clock.now(), usegmt=True)))  # BC's clock
        reason = _REASONS.get(result.status, "")
        start_response(f"{result.status} {reason}".rstrip(), headers)
        return [result.body]

    def in_flight(self) -> dict[str, int]:
        """Requests of all principals now processing and queued."""
        with self._cond:
            return {"processing": sum(self._active.values()), "queued": sum(self._queued.values())}

    def _principal(self, environ: dict) -> str | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth.lower().startswith("bearer "):
            return None
        try:
            claims = self.validate_token(auth[7:].strip())
        except InvalidToken:  # BC itself answers 401; no per-principal accounting
            return None
        principal = claims.get("oid") or claims.get("appid")
        if principal is not None:
            self._tenant_of[principal] = claims.get("tid")
        return principal

    def _limit(self, principal: str, name: str) -> Any:
        """The principal's tenant's own limit (`POST /_emulator/tenants`), else the emulator's."""
        return tenant_limit(self.config, self._tenant_of.get(principal), name)

    def _process(self, environ: dict, method: str, path: str,
                 principal: str | None) -> tuple[_Result, FaultRule | None]:
        arrived = environ.get(ARRIVED, time.monotonic())
        if principal is not None:
            retry = self._take_rate(principal)
            if retry is not None:
                return _error(429, f"Too many requests: the limit is {self._limit(principal, 'rate_limit')} "
                              f"requests per {self.config.rate_window_seconds:g} seconds.",
                              retry), None
            queued = time.monotonic()
            refusal = self._acquire(principal)
            if refusal is not None:
                return refusal, None
            arrived += time.monotonic() - queued  # BC's queue adds its wait to the latency
        try:
            return self._run(environ, method, path, arrived)
        finally:
            if principal is not None:
                self._release(principal)

    def _run(self, environ: dict, method: str, path: str,
             arrived: float) -> tuple[_Result, FaultRule | None]:
        status = self.faults.random_status()
        rule = None if status is not None else self.faults.take_rule(method, path)
        if status is None and (rule is None or rule.action != "error_before"):
            result = self._call_app(environ)  # BC's own work is part of its response time
        self.faults.sleep_until(arrived + self.faults.latency_seconds)  # both time.monotonic()
        if status is not None:
            return _error(status, "Injected fault.", self.faults.retry_after, "random"), None
        if rule is not None and rule.action == "error_before":
            return _error(rule.status, "Injected fault.", rule.retry_after, rule.action), None
        if rule is None:
            return result, None
        if rule.action == "error_after_commit":
            return _error(rule.status, "Injected fault.", rule.retry_after, rule.action), None
        return result, rule

    def _call_app(self, environ: dict) -> _Result:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = int(status.split()[0]), list(headers)
            return chunks.append

        chunks: list[bytes] = []
        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        return _Result(captured["status"], captured["headers"], b"".join(chunks))

    def _take_rate(self, principal: str) -> float | None:
        """Count a request in the window; None if allowed, else the seconds to wait."""
        now = self.clock.timestamp()
        window = self.config.rate_window_seconds
        with self._cond:
            stamps = self._windows.setdefault(principal, deque())
            while stamps and (stamps[0] <= now - window or stamps[0] > now):
                stamps.popleft()
            if len(stamps) >= self._limit(principal, "rate_limit"):
                return max(1.0, math.ceil(stamps[0] + window - now))
            stamps.append(now)
        return None

    def _acquire(self, principal: str) -> _Result | None:
        """Take a processing slot, queueing like BC; None when taken, else the refusal."""
        limit = self._limit(principal, "max_concurrent")
        with self._cond:
            if self._active.get(principal, 0) < limit:
                self._active[principal] = self._active.get(principal, 0) + 1
                return None
            if self.config.reject_over_concurrency:
                return _error(429, f"Too many requests: more than {limit} requests in flight.", 1.0)
            if self._queued.get(principal, 0) >= self._limit(principal, "max_queued"):
                return _error(429, "Too many requests: the request queue is full.", 1.0)
            self._queued[principal] = self._queued.get(principal, 0) + 1
            deadline = time.monotonic() + self.config.queue_timeout_seconds
            try:
                while self._active[principal] >= limit:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return _error(503, "The request waited too long in the request queue.",
                                      1.0)
                    self._cond.wait(remaining)
                self._active[principal] += 1
                return None
            finally:
                self._queued[principal] -= 1

    def _release(self, principal: str) -> None:
        with self._cond:
            self._active[principal] -= 1
            self._cond.notify_all()


def logged_request_json(entry: LoggedRequest) -> dict[str, Any]:
    """A `LoggedRequest` as JSON-ready dict."""
    data = asdict(entry)
    data["time"] = entry.time.isoformat()
    return data
