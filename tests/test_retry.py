"""The one retry policy and the one Retry-After parser."""
from __future__ import annotations

import email.utils
import time

import pytest

from connector.retry import RetryPolicy, parse_retry_after


def test_retry_after_is_read_as_seconds_decimals_or_an_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0.25 ") == 0.25
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after(in_30_s) == pytest.approx(30, abs=2)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert parse_retry_after("soon") is None and parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_a_call_retries_within_its_count_and_total_wait():
    retrying = RetryPolicy(max_retries=3, backoff_seconds=1.0, backoff_max_seconds=2.0,
                           total_sleep_max_seconds=100.0).start()
    delays = [retrying.next_delay() for _ in range(4)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 1.0 <= delays[2] <= 2.0
    assert delays[3] is None  # three retries spent
    patient = RetryPolicy(max_retries=10, total_sleep_max_seconds=5.0).start()
    assert patient.next_delay(4.0) is not None and patient.next_delay(4.0) is None  # the wait is spent


def test_the_service_hint_wins_but_is_capped():
    policy = RetryPolicy(retry_after_max_seconds=10.0)
    assert 3.0 <= policy.delay(5, 3.0) <= 3.1
    assert policy.delay(0, 1000.0) <= 10.1
