"""The one retry policy: wait what the service asked (`Retry-After`), else back off exponentially
with jitter, within a number of retries and a total waiting time.

Every loop that tries again uses it: the BC client (429/5xx, timeouts), the lean queue sender
(429/5xx of Storage), a claim waiting for its owner, the token service's pause after a refusal. A
loop asks `Retrying.next_delay(retry_after)` for how long to wait (None: give up, raise) and sleeps
that long itself (so it can log and count the wait first). `parse_retry_after` is the one reader of
the header (azure-core's: delta-seconds, decimals included, or an HTTP date).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from azure.core.pipeline.policies._utils import parse_retry_after as _azure_parse_retry_after


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or HTTP date; a past date is 0); None when absent or
    unreadable."""
    if not value or not value.strip():
        return None
    try:
        return float(_azure_parse_retry_after(value.strip()))
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How one call retries. `total_sleep_max_seconds` keeps a call's waiting well inside the
    function timeout (10 min): past it the error goes to the caller (queue retry, next run)."""

    max_retries: int = 6
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    retry_after_max_seconds: float = 120.0
    total_sleep_max_seconds: float = 300.0

    def ceiling(self, attempt: int) -> float:
        """The longest back-off before retry number `attempt` (0-based): doubling, capped."""
        return min(self.backoff_max_seconds, self.backoff_seconds * (2 ** min(attempt, 62)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): the service's hint (capped, a
        little jitter), else the capped exponential back-off with jitter (half to all of it)."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_seconds) + random.uniform(0, 0.1)
        ceiling = self.ceiling(attempt)
        return random.uniform(ceiling / 2, ceiling)

    def start(self) -> Retrying:
        """The retries of one call."""
        return Retrying(self)


class Retrying:
    """The retries one call has made so far (not shared between calls or threads)."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.retries = 0
        self.slept = 0.0

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """How long to wait before the next attempt, counted as waited; None when the retries or the
        waiting time are spent (the caller raises its error)."""
        policy = self.policy
        if self.retries >= policy.max_retries:
            return None
        delay = policy.delay(self.retries, retry_after)
        if self.slept + delay > policy.total_sleep_max_seconds:
            return None
        self.retries += 1
        self.slept += delay
        return delay
