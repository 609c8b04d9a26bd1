"""OpenTelemetry for the connector: spans, metrics and W3C trace context; off unless configured.

`configure_telemetry()` sets the process's providers once: Azure Monitor (the
`azure-monitor-opentelemetry` distro, imported only then) when APPLICATIONINSIGHTS_CONNECTION_STRING is
set, else a console or OTLP exporter by TELEMETRY_EXPORTER, else nothing: opentelemetry-api's no-op
providers then make every hook nearly free. `Telemetry` holds the tracer, the instruments (their names
are what the Bicep alerts query) and the hooks that the BC client, the event publisher and the order
handler call. OpenTelemetry's providers are process-wide by design, so there is one `Telemetry` per
process. Attributes carry names, ids, keys and counts: never a token, a secret or a message body.
"""
from __future__ import annotations

import functools
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from connector.bc.timestamps import parse_iso
from connector.errors import ConnectorError, error_code
from connector.settings import TelemetrySettings

log = logging.getLogger(__name__)

NAME = "bc_connector"
SERVICE_NAME = "bc-connector"
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"  # W3C trace context, version 00
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_PROPAGATOR = TraceContextTextMapPropagator()
GAUGE_CACHE_SECONDS = 10.0  # one storage read serves every observable gauge of a collection

# Metric names (a contract with infra/ alerts); every one has the `connection` attribute.
ORDERS = "bc_connector.orders"
EVENTS = "bc_connector.events"
BC_REQUESTS = "bc_connector.bc_requests"
BC_THROTTLED = "bc_connector.bc_throttled"
BACKOFF_SECONDS = "bc_connector.backoff_seconds"
TOKEN_FAILURES = "bc_connector.token_failures"
SUBSCRIPTIONS = "bc_connector.subscriptions"
POISON_DEPTH = "bc_connector.poison_depth"
SECONDS_SINCE_PULL = "bc_connector.seconds_since_pull"
SECONDS_SINCE_SWEEP = "bc_connector.seconds_since_sweep"
CHANGE_TO_EVENT_SECONDS = "bc_connector.change_to_event_seconds"

Reading = tuple[float, Mapping[str, str]]
"""One observation of a gauge: its value and attributes."""
class ActivitySink(Protocol):
    """Where the hooks also count, per connection and hour (the status page's charts)."""

    def add(self, connection: str, name: str, value: float = 1.0) -> None: ...


GaugeReader = Callable[[], Mapping[str, Sequence[Reading]]]
"""Reads every gauge (by metric name) at once, from storage."""


# ------------------------------------------------------------------------------ trace context

def new_traceparent() -> str:
    """A fresh W3C `traceparent` (not sampled) for work that has no trace of its own."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def is_traceparent(value: object) -> bool:
    """A usable `traceparent`: version 00, lower-case hex, neither id all zeros."""
    if not isinstance(value, str) or _TRACEPARENT.match(value) is None:
        return False
    _, trace_id, span_id, _ = value.split("-")
    return trace_id != "0" * 32 and span_id != "0" * 16


def current_traceparent() -> str:
    """The `traceparent` of the current span, or a fresh one when no trace is recording."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent") or new_traceparent()


def client_request_id(trace_id: int) -> str:
    """BC's `client-request-id` for a request of this trace: the trace id as a GUID (BC files it as
    the operation id of its own telemetry, so both sides join on it); a fresh GUID without a trace."""
    return str(uuid.UUID(int=trace_id)) if trace_id else str(uuid.uuid4())


def context_from(traceparent: str | None) -> Context | None:
    """The remote parent a `traceparent` names (None when absent or malformed)."""
    if not is_traceparent(traceparent):
        return None
    return _PROPAGATOR.extract({"traceparent": str(traceparent)})


# ------------------------------------------------------------------------------ pure helpers

_KEY = re.compile(r"\([^)]*\)")
_COMPANY = re.compile(r"companies\(([^)]*)\)")


def bc_target(path: str) -> tuple[str, str]:
    """(company id, entity set) of a BC API URL path, e.g. `…/companies(c1)/items(i1)/itemVariants`
    → (`c1`, `items/itemVariants`); keys and query are left out (they may hold customer data)."""
    path = path.split("?", 1)[0]
    found = _COMPANY.search(path)
    company = found.group(1).strip("'") if found else ""
    rest = path[found.end():] if found else path.rsplit("/", 1)[-1]
    entity = "/".join(_KEY.sub("", s) for s in rest.split("/") if s)
    return company, entity or "companies"


def event_connection(event: Mapping[str, Any]) -> str:
    """The connection of an event, from its `source` (`bc-connector/<connection>/<companyId>`)."""
    parts = str(event.get("source", "")).split("/")
    return parts[1] if len(parts) > 2 and parts[0] == SERVICE_NAME else ""


def change_latency(event: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds from the BC change (`time`) to now, for events of changes (not scheduled pulls)."""
    if str(event.get("type", "")).endswith(".pulled") or not event.get("time"):
        return None
    try:
        return max(0.0, (now - parse_iso(str(event["time"]))).total_seconds())
    except ValueError:
        return None


# ------------------------------------------------------------------------------ hooks

@dataclass
class BCCall:
    """One BC request as telemetry sees it (a CLIENT span): each attempt's status, each back-off."""

    telemetry: Telemetry
    span: Span
    connection: str
    retries: int = 0
    waited: float = 0.0

    @functools.cached_property
    def request_id(self) -> str:
        """The `client-request-id` of every attempt: this trace's id as a GUID (span attribute
        `bc.client_request_id`)."""
        request_id = client_request_id(self.span.get_span_context().trace_id)
        self.span.set_attribute("bc.client_request_id", request_id)
        return request_id

    def attempt(self, status: int | None) -> None:
        """An attempt ended with this HTTP status (None: no response)."""
        code = str(status) if status is not None else "none"
        self.telemetry.bc_requests.add(1, {"connection": self.connection, "status_code": code})
        recorder = self.telemetry.recorder
        if recorder is not None:
            recorder.add(self.connection, "bc.requests")
        if status == 429:
            self.telemetry.bc_throttled.add(1, {"connection": self.connection})
            if recorder is not None:
                recorder.add(self.connection, "bc.429")
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)

    def backoff(self, seconds: float) -> None:
        """About to wait this long before the next attempt."""
        self.retries += 1
        self.waited += seconds
        self.telemetry.backoff_seconds.add(seconds, {"connection": self.connection})


class Telemetry:
    """The connector's tracer and instruments, and the hooks that feed them."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None):
        self.tracer = trace.get_tracer(NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, meter_provider=meter_provider)
        self.orders = meter.create_counter(ORDERS, "{order}", "Sales-order results by status.")
        self.events = meter.create_counter(EVENTS, "{event}", "CloudEvents queued, by type.")
        self.bc_requests = meter.create_counter(BC_REQUESTS, "{request}", "BC requests by HTTP status.")
        self.bc_throttled = meter.create_counter(BC_THROTTLED, "{request}", "BC answers 429.")
        self.backoff_seconds = meter.create_counter(BACKOFF_SECONDS, "s", "Time spent backing off BC.")
        self.token_failures = meter.create_counter(TOKEN_FAILURES, "{failure}",
                                                   "BC calls without a usable token.")
        self.change_to_event_seconds = meter.create_histogram(
            CHANGE_TO_EVENT_SECONDS, "s", "From a BC change (lastModifiedDateTime) to its event queued.")
        described = {SUBSCRIPTIONS: ("{subscription}", "Webhook subscriptions by state."),
                     POISON_DEPTH: ("{message}", "Messages waiting on a poison queue."),
                     SECONDS_SINCE_PULL: ("s", "Since the item pull last moved its cursor."),
                     SECONDS_SINCE_SWEEP: ("s", "Since the sweep last moved a cursor.")}
        for name, (unit, description) in described.items():
            meter.create_observable_gauge(name, [functools.partial(self._observe, name)], unit, description)
        self._reader: GaugeReader | None = None
        self.recorder: ActivitySink | None = None  # the status page's hourly counts (ops/activity.py)
        self._snapshot: tuple[float, Mapping[str, Sequence[Reading]]] | None = None
        self._lock = threading.Lock()

    # gauges -------------------------------------------------------------------------------
    def watch(self, reader: GaugeReader | None) -> None:
        """Read the observable gauges with `reader` from now on (the runtime's storage)."""
        with self._lock:
            self._reader, self._snapshot = reader, None

    def _observe(self, name: str, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            reader, snapshot = self._reader, self._snapshot
            if reader is None:
                return []
            if snapshot is None or time.monotonic() - snapshot[0] > GAUGE_CACHE_SECONDS:
                try:
                    snapshot = (time.monotonic(), reader())
                except Exception as exc:  # a gauge must never break the exporter
                    log.warning("telemetry: gauges not read (%s: %s)", type(exc).__name__, exc)
                    return []
                self._snapshot = snapshot
        return [Observation(value, dict(attrs)) for value, attrs in snapshot[1].get(name, [])]

    # spans --------------------------------------------------------------------------------
    @contextmanager
    def bc_request(self, connection: str, method: str, path: str) -> Iterator[BCCall]:
        """A CLIENT span around one BC request with its retries; counts token failures."""
        company, entity = bc_target(path)
        attributes = {"connection": connection, "bc.company": company, "bc.entity_set": entity,
                      "http.request.method": method}
        with self.tracer.start_as_current_span(f"BC {method} {entity}", kind=SpanKind.CLIENT,
                                               attributes=attributes, record_exception=False,
                                               set_status_on_exception=False) as span:
            call = BCCall(self, span, connection)
            try:
                yield call
            except BaseException as exc:
                if isinstance(exc, ConnectorError) and exc.token_failure:
                    self.token_failures.add(1, {"connection": connection})
                error = error_code(exc)
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
                raise
            finally:
                span.set_attribute("bc.retry_count", call.retries)
                span.set_attribute("bc.throttle_wait_seconds", round(call.waited, 3))

    @contextmanager
    def consume(self, name: str, traceparent: str | None = None,
                **attributes: str | int) -> Iterator[Span]:
        """A CONSUMER span for one queue message: a child of the producer's trace when the message
        names one (`traceparent`), linked to the invocation it runs in."""
        parent = context_from(traceparent)
        here = trace.get_current_span().get_span_context()
        links = [Link(here)] if parent is not None and here.is_valid else None
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER,
                                               attributes=attributes, links=links,
                                               record_exception=False) as span:
            yield span

    @contextmanager
    def produce(self, queue: str, count: int) -> Iterator[Span]:
        """A PRODUCER span around sending `count` messages to a queue (their `traceparent`)."""
        with self.tracer.start_as_current_span(
                f"send {queue}", kind=SpanKind.PRODUCER, record_exception=False,
                attributes={"messaging.system": "azure_storage_queues", "messaging.destination.name": queue,
                            "messaging.batch.message_count": count}) as span:
            yield span

    # counters -------------------------------------------------------------------------------
    def order_result(self, connection: str, status: str) -> None:
        self.orders.add(1, {"connection": connection, "status": status})
        if self.recorder is not None:
            self.recorder.add(connection, f"orders.{status}")
        trace.get_current_span().set_attribute("order.status", status)

    def stamp(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The event with the CloudEvents distributed-tracing extension (`traceparent`) set."""
        return {**event, "traceparent": event.get("traceparent") or current_traceparent()}

    def events_queued(self, events: Iterable[Mapping[str, Any]], now: datetime) -> None:
        """Count queued events by connection and type; record BC-change → event latency."""
        counted: dict[tuple[str, str], float] = {}  # the batch's counts for the status page, added once
        for event in events:
            attrs = {"connection": event_connection(event), "type": str(event.get("type", ""))}
            self.events.add(1, attrs)
            latency = change_latency(event, now)
            if latency is not None:
                self.change_to_event_seconds.record(latency, attrs)
            if not attrs["type"].startswith("bc.connector."):
                conn = attrs["connection"]
                name = "events.pulled" if attrs["type"].endswith(".pulled") else "events"
                counted[(conn, name)] = counted.get((conn, name), 0) + 1
                if latency is not None:
                    counted[(conn, "lag.sum")] = counted.get((conn, "lag.sum"), 0) + latency
                    counted[(conn, "lag.count")] = counted.get((conn, "lag.count"), 0) + 1
                    counted[(conn, "lag.max")] = max(counted.get((conn, "lag.max"), 0.0), latency)
        if self.recorder is not None:
            for (connection, name), value in counted.items():
                self.recorder.add(connection, name, value)


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def in_this_trace(fn: F) -> F:
    """`fn` to run on a pool's threads inside the caller's trace (threads do not inherit it)."""
    captured = otel_context.get_current()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run  # type: ignore[return-value]


def per_connection(task: str, fn: Callable[[str], T]) -> Callable[[str], T]:
    """`fn(connection)` for a pool thread: in the caller's trace, inside a span naming the connection
    (so its BC calls and log lines carry it)."""
    captured = otel_context.get_current()

    def run(connection: str) -> T:
        token = otel_context.attach(captured)
        try:
            with get_telemetry().tracer.start_as_current_span(
                    f"{task} {connection}", attributes={"connection": connection}, record_exception=False):
                return fn(connection)
        finally:
            otel_context.detach(token)

    return run


MAX_LOGGED_CHARS = 64  # a key or id in a log line or span: BC's keys are 20-35 characters


def log_value(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """A key or id from a message, fit for a log field or span attribute: at most `limit` characters
    (then `…`), control and format characters written as `\\uXXXX`."""
    text = str(value)
    shown = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


# Span attribute → log field: what a log line made inside the span carries as a custom dimension.
LOG_FIELDS = {"connection": "connection", "bc.company": "company", "bc.entity_set": "entity_set",
              "order_key": "order_key", "message_id": "message_id"}


class SpanLogFields(logging.Filter):
    """Adds the current span's connection, company, entity set and order key to a log record as
    fields (Application Insights custom dimensions), unless the call passed them itself (`extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        attributes = getattr(trace.get_current_span(), "attributes", None) or {}
        for attribute, name in LOG_FIELDS.items():
            if attribute in attributes and not hasattr(record, name):
                setattr(record, name, attributes[attribute])
        return True


def invocation(fn: F) -> F:
    """A span per invocation of a trigger function (under the host's trace when the worker passes
    one on: PYTHON_ENABLE_OPENTELEMETRY)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with get_telemetry().tracer.start_as_current_span(
                fn.__name__, attributes={"faas.name": fn.__name__}, record_exception=False):
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


# ------------------------------------------------------------------------------ set-up

_telemetry: Telemetry | None = None
_configured = False
_setup_lock = threading.Lock()


def get_telemetry() -> Telemetry:
    """The process's `Telemetry` (on whatever providers are set, or will be: the API proxies)."""
    global _telemetry
    with _setup_lock:
        if _telemetry is None:
            _telemetry = Telemetry()
        return _telemetry


def aad_client_id(authentication_string: str) -> str | None:
    """From APPLICATIONINSIGHTS_AUTHENTICATION_STRING: None without `Authorization=AAD`, else the
    identity's client id ('' = system-assigned)."""
    parts = dict(p.split("=", 1) for p in authentication_string.split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    return parts.get("ClientId", "")


def _sdk_already_set() -> bool:
    """True when something (the Functions worker, a test) already installed real providers."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def configure_telemetry(settings: TelemetrySettings) -> Telemetry:
    """Install the exporters `settings` ask for, once per process; the process's `Telemetry`."""
    global _configured
    with _setup_lock:
        if not _configured and settings.enabled and not _sdk_already_set():
            try:
                _install(settings)
            except Exception as exc:  # telemetry must never stop the connector
                log.error("telemetry: not configured (%s: %s)", type(exc).__name__, exc)
            _configured = True
    return get_telemetry()


def _install(settings: TelemetrySettings) -> None:
    if settings.connection_string:
        from azure.monitor.opentelemetry import configure_azure_monitor  # heavy: only when used

        options: dict[str, Any] = {
            "connection_string": settings.connection_string,
            "logger_name": "connector",  # our logs, with their custom dimensions
            # BC calls have their own spans; generic HTTP spans would carry URLs with query strings.
            "instrumentation_options": {name: {"enabled": False}
                                        for name in ("requests", "urllib", "urllib3")},
        }
        client_id = aad_client_id(settings.authentication_string)
        if client_id is not None:
            from azure.identity import ManagedIdentityCredential

            options["credential"] = ManagedIdentityCredential(client_id=client_id or None)
        configure_azure_monitor(**options)
        for handler in logging.getLogger("connector").handlers:  # the distro's log exporter
            handler.addFilter(SpanLogFields())
        log.info("telemetry: exporting to Azure Monitor")
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    span_exporter: Any
    metric_exporter: Any
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
    else:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    resource = Resource.create({"service.name": SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]))
    log.info("telemetry: exporting to %s", settings.exporter)
