"""A connection paused until a person confirms (a copy into its environment) or the connector has
reconciled (a point-in-time restore): every BC call of the connection stops with `paused` and the fix.

The pause is the `pause` row of the connection in `bcconnections`; each instance reads it at most
every `ttl` seconds. The connector's own reconciliation runs inside `maintenance()` (this thread only).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from connector.bc.errors import TokenUnavailable
from connector.bc.timestamps import iso, utc_now
from connector.settings import TABLE_CONNECTIONS
from connector.storage import Storage, read_entity

PAUSED = "paused"
ROW = "pause"


class ConnectionPaused(TokenUnavailable):
    """The connection is paused (its environment was copied or restored); the fix says what to do."""


class PauseSwitch:
    """Pauses per connection, shared through storage, cached per instance for `ttl` seconds."""

    def __init__(self, storage: Storage, ttl: float = 15.0, clock: Callable[[], float] = time.monotonic):
        self._storage = storage
        self._ttl = ttl
        self._clock = clock
        self._seen: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def state(self, connection: str, fresh: bool = False) -> dict[str, Any] | None:
        """The pause row (reason, fix, since) or None."""
        now = self._clock()
        with self._lock:
            cached = self._seen.get(connection)
        if cached is not None and not fresh and now - cached[0] < self._ttl:
            return cached[1]
        found = read_entity(self._storage.table(TABLE_CONNECTIONS), connection, ROW)
        row = dict(found[0]) if found else None
        with self._lock:
            self._seen[connection] = (now, row)
        return row

    def check(self, connection: str) -> None:
        """Raise ConnectionPaused while the connection is paused (not inside `maintenance()`)."""
        if getattr(self._local, "maintenance", False):
            return
        row = self.state(connection)
        if row:
            raise ConnectionPaused(connection, PAUSED, str(row.get("reason", "")), str(row.get("fix", "")))

    def pause(self, connection: str, reason: str, fix: str) -> None:
        self._storage.table(TABLE_CONNECTIONS).upsert_entity(
            {"PartitionKey": connection, "RowKey": ROW, "reason": reason, "fix": fix,
             "since": iso(utc_now())})
        with self._lock:
            self._seen.pop(connection, None)

    def resume(self, connection: str) -> bool:
        """Lift the pause; False when there was none."""
        try:
            self._storage.table(TABLE_CONNECTIONS).delete_entity(connection, ROW)
            existed = True
        except ResourceNotFoundError:
            existed = False
        with self._lock:
            self._seen.pop(connection, None)
        return existed

    @contextmanager
    def maintenance(self) -> Iterator[None]:
        """BC calls of this thread pass a pause (the connector's own reconciliation)."""
        before = getattr(self._local, "maintenance", False)
        self._local.maintenance = True
        try:
            yield
        finally:
            self._local.maintenance = before
