"""BC's cap of 200 webhook subscriptions per environment (bc-api.md §8), counted before each one
the renewal run would create: a warning from 80 %, a refusal at the cap that names the triggers to
drop. BC's own list (`GET subscriptions`) holds every subscription of the environment, so the count
includes other companies' and other connections' ones. Pure."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

SUBSCRIPTIONS_PER_ENVIRONMENT = 200
WARN_SHARE = 0.8


@dataclass(frozen=True)
class SubscriptionCapacity:
    """Subscriptions in one environment (`in_use`) against BC's cap."""

    in_use: int
    cap: int = SUBSCRIPTIONS_PER_ENVIRONMENT

    @property
    def room(self) -> int:
        return max(0, self.cap - self.in_use)

    @property
    def warning(self) -> bool:
        """At or past 80 % of the cap."""
        return self.in_use >= math.ceil(self.cap * WARN_SHARE)

    def taken(self, count: int = 1) -> SubscriptionCapacity:
        return replace(self, in_use=self.in_use + count)

    def advice(self, connection: str, triggers: list[str]) -> str:
        """What the count means and what to do about it, for logs, health events and /api/status."""
        return (f"the BC environment holds {self.in_use} of its {self.cap} webhook subscriptions "
                f"({self.in_use / self.cap:.0%}); to make room, drop triggers this environment does not "
                f"need from connection {connection!r} (TRIGGERS; it watches {', '.join(triggers)}) or from "
                "other connections on the same environment, or move companies to another environment; "
                "a trigger left without a subscription is still covered by the sweep (no deletions)")
