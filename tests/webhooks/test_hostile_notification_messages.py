"""Hostile `bc-notifications` messages (issue 11 point 1): a batch that cannot be read is kept on
`bc-notifications-poison` at once (never dropped, never five futile retries), and nothing reaches BC."""
from __future__ import annotations

import json
from typing import Any

from azure.functions.queue import QueueMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.settings import QUEUE_NOTIFICATIONS_POISON
from connector.storage import kept_text, message_text
from connector.webhooks.blueprint import process_bc_notifications
from tests.queue_drain import drain_texts

GUID = "26814998-936a-401c-81c1-0e848a64971d"
NOTE = {"connection": "default", "companyId": GUID, "entitySet": "items", "subscriptionId": "s",
        "changeType": "created", "resource": f"api/v2.0/companies({GUID})/items({GUID})"}


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


bad_bytes = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80"])
unreadable = st.one_of(
    st.builds(nested, st.integers(1_000, 30_000), st.just("list")).map(str.encode),
    st.builds(nested, st.integers(1_000, 9_000), st.just("object")).map(str.encode),
    st.builds(lambda d: ('{"notifications": [' + nested(d, "list") + "]}").encode(),
              st.integers(1_000, 20_000)),
    st.builds(lambda raw, at: (lambda b: b[:at % len(b)] + raw + b[at % len(b):])(
        json.dumps({"notifications": [NOTE]}).encode()), bad_bytes, st.integers(0, 300)),
    st.sampled_from([b"", b"null", b"[1]", b'{"notifications": {}}', b'{"notifications": [1, 2]}']),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(body=unreadable)
def test_an_unreadable_batch_is_kept_on_the_poison_queue_at_once(runtime: Any, emulator: Any,
                                                                 body: bytes) -> None:
    emulator.clear_requests()
    process_bc_notifications(QueueMessage(id="n-1", body=body, dequeue_count=1, pop_receipt="p"))
    assert drain_texts(runtime.storage.queue(QUEUE_NOTIFICATIONS_POISON)) == [kept_text(message_text(body))]
    assert [r for r in emulator.requests if "/companies(" in r.path] == []


def test_huge_numbers_and_lone_surrogates_in_notes_are_skipped_without_failing(runtime: Any,
                                                                               emulator: Any) -> None:
    emulator.clear_requests()
    text = ('{"notifications": [{"connection": "default", "companyId": 1e999, "entitySet": "items", '
            '"changeType": "created", "resource": "x(\\ud800)"}, {"connection": ' + "9" * 5000 + '}]}')
    process_bc_notifications(QueueMessage(id="n-2", body=text.encode(), dequeue_count=1, pop_receipt="p"))
    assert [r for r in emulator.requests if "/companies(" in r.path] == []
