"""The one error root: every error the connector defines is a ConnectorError whose attributes (code,
retryable, HTTP status, internal) decide what callers do; one function gives a route's answer."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import connector
from connector.bc.errors import BCError, TokenUnavailable, error_from_response
from connector.errors import ConnectorError, describe, error_code, is_permanent, route_answer
from connector.orders.claims import ClaimBusy
from connector.orders.schema import OrderRejected
from connector.settings import SettingsError, UnknownConnection
from connector.webhooks.subscriptions import SubscriptionRunBusy


def connector_exceptions() -> set[type[BaseException]]:
    found = set()
    for module in pkgutil.walk_packages(connector.__path__, "connector."):
        if module.name.endswith("__main__"):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("connector."):
                found.add(cls)
    return found


def test_every_connector_error_has_the_one_root():
    classes = connector_exceptions()
    assert {BCError, OrderRejected, UnknownConnection} <= classes
    assert sorted(c.__qualname__ for c in classes if not issubclass(c, ConnectorError)) == []


def test_attributes_decide_permanent_or_retryable():
    assert is_permanent(OrderRejected("MalformedJson", "bad"))
    assert is_permanent(UnknownConnection("emea", ("default",)))
    assert is_permanent(error_from_response(400, None))
    assert not is_permanent(error_from_response(503, None))
    assert not is_permanent(TokenUnavailable("default", "not-signed-in"))
    assert not is_permanent(ClaimBusy("busy"))
    assert not is_permanent(KeyError("a bug"))  # foreign: the host's retries and poison decide


def test_route_answers_come_from_the_error():
    assert route_answer(UnknownConnection("emea", ("default",))) == (
        {"error": {"code": "UnknownConnection",
                   "message": "unknown connection 'emea' (configured: default)"}}, 404)
    assert route_answer(SubscriptionRunBusy("running"))[0]["error"]["code"] == "AlreadyRunning"
    assert route_answer(SubscriptionRunBusy("running"))[1] == 409
    assert route_answer(error_from_response(404, {"error": {"code": "BadRequest_NotFound",
                                                            "message": "gone"}})) == (
        {"error": {"code": "BadRequest_NotFound", "message": "gone"}}, 502)


def test_internal_and_foreign_errors_are_described_without_their_text():
    for exc in (SettingsError("TOKEN_ENCRYPTION_KEY is not set"), RuntimeError("secret detail")):
        described = describe(exc)
        assert described.code == "InternalError" and "secret" not in described.message
    assert describe(OrderRejected("InvalidField", "bad field")).as_dict() == {
        "code": "InvalidField", "message": "bad field"}


def test_telemetry_codes_come_from_attributes_not_class_names():
    assert error_code(error_from_response(429, {"error": {"code": "Throttled"}})) == "Throttled"
    assert error_code(error_from_response(404, None)) == "BCNotFound"  # no code from BC: the kind
    assert error_code(ValueError("x")) == "ValueError"
    assert TokenUnavailable("default", "not-signed-in").token_failure
