"""Queue triggers through LocalHost on Azurite: delete, retry, poison, encodings, visibility, batching."""

from __future__ import annotations

import base64
import json
import time

import pytest
import sample_app
from conftest import queue

seen = sample_app.seen


def bodies() -> list[dict]:
    return [json.loads(m.get_body()) for m, _ in seen.messages]


def test_message_is_processed_and_deleted(make_host) -> None:
    host = make_host()
    queue(host).send_message(json.dumps({"n": 1}))
    host.wait_idle(15)
    assert bodies() == [{"n": 1}]
    msg = seen.messages[0][0]
    assert msg.dequeue_count == 1 and msg.id and msg.pop_receipt and msg.insertion_time
    assert queue(host).get_queue_properties().approximate_message_count == 0
    assert [(i.function, i.trigger, i.outcome) for i in host.invocations if i.function == "work"] == [
        ("work", "queueTrigger", "succeeded")
    ]


def test_failure_is_retried_then_moved_to_poison_with_original_text(make_host) -> None:
    host = make_host(queues={"maxDequeueCount": 3})
    text = json.dumps({"fail": True, "id": "SO-1"})
    queue(host).send_message(text)
    host.wait_idle(20)
    assert [m.dequeue_count for m, _ in seen.messages] == [1, 2, 3]
    assert queue(host).get_queue_properties().approximate_message_count == 0
    poisoned = list(queue(host, "-poison").receive_messages(max_messages=32))
    assert [m.content for m in poisoned] == [base64.b64encode(text.encode()).decode()]  # as it was sent
    assert [i.outcome for i in host.invocations if i.function == "work"] == ["failed"] * 3


def test_encoding_none_passes_raw_text(make_host) -> None:
    host = make_host(queues={"messageEncoding": "none"})
    queue(host, base64=False).send_message('{"plain": "json"}')
    host.wait_idle(15)
    assert bodies() == [{"plain": "json"}]


def test_base64_encoding_rejects_raw_text_like_the_host(make_host) -> None:
    host = make_host(queues={"maxDequeueCount": 2})
    queue(host, base64=False).send_message('{"plain": "json"}')
    host.wait_idle(15)
    assert seen.messages == []  # the function never ran
    failures = [i for i in host.invocations if i.function == "work"]
    assert [i.outcome for i in failures] == ["failed", "failed"]
    assert "base64" in (failures[0].error or "")
    poisoned = list(queue(host, "-poison").receive_messages())
    assert [m.content for m in poisoned] == ['{"plain": "json"}']


def test_visibility_timeout_delays_the_retry(make_host) -> None:
    host = make_host(queues={"maxDequeueCount": 2, "visibilityTimeout": "00:00:02"})
    queue(host).send_message(json.dumps({"fail": True}))
    host.wait_idle(20)
    (first, t1), (second, t2) = seen.messages
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)
    assert t2 - t1 >= 1.9


def test_immediate_retry_without_visibility_timeout(make_host) -> None:
    host = make_host(queues={"maxDequeueCount": 2}, queue_lease=60)
    queue(host).send_message(json.dumps({"fail": True}))
    host.wait_idle(20)  # well before the 60 s lease would have let the message reappear
    assert [m.dequeue_count for m, _ in seen.messages] == [1, 2]


@pytest.mark.parametrize(("batch_size", "threshold", "threads", "expected"), [
    (3, 0, {}, 3), (1, 1, {}, 2),
    (3, 0, {"PYTHON_THREADPOOL_THREAD_COUNT": "2"}, 2),  # the Python worker's pool for sync functions
    (3, 0, {"PYTHON_THREADPOOL_THREAD_COUNT": "none"}, 3),  # a value the worker ignores is ignored
])
def test_batch_size_threshold_and_worker_threads_bound_concurrency(
        make_host, batch_size, threshold, threads, expected) -> None:
    host = make_host(queues={"batchSize": batch_size, "newBatchThreshold": threshold}, **threads)
    client = queue(host)
    for n in range(7):
        client.send_message(json.dumps({"n": n, "sleep": 0.4}))
    host.wait_idle(30)
    assert len(seen.messages) == 7
    assert seen.max_running == expected


def test_long_run_keeps_its_message_invisible(make_host) -> None:
    host = make_host(queue_lease=2)
    queue(host).send_message(json.dumps({"sleep": 3.5}))
    host.wait_idle(20)
    assert [m.dequeue_count for m, _ in seen.messages] == [1]  # the lease was renewed, no redelivery


def test_wait_idle_times_out_while_work_remains(make_host) -> None:
    host = make_host()
    queue(host).send_message(json.dumps({"sleep": 1.5}))
    with pytest.raises(TimeoutError, match="queue"):
        host.wait_idle(0.3)
    host.wait_idle(15)
    assert len(seen.messages) == 1


def test_stop_waits_for_running_messages(make_host) -> None:
    host = make_host()
    queue(host).send_message(json.dumps({"sleep": 0.8}))
    deadline = time.monotonic() + 10
    while not seen.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.stop() == []
    assert seen.running == 0
    assert [i.outcome for i in host.invocations if i.function == "work"] == ["succeeded"]

