"""The emulator's clock: real UTC time plus an adjustable offset (dev tooling, never deployed)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Emulator time = real UTC time + offset, or a frozen instant; thread-safe. Tokens, codes and
    rate windows use it."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._frozen: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current emulator time (tz-aware UTC)."""
        with self._lock:
            return self._frozen or datetime.now(UTC) + self._offset

    def timestamp(self) -> float:
        """The current emulator time as a POSIX timestamp."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        """Move emulator time forward (or back, if negative) by `seconds`."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Jump to `when` (naive datetimes are taken as UTC); time keeps running from there unless
        frozen."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            if self._frozen is not None:
                self._frozen = when
            else:
                self._offset = when - datetime.now(UTC)

    def freeze(self) -> None:
        """Stop time where it stands (`advance` and `set` still move it), for exact expiry tests."""
        with self._lock:
            self._frozen = self._frozen or datetime.now(UTC) + self._offset

    def thaw(self) -> None:
        """Let time run on from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - datetime.now(UTC)
                self._frozen = None
