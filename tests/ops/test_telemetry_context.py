"""Trace context across threads, and span fields on log lines (custom dimensions)."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from connector.bc.errors import TokenUnavailable
from connector.runtime import get_runtime
from connector.telemetry import SpanLogFields, get_telemetry, in_this_trace, per_connection
from tests.ops.conftest import Recorded


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(SpanLogFields())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_log_lines_inside_a_span_carry_its_connection_company_and_order_key(otel: Recorded) -> None:
    handler = Keep()
    logger = logging.getLogger("connector.test_fields")
    logger.addHandler(handler)
    try:
        tracer = get_telemetry().tracer
        with tracer.start_as_current_span("x", attributes={"connection": "emea", "order_key": "WEB-9"}):
            with tracer.start_as_current_span("BC GET items", attributes={"connection": "emea",
                                                                           "bc.company": "c1"}):
                logger.warning("inner")
            logger.warning("outer", extra={"connection": "given"})
        logger.warning("no span")
    finally:
        logger.removeHandler(handler)
    inner, outer, bare = handler.records
    assert (inner.connection, inner.company) == ("emea", "c1")
    assert (outer.connection, outer.order_key) == ("given", "WEB-9")  # `extra` wins
    assert not hasattr(bare, "connection")


def test_pool_threads_stay_in_the_callers_trace(otel: Recorded) -> None:
    tracer = get_telemetry().tracer

    def child(n: int) -> int:
        with tracer.start_as_current_span(f"child {n}"):
            return n

    with tracer.start_as_current_span("parent") as parent, ThreadPoolExecutor(2) as pool:
        assert list(pool.map(in_this_trace(child), [1, 2])) == [1, 2]
        assert pool.submit(per_connection("sweep", lambda name: name), "emea").result() == "emea"
    trace_id = parent.get_span_context().trace_id
    spans = {s.name: s for s in otel.spans()}
    assert {"child 1", "child 2", "sweep emea"} <= set(spans)
    assert all(spans[n].context.trace_id == trace_id for n in ("child 1", "child 2", "sweep emea"))
    assert spans["sweep emea"].attributes["connection"] == "emea"


def test_a_bc_call_without_a_token_counts_a_token_failure(connector_env: Any, otel: Recorded) -> None:
    connector_env(BC_GRANT_TYPE="authorization_code")  # nobody signed in
    with pytest.raises(TokenUnavailable):
        get_runtime().bc().get("companies")
    points = otel.points()
    assert otel.total(points, "bc_connector.token_failures", connection="default") == 1
    [span] = [s for s in otel.spans() if s.name == "BC GET companies"]
    assert span.attributes["error.type"] == "TokenUnavailable" and not span.status.is_ok
