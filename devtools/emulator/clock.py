"""The emulator's clock: real UTC time plus an adjustable offset (dev tooling, never deployed)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Emulator time = real UTC time + offset; thread-safe. Tokens, codes and rate windows use it."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current emulator time (tz-aware UTC)."""
        with self._lock:
            return datetime.now(UTC) + self._offset

    def timestamp(self) -> float:
        """The current emulator time as a POSIX timestamp."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        """Move emulator time forward (or back, if negative) by `seconds`."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Jump to `when` (naive datetimes are taken as UTC); time keeps running from there."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            self._offset = when - datetime.now(UTC)
