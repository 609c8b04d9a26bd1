"""Stopping `make run` is bounded: a stop held by a call still in flight (an invocation's BC or
storage retries on a loaded machine) is given up on with a line saying so, instead of keeping the
launcher alive for minutes after Ctrl-C."""
import threading

import pytest

from devtools.run import stop_within


def test_a_stop_that_does_not_finish_is_not_waited_for_and_says_so(capsys):
    release = threading.Event()
    try:
        assert stop_within(release.wait, 0.2, "the Functions host") is False
    finally:
        release.set()
    assert "the Functions host: not stopped after 0.2 s" in capsys.readouterr().err


def test_a_stop_that_finishes_is_waited_for_and_its_error_raised():
    stopped = []
    assert stop_within(lambda: stopped.append(True), 60, "x") is True
    assert stopped == [True]

    def fails() -> None:
        raise RuntimeError("would not stop")

    with pytest.raises(RuntimeError, match="would not stop"):
        stop_within(fails, 60, "x")
