"""Waiting for an outcome in tests: a generous deadline for something to happen, never a claim about
how fast it happens (no test asserts elapsed time)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Poll `condition()` until it returns something truthy and return that; AssertionError naming
    `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout:g} s"
        time.sleep(interval)
