"""Hostile requests to the BC webhook receiver (issue 11, points 1 and 5): whatever the body, BC gets
202 (never a 4xx, which deletes the subscription, never a 500, which makes it resend a body that cannot
succeed); a body declared too large is not read; the handshake echoes only a bounded token, nosniff."""
from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.settings import QUEUE_NOTIFICATIONS, SETTINGS
from connector.webhooks.blueprint import bc_webhook
from connector.webhooks.client_state import client_state
from connector.webhooks.receiver import MAX_VALIDATION_TOKEN_CHARS, receive_request
from tests.queue_drain import drain_texts

GUID = "26814998-936a-401c-81c1-0e848a64971d"


def element(**overrides: Any) -> dict[str, Any]:
    return {"subscriptionId": GUID, "clientState": "x" * 43, "expirationDateTime": "2026-03-04T00:00:00Z",
            "changeType": "created", "resource": f"api/v2.0/companies({GUID})/items({GUID})",
            "lastModifiedDateTime": "2026-03-01T00:00:00Z", **overrides}


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
fields = st.sampled_from(["subscriptionId", "clientState", "changeType", "resource", "lastModifiedDateTime"])
odd_elements = st.builds(lambda f, v: json.dumps({"value": [element(**{f: v})]}), fields, json_values)
deep = st.builds(nested, st.integers(1_000, 40_000), st.sampled_from(["list", "object"]))
deep_value = deep.map(lambda n: '{"value": [' + n + "]}")
huge_numbers = st.one_of(st.sampled_from(["1e999", "-1e999", "NaN", "Infinity"]),
                         st.integers(310, 20_000).map(lambda n: "9" * n))


def with_raw(field: str, raw: str) -> str:
    """A one-element body whose `field` is preceded by raw JSON text `raw`."""
    return json.dumps({"value": [element()]}).replace(f'"{field}": "', raw.format(field=field), 1)


huge = st.builds(lambda f, n: with_raw(f, f'"{{field}}": {n}, "x": "'), fields, huge_numbers)
surrogates = st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b"])
lone_surrogates = st.builds(lambda f, s: with_raw(f, '"{field}": "' + s), fields, surrogates)
bad_bytes = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80"])
invalid_utf8 = st.builds(lambda raw, at: (lambda b: b[:at % len(b)] + raw + b[at % len(b):])(
    json.dumps({"value": [element()]}).encode()), bad_bytes, st.integers(0, 400))
hostile = st.one_of(odd_elements.map(str.encode), deep.map(str.encode), deep_value.map(str.encode),
                    huge.map(str.encode), lone_surrogates.map(str.encode), invalid_utf8,
                    st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()))


def request(body: bytes, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
            ) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url="http://127.0.0.1/api/webhooks/bc", params=params or {},
                            headers={"Content-Type": "application/json", **(headers or {})}, body=body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=hostile)
def test_any_body_is_acknowledged_with_202(runtime: Any, body: bytes) -> None:
    response = bc_webhook(request(body))
    assert response.status_code == 202


def test_thirty_thousand_nested_brackets_are_acknowledged_not_answered_500(runtime: Any) -> None:
    assert bc_webhook(request(("[" * 30000 + "]" * 30000).encode())).status_code == 202


def test_a_subscription_id_of_the_wrong_type_is_refused_without_failing(runtime: Any) -> None:
    body = json.dumps({"value": [element(subscriptionId=["a"]), element(subscriptionId={"b": 1})]})
    assert bc_webhook(request(body.encode())).status_code == 202
    assert drain_texts(runtime.storage.queue(QUEUE_NOTIFICATIONS)) == []


def test_a_body_declared_larger_than_the_limit_is_never_read(runtime: Any) -> None:
    def unread() -> bytes:
        raise AssertionError("the body was read")

    limit = runtime.settings.webhook_max_body_bytes
    reply = receive_request({}, {"Content-Length": str(limit + 1)}, unread, lambda: runtime)
    assert reply.status == 202


def test_a_body_within_the_limit_is_read_and_processed(runtime: Any) -> None:
    body = json.dumps({"value": []}).encode()
    reply = receive_request({}, {"content-length": str(len(body))}, lambda: body, lambda: runtime)
    assert reply.status == 202


def test_the_default_limit_fits_full_bundles_of_the_three_triggers_with_margin() -> None:
    """BC sends at most 1,000 notifications per subscription (more collapse into one `collection`) and
    bundles the subscriptions of a URL: the items, shipments and invoices triggers of a connection."""
    default = int(next(s.default for s in SETTINGS if s.name == "WEBHOOK_MAX_BODY_BYTES"))
    bundle = json.dumps({"value": [element(clientState=client_state("k", f"n{i}"),
                                           resource=f"api/v2.0/companies({GUID})/salesShipments({GUID})")
                                   for i in range(3 * 1000)]}, indent=2)
    assert 2 * len(bundle.encode()) < default < 16 * 1024 * 1024


def test_a_runtime_that_cannot_start_answers_503_not_500() -> None:
    def broken() -> Any:
        raise RuntimeError("no settings")

    assert receive_request({}, {}, lambda: b"{}", broken).status == 503


def test_the_handshake_echoes_a_bounded_token_with_nosniff(runtime: Any) -> None:
    token = "a" * MAX_VALIDATION_TOKEN_CHARS
    response = bc_webhook(request(b"", params={"validationToken": token}))
    assert (response.status_code, response.get_body().decode()) == (200, token)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.mimetype == "text/plain"


def test_an_overlong_validation_token_is_not_echoed(runtime: Any) -> None:
    token = "<script>" + "a" * MAX_VALIDATION_TOKEN_CHARS
    response = bc_webhook(request(b"", params={"validationToken": token}))
    assert response.status_code == 202 and response.get_body() == b""


@pytest.mark.e2e
def test_hostile_posts_through_the_local_host_get_202(local_host: Any) -> None:
    host = local_host()
    url = f"{host.url}/api/webhooks/bc"
    for body in [("[" * 30000 + "]" * 30000).encode(), b"\xff\xfe", b'{"value": [{"subscriptionId": [1]}]}',
                 b'{"value": [' + b"9" * 20000 + b"]}"]:
        assert requests.post(url, data=body, timeout=30).status_code == 202
    big = b'{"value": []}' + b" " * (1024 * 1024)
    assert requests.post(url, data=big, timeout=30).status_code == 202
    handshake = requests.post(f"{url}?validationToken=abc", timeout=30)
    assert handshake.text == "abc" and handshake.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("state", ["\ud800", "abc\udfff", "\udc00" * 43])
def test_a_lone_surrogate_client_state_is_a_mismatch_not_an_exception(state: str) -> None:
    from connector.webhooks.directory import KnownSubscription
    from connector.webhooks.receiver import screen

    sub = KnownSubscription(connection="default", company_id=GUID, entity_set="items", subscription_id=GUID,
                            client_states=("x" * 43,))
    assert sub.accepts(state) is False
    result = screen([element(clientState=state)], {GUID: sub})
    assert result.refused == {"clientState mismatch": 1} and result.queued == []
