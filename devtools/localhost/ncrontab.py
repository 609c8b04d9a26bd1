"""Timer schedules: NCRONTAB (`sec min hour day month dow`), TimeSpan (dev tooling; not deployed).

NCRONTAB puts seconds first; croniter puts them sixth, so the seconds field is moved. Five-field
expressions (no seconds) are accepted as the host does. Times are UTC, the host's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from .config import ConfigError, parse_timespan


def to_croniter(expression: str) -> str:
    """The croniter form of an NCRONTAB expression (seconds moved from first to sixth field)."""
    fields = expression.split()
    if len(fields) == 6:
        fields = fields[1:] + fields[:1]
    elif len(fields) != 5:
        raise ConfigError(f"NCRONTAB needs 6 fields (sec min hour day month dow), got {expression!r}")
    cron = " ".join(fields)
    if not croniter.is_valid(cron):
        raise ConfigError(f"invalid NCRONTAB expression {expression!r}")
    return cron


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule: either a croniter expression or a fixed interval."""

    expression: str
    cron: str | None = None
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        if ":" in text and " " not in text:
            seconds = parse_timespan(text)
            if seconds <= 0:
                raise ConfigError(f"TimeSpan schedule must be positive, got {expression!r}")
            return cls(expression, interval=timedelta(seconds=seconds))
        return cls(expression, cron=to_croniter(text))

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime)."""
        if self.interval is not None:
            return moment + self.interval
        return croniter(self.cron, moment).get_next(datetime)
