"""Property: whatever mix of valid and invalid messages arrives, each one ends `created`, `duplicate`
or `failed` with its original text kept on the poison queue; none is lost, no key gets two orders."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LINES = [
    {"itemNumber": "1896-S", "quantity": 2},
    {"itemNumber": "1908-S", "variantCode": "BLUE", "quantity": 1},
    {"lineType": "Item", "lineObjectNumber": "1920-S", "variantCode": "oak"},
    {"lineType": "Account", "lineObjectNumber": "6810", "quantity": 1, "unitPrice": 5},
    {"lineType": "Comment", "description": "Leave at the door"},
]
INVALID = {  # kind -> what turns the seed example into a message that must fail
    "unknown-field": lambda m: json.dumps(m | {"colour": "red"}),
    "read-only-field": lambda m: json.dumps(m | {"status": "Open"}),
    "wrong-type": lambda m: json.dumps(m | {"orderDate": 20230901}),
    "malformed": lambda m: json.dumps(m)[:-1],
    "unknown-customer": lambda m: json.dumps(m | {"customerNumber": "NOBODY"}),
    "unknown-variant": lambda m: json.dumps(m | {"salesOrderLines": [{"itemNumber": "1900-S",
                                                                      "variantCode": "NOPE"}]}),
    "unknown-company": lambda m: json.dumps(m | {"company": "No Such Company Ltd."}),
}

valid = st.fixed_dictionaries({"kind": st.just("valid"), "key": st.none() | st.integers(0, 2),
                               "lines": st.lists(st.sampled_from(LINES), max_size=4)})
invalid = st.fixed_dictionaries({"kind": st.sampled_from(sorted(INVALID))})
batches = st.lists(st.one_of(valid, invalid), min_size=1, max_size=6)


@pytest.fixture
def host(order_host: Any) -> Any:
    """One local host for all examples (function-scoped fixtures run once per hypothesis test)."""
    return order_host()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches)
def test_every_message_ends_created_duplicate_or_failed_and_kept(
        host: Any, queues: OrderQueues, bc: EmulatorBC, batch: list[dict[str, Any]]) -> None:
    run = uuid.uuid4().hex[:12]
    texts, failing = [], []
    for n, spec in enumerate(batch):
        if spec["kind"] == "valid":
            key = None if spec["key"] is None else f"P-{run}-{spec['key']}"
            texts.append(json.dumps(SEED_EXAMPLE | {"externalDocumentNumber": key,
                                                    "salesOrderLines": spec["lines"]}))
        else:
            texts.append(INVALID[spec["kind"]](SEED_EXAMPLE | {"externalDocumentNumber": f"X-{run}-{n}"}))
            failing.append(texts[-1])

    queues.send(texts)
    host.wait_idle(120)
    results, poison = queues.results(), queues.poison()

    assert len(results) == len(texts)
    assert Counter(poison) == Counter(failing)
    assert sum(r["status"] == "failed" for r in results) == len(failing)
    keyed: dict[str, list[dict[str, Any]]] = {}
    keyless = []
    for result in results:
        if result["status"] == "failed":
            continue
        if result["externalDocumentNumber"] is None:
            keyless.append(result)
        else:
            keyed.setdefault(result["externalDocumentNumber"], []).append(result)
    for key, outcomes in keyed.items():
        assert sorted(r["status"] for r in outcomes) == ["created"] + ["duplicate"] * (len(outcomes) - 1)
        assert [o["id"] for o in bc.orders(key)] == [outcomes[0]["salesOrderId"]]
        assert {r["salesOrderId"] for r in outcomes} == {outcomes[0]["salesOrderId"]}
    assert {r["status"] for r in keyless} <= {"created"}
    assert len({bc.order(r["salesOrderId"])["id"] for r in keyless}) == len(keyless)
