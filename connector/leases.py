"""Single-runner leases in Table Storage: one holder at a time across threads, instances and hosts.

A lease is one row in `bcleases` (PK = the lease name, RK = `lease`) holding the holder's id and an
expiry (epoch seconds). Taking it is an insert, or an ETag-guarded replace of an expired row, so when
two runners race exactly one wins. A holder that dies simply lets the row expire; the next runner
takes over. Expiry uses the wall clock: instances are NTP-synced and the TTL dwarfs any skew.

    with Lease(storage, f"items:{connection}:{company_id}", ttl_seconds=600) as acquired:
        if not acquired:
            return "already running"
        ...
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from azure.data.tables import TableClient

from connector.settings import TABLE_LEASES
from connector.storage import (
    Storage,
    delete_if_match,
    insert_entity,
    read_entity,
    replace_if_match,
    table_key,
)

log = logging.getLogger(__name__)

ROW_KEY = "lease"


def lease_is_free(entity: dict[str, Any], holder: str, now: float) -> bool:
    """May `holder` take a lease whose row is `entity`? Yes if it already holds it or the row expired."""
    return entity.get("holder") == holder or float(entity.get("expires", 0.0)) <= now


class Lease:
    """A named lease; `acquire()`, then `renew()` while working, then `release()`.

    Also a context manager that yields whether it was acquired and releases on exit.
    """

    def __init__(self, storage: Storage, name: str, ttl_seconds: float, *,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.holder = uuid.uuid4().hex
        self._storage = storage
        self._clock = clock
        self._etag: str | None = None

    @property
    def held(self) -> bool:
        """True after a successful acquire/renew and until release or a lost renewal."""
        return self._etag is not None

    def _table(self) -> TableClient:
        return self._storage.table(TABLE_LEASES)

    def _row(self) -> dict[str, Any]:
        now = self._clock()
        return {"PartitionKey": table_key(self.name), "RowKey": ROW_KEY, "holder": self.holder,
                "acquired": now, "expires": now + self.ttl_seconds}

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; False if someone else holds it (or won the race)."""
        table = self._table()
        found = read_entity(table, table_key(self.name), ROW_KEY)
        if found is None:
            self._etag = insert_entity(table, self._row())
        else:
            entity, etag = found
            if not lease_is_free(entity, self.holder, self._clock()):
                log.info("lease %s: held by another runner until %.0f", self.name,
                         float(entity.get("expires", 0.0)))
                return False
            self._etag = replace_if_match(table, self._row(), etag)
        return self._etag is not None

    def renew(self) -> bool:
        """Push the expiry out by the TTL; False if the lease was lost (expired and taken over)."""
        if self._etag is None:
            return False
        self._etag = replace_if_match(self._table(), self._row(), self._etag)
        if self._etag is None:
            log.warning("lease %s: lost (taken over after expiry)", self.name)
        return self._etag is not None

    def release(self) -> None:
        """Give the lease up now (a no-op if not held; never deletes another holder's row)."""
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        delete_if_match(self._table(), table_key(self.name), ROW_KEY, etag)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
