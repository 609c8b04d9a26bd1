"""Single-runner leases in Table Storage: one holder at a time across threads, instances and hosts.

A lease is an owned row (`connector/rows.py`) in `bcleases` (PK = the lease name, RK = `lease`):
holder and expiry. Taking it is an insert, or an ETag-guarded replace of an expired (or invalid)
row, so when two runners race exactly one wins. Leases are short (LEASE_SECONDS) and, while their
owner works inside `with lease`, renewed by a heartbeat thread every third of their life: an owner
that dies blocks the next run for about a minute, whatever its run's length. Expiry uses the wall
clock: instances are NTP-synced and the TTL dwarfs any skew.

    with Lease(storage, f"items:{connection}:{company_id}") as acquired:
        if not acquired:
            return "already running"
        ...                 # lease.renew() (or lease.held) at checkpoints: False = taken over, stop
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from connector.rows import Heartbeat, OwnedRow, holding
from connector.settings import TABLE_LEASES
from connector.storage import Storage, table_key

log = logging.getLogger(__name__)

ROW_KEY = "lease"
LEASE_SECONDS = 60.0  # a dead owner's lease blocks the next runner at most this long


def lease_is_free(entity: dict[str, Any], holder: str, now: float,
                  longest: float = LEASE_SECONDS) -> bool:
    """May `holder` take a lease whose row is `entity`? Yes if it already holds it, or the row
    expired or does not validate (see `connector.rows.holding`)."""
    return holding(entity, now, longest).free_for(holder, now)


class Lease:
    """A named lease; `acquire()`, then `renew()` while working, then `release()`.

    Also a context manager that yields whether it was acquired, renews it on a heartbeat while the
    block runs, and releases it on exit.
    """

    def __init__(self, storage: Storage, name: str, ttl_seconds: float = LEASE_SECONDS, *,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.ttl_seconds = ttl_seconds
        self._row = OwnedRow(lambda: storage.table(TABLE_LEASES), table_key(name), ROW_KEY,
                             ttl_seconds, clock=clock)
        self.holder = self._row.holder
        self._heartbeat: Heartbeat | None = None

    @property
    def held(self) -> bool:
        """True after a successful acquire/renew and until release or a lost renewal."""
        return self._row.held

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; False if someone else holds it (or won the race)."""
        if self._row.acquire():
            return True
        found = self._row.found
        if found.holder:
            log.info("lease %s: held by another runner until %.0f", self.name, found.expires)
        return False

    def renew(self) -> bool:
        """Push the expiry out by the TTL; False if the lease was lost (expired and taken over)."""
        was_held = self._row.held
        renewed = self._row.renew()
        if was_held and not renewed:
            log.warning("lease %s: lost (taken over after expiry)", self.name)
        return renewed

    def release(self) -> None:
        """Give the lease up now (a no-op if not held; never deletes another holder's row)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self._row.release()

    def __enter__(self) -> bool:
        acquired = self.acquire()
        if acquired:
            self._heartbeat = Heartbeat(self.renew, self.ttl_seconds / 3, f"lease {self.name}").start()
        return acquired

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
