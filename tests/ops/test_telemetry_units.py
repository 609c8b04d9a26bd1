"""Telemetry's pure parts: trace context, what a BC path says, events' connection and latency, set-up."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.settings import SettingsError, load_telemetry_settings
from connector.telemetry import (
    aad_client_id,
    bc_target,
    change_latency,
    context_from,
    event_connection,
    is_traceparent,
    new_traceparent,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value, ok", [
    (VALID, True),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),  # all-zero trace id
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # upper case
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
    ("", False), (None, False), (42, False),
])
def test_traceparent_format(value, ok):
    assert is_traceparent(value) is ok


def test_a_fresh_traceparent_is_valid_and_new_each_time():
    a, b = new_traceparent(), new_traceparent()
    assert is_traceparent(a) and is_traceparent(b) and a != b


def test_a_traceparent_names_its_remote_parent():
    from opentelemetry import trace

    span = trace.get_current_span(context_from(VALID)).get_span_context()
    assert (f"{span.trace_id:032x}", f"{span.span_id:016x}", span.is_remote) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert context_from("garbage") is None and context_from(None) is None


@pytest.mark.parametrize("path, target", [
    ("/v2.0/t/production/api/v2.0/companies(c1)/items(i1)/itemVariants", ("c1", "items/itemVariants")),
    ("/v2.0/t/production/api/v2.0/companies(c1)/salesOrders?$filter=externalDocumentNumber eq 'X'",
     ("c1", "salesOrders")),
    ("/v2.0/t/production/api/v2.0/companies", ("", "companies")),
    ("/v2.0/t/production/api/microsoft/runtime/beta/subscriptions('abc')", ("", "subscriptions")),
])
def test_bc_target_names_company_and_entity_set_without_keys(path, target):
    assert bc_target(path) == target


def test_event_connection_and_change_latency():
    event = {"source": "bc-connector/emea/c1", "type": "bc.item.created", "time": "2026-11-29T11:59:30Z"}
    assert event_connection(event) == "emea"
    assert change_latency(event, NOW) == 30.0
    assert change_latency(event | {"type": "bc.item.pulled"}, NOW) is None  # a schedule, not a change
    assert change_latency(event | {"time": None}, NOW) is None
    assert event_connection({"source": "elsewhere"}) == ""


def test_aad_sign_in_comes_from_the_authentication_string():
    assert aad_client_id("ClientId=abc;Authorization=AAD") == "abc"
    assert aad_client_id("Authorization=AAD") == ""
    assert aad_client_id("") is None


def test_telemetry_settings():
    assert not load_telemetry_settings({}).enabled
    assert load_telemetry_settings({"TELEMETRY_EXPORTER": "Console"}).exporter == "console"
    assert load_telemetry_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}).enabled
    with pytest.raises(SettingsError, match="TELEMETRY_EXPORTER"):
        load_telemetry_settings({"TELEMETRY_EXPORTER": "zipkin"})
