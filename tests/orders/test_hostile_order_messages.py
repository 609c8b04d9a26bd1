"""Hostile `sales-orders` messages (issue 11, point 1): whatever the bytes (nesting too deep for any
parser, numbers no float holds, invalid UTF-8, lone surrogates), each delivery ends with exactly one
`failed` result naming a clear code and the original kept on `sales-orders-poison`; BC is never asked."""
from __future__ import annotations

import json
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.orders.blueprint import send_created_sales_order
from connector.storage import kept_text, message_text
from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues

UNPARSEABLE = {"MalformedJson", "InvalidMessage", "InvalidEncoding"}
SEED = json.dumps(SEED_EXAMPLE)


def deliver(body: bytes, dequeue_count: int = 1) -> None:
    """One delivery through the real queue trigger, as the host would make it."""
    send_created_sales_order(QueueMessage(id="m-hostile", body=body, dequeue_count=dequeue_count,
                                          pop_receipt="p"))


def nested(depth: int, kind: str) -> str:
    """Nesting `depth` deep, within a queue message's 64 KiB."""
    if kind == "list":
        return "[" * depth + "]" * depth
    depth = min(depth, 9_000)
    return '{"a":' * depth + "1" + "}" * depth


def in_field(value: str, field: str = "discountAmount", key: str | None = None) -> str:
    """The seed example with `field` set to raw JSON `value` (and an externalDocumentNumber)."""
    head = SEED[:-1] + (f', "externalDocumentNumber": {json.dumps(key)}' if key else "")
    if field.startswith("line."):
        return head + f', "salesOrderLines": [{{"{field[5:]}": {value}}}]}}'
    return head + f', "{field}": {value}}}'


deep = st.builds(nested, st.integers(1_000, 30_000), st.sampled_from(["list", "object"]))
deep_inside = st.builds(lambda d, k: in_field(nested(d, k), "salesOrderLines", "DEEP-1"),
                        st.integers(1_000, 30_000), st.sampled_from(["list", "object"]))
huge_numbers = st.one_of(
    st.sampled_from(["1e999", "-1e999", "1E400", "123.5e1000"]),
    st.integers(310, 20_000).map(lambda n: "9" * n),
    st.integers(310, 2_000).map(lambda n: "-1" + "0" * n + ".25"),
)
huge = st.builds(in_field, huge_numbers, st.sampled_from(["discountAmount", "line.quantity", "line.unitPrice",
                                                          "line.sequence"]), st.just("HUGE-1"))
huge_ints = st.builds(lambda n: in_field(str(n), "line.sequence", "HUGE-2"), st.integers(2**31, 10**40))
bad_bytes = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80",
                             b"\xf8\x88\x80\x80\x80"])
invalid_utf8 = st.builds(lambda raw, at: (lambda b: b[:at % len(b)] + raw + b[at % len(b):])(
    in_field('"GL0000"', "customerNumber", "UTF-1").encode()), bad_bytes, st.integers(0, 300))
surrogates = st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d"])
lone_surrogates = st.one_of(
    st.builds(lambda s: in_field(f'"{s}"', "customerNumber", "SUR-1"), surrogates),
    st.builds(lambda s: in_field('"x"', "shipToName")[:-1] + f', "externalDocumentNumber": "{s}"}}',
              surrogates),
    st.builds(lambda s: '{"' + s + '": 1}', surrogates),
)
hostile = st.one_of(deep.map(str.encode), deep_inside.map(str.encode), huge.map(str.encode),
                    huge_ints.map(str.encode), invalid_utf8, lone_surrogates.map(str.encode))


@pytest.fixture
def hostile_runtime(runtime: Any, queues: OrderQueues, bc: EmulatorBC) -> tuple[OrderQueues, EmulatorBC]:
    """The connector on Azurite and the emulator (the trigger builds its runtime from this environment)."""
    return queues, bc


def test_thirty_thousand_nested_brackets_fail_at_once_with_one_result_and_the_message_kept(
        hostile_runtime: tuple[OrderQueues, EmulatorBC]) -> None:
    queues, bc = hostile_runtime
    body = ("[" * 30000 + "]" * 30000).encode()
    deliver(body)  # returns: the host does not retry it
    [result] = queues.results()
    assert result["status"] == "failed" and result["error"]["code"] == "MalformedJson"
    assert "nested too deeply" in result["error"]["message"] or "recursion" in result["error"]["message"]
    assert queues.poison() == [body.decode()]
    assert bc.order_posts() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(body=hostile)
def test_any_hostile_message_ends_as_one_failed_result_and_is_kept(
        hostile_runtime: tuple[OrderQueues, EmulatorBC], body: bytes) -> None:
    queues, bc = hostile_runtime
    bc.emulator.clear_requests()
    deliver(body)
    results, poison = queues.results(), queues.poison()
    assert len(results) == 1, results
    assert results[0]["status"] == "failed"
    assert results[0]["error"]["code"] in UNPARSEABLE, results[0]
    assert poison == [kept_text(message_text(body))]
    assert bc.order_posts() == 0


def test_invalid_utf8_is_kept_with_its_bytes_visible() -> None:
    text = message_text(b'{"customerNumber": "A\xffB"}')
    assert kept_text(text) == '{"customerNumber": "A\\xffB"}'


def test_a_key_with_a_lone_surrogate_is_named_readably_in_the_result(
        hostile_runtime: tuple[OrderQueues, EmulatorBC]) -> None:
    queues, _ = hostile_runtime
    deliver(b'{"customerNumber": "GL00000008", "externalDocumentNumber": "K-\\ud800", "colour": 1}')
    [result] = queues.results()
    assert result["externalDocumentNumber"] == "K-?"
    assert result["error"]["code"] == "MalformedJson"


def test_an_unexpected_failure_keeps_its_text_out_of_the_result(
        hostile_runtime: tuple[OrderQueues, EmulatorBC], monkeypatch: pytest.MonkeyPatch) -> None:
    queues, _ = hostile_runtime

    def broken(*_: Any) -> Any:
        raise KeyError("secret-internal-detail")

    monkeypatch.setattr("connector.orders.send.send_order", broken)
    with pytest.raises(KeyError):
        deliver(in_field('"x"', "shipToName", "INT-1").encode(), dequeue_count=5)
    [result] = queues.results()
    assert result["error"]["code"] == "InternalError"
    assert "secret-internal-detail" not in json.dumps(result)


@pytest.mark.e2e
def test_deep_nesting_through_the_local_host_gets_its_failed_result(
        order_host: Any, queues: OrderQueues) -> None:
    host = order_host()
    text = "[" * 30000 + "]" * 30000
    queues.send([text])
    host.wait_idle(60)
    [result] = queues.results()
    assert result["status"] == "failed" and result["error"]["code"] == "MalformedJson"
    assert queues.poison() == [text]



def test_log_fields_carry_keys_cut_short_and_no_personal_data(
        hostile_runtime: tuple[OrderQueues, EmulatorBC], caplog: pytest.LogCaptureFixture) -> None:
    """An invalid key of 1,000 characters and an address, a name and an e-mail that fail validation:
    the result names them for the producer; the log names the field and keeps the key short."""
    import logging

    queues, _ = hostile_runtime
    key = "K" * 1000
    body = json.dumps(SEED_EXAMPLE | {"externalDocumentNumber": key,
                                      "email": "jane.doe@example.com" + "x" * 80,
                                      "shipToName": "Jane Doe " * 20,
                                      "shipToAddressLine1": "1 Secret Lane " * 10})
    with caplog.at_level(logging.INFO, "connector"):
        deliver(body.encode())
    [result] = queues.results()
    assert result["status"] == "failed" and "jane.doe@example.com" in result["error"]["message"]
    ours = [r for r in caplog.records if r.name.startswith("connector")]
    logged = " | ".join(f"{r.getMessage()} | {getattr(r, 'order_key', '')}" for r in ours)
    assert "jane.doe@example.com" not in logged and "Jane Doe" not in logged and "Secret Lane" not in logged
    assert "K" * 65 not in logged and "email" in logged  # the field is named, the key cut short
    assert any(getattr(r, "order_key", "").startswith("K" * 64 + "…") for r in ours)
