"""LocalHost.stop is bounded: a function that never returns is named in the log and in the answer, left
running, and the stop returns (no wall-clock assertion: the stop returning at all is the point)."""

from __future__ import annotations

import json
import logging

import sample_app
from conftest import queue

from tests.waiting import wait_until

seen = sample_app.seen


def ran(host, function: str) -> list:
    """The finished invocations of `function`."""
    return [i for i in host.invocations if i.function == function]


def test_stop_names_a_queue_function_that_never_returns_and_returns(make_host, caplog) -> None:
    host = make_host()
    name = host.env["SAMPLE_QUEUE"]
    queue(host).send_message(json.dumps({"block": True}))
    wait_until(lambda: seen.running == 1)
    with caplog.at_level(logging.WARNING, logger="devtools.localhost"):
        stuck = host.stop(timeout=0.5)
    assert stuck == [f"queue {name}: 1 running invocation(s) of work"]
    assert f"stop: queue {name}: 1 running invocation(s) of work did not stop within 0.5 s" in caplog.text
    assert seen.running == 1 and ran(host, "work") == []  # left running, not cut short
    seen.release.set()
    wait_until(lambda: ran(host, "work") != [])
    assert [i.outcome for i in ran(host, "work")] == ["succeeded"]


def test_stop_names_a_timer_function_that_never_returns_and_returns(make_host, caplog) -> None:
    host = make_host(SAMPLE_SCHEDULE="*/1 * * * * *")
    seen.tick_blocks = True
    wait_until(lambda: seen.running == 1)
    with caplog.at_level(logging.WARNING, logger="devtools.localhost"):
        stuck = host.stop(timeout=0.5)
    assert stuck == ["timer tick: a running invocation"]
    assert "stop: timer tick: a running invocation did not stop within 0.5 s" in caplog.text
    seen.release.set()
    wait_until(lambda: seen.running == 0)
    assert [i.outcome for i in ran(host, "tick")] == ["succeeded"]


def test_a_stop_with_nothing_stuck_reports_nothing(make_host, caplog) -> None:
    host = make_host()
    queue(host).send_message(json.dumps({"sleep": 0.2}))
    wait_until(lambda: seen.running == 1)
    with caplog.at_level(logging.WARNING, logger="devtools.localhost"):
        assert host.stop() == []
    assert "did not stop" not in caplog.text
    assert [i.outcome for i in ran(host, "work")] == ["succeeded"]
