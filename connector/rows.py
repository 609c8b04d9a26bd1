"""The one storage-row layer for coordination: ETag-guarded rows and owned, expiring rows (leases).

Every row another instance (or anyone with table write) may have written is *read through a check*:
a value of the wrong type, a time that does not parse or lies further ahead than the row's longest
life, JSON that does not parse — the row (or the value) counts as absent or expired, is repaired by
the next write, and is logged once. Nothing read back raises into a BC call.

Conventions of every coordination table (`bcleases`, `bcorders`, `bcdedupe`, `bccursors`):
* column names are snake_case (`bcorders` rows written before in camelCase are read too);
* times are text, ISO 8601 UTC with microseconds and `Z` (`stamp`), which sorts, so filters compare
  it; older rows' epoch seconds and typed DateTime values are read too;
* an owned row names its `holder` and its `expires`; it is free when it names nobody, has expired,
  or does not validate.

    row = GuardedRow(table, pk, rk)
    values = row.read()                 # or None; row.write(...) / row.delete() are ETag-guarded
    owned = OwnedRow(table, pk, rk, ttl_seconds=60)
    owned.acquire() / owned.renew() / owned.release()
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableClient

from connector.bc.timestamps import iso, parse_iso
from connector.storage import delete_if_match, insert_entity, read_entity, replace_if_match

log = logging.getLogger(__name__)

CLOCK_SKEW_SECONDS = 5.0  # instances are NTP-synced; a time this far ahead of ours is still believed
MAX_TEXT = 1024  # longest holder / owner / state text believed


# ---- values read back -------------------------------------------------------------------------

class RowWarnings:
    """Logs each row that did not validate once per row and problem (for as long as this object
    lives: a budget's for the process, a lease's for its run)."""

    def __init__(self, limit: int = 10_000):
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._limit = limit  # bounded: a flood of bad rows cannot grow memory

    def __call__(self, where: str, problem: str) -> None:
        with self._lock:
            if (where, problem) in self._seen:
                return
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen.add((where, problem))
        log.warning("row %s ignored: %s (it counts as absent or expired and is repaired on the next "
                    "write)", where[:200], problem[:200])


Warn = Callable[[str, str], None]


def stamp(moment: float | datetime) -> str:
    """The one time format of coordination rows: ISO 8601 UTC text (epoch seconds accepted)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return iso(moment)


def read_datetime(value: Any) -> datetime | None:
    """A tz-aware time read back: ISO text, a typed DateTime, or an older row's epoch seconds; None
    when it is none of those (or out of range)."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC) if math.isfinite(value) else None
        if isinstance(value, str) and 0 < len(value) <= 64:
            return parse_iso(value)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def read_time(value: Any) -> float | None:
    """`read_datetime` as epoch seconds (epoch numbers of older rows kept as they are)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    moment = read_datetime(value)
    return None if moment is None else moment.timestamp()


def read_expiry(value: Any, now: float, longest: float) -> float | None:
    """An expiry (epoch seconds) that is believable: a time no further ahead of `now` than the row's
    `longest` life (plus clock skew); None otherwise (the row counts as expired)."""
    seconds = read_time(value)
    if seconds is None or seconds > now + longest + CLOCK_SKEW_SECONDS:
        return None
    return seconds


def read_text(value: Any, longest: int = MAX_TEXT) -> str | None:
    """A string of at most `longest` characters; None otherwise."""
    return value if isinstance(value, str) and len(value) <= longest else None


def read_count(value: Any, highest: int) -> int | None:
    """A whole number in 0..`highest`; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        return None
    return value


def read_json(value: Any, longest: int = 65536) -> Any:
    """The JSON value of a text column; None when it is not text or does not parse."""
    if not isinstance(value, str) or len(value) > longest:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def where(table: TableClient | str, pk: str, rk: str) -> str:
    """`table/pk/rk`, for logs."""
    name = table if isinstance(table, str) else getattr(table, "table_name", "?")
    return f"{name}/{pk}/{rk}"


def column(row: Mapping[str, Any], name: str, *older: str) -> Any:
    """A column by its snake_case name, or by the name older rows used."""
    if name in row:
        return row[name]
    for other in older:
        if other in row:
            return row[other]
    return None


# ---- an ETag-guarded row --------------------------------------------------------------------------

class GuardedRow:
    """One row (PartitionKey, RowKey) of a table, read and written under its ETag: a write fails
    (None/False) when another writer changed the row since this one read it."""

    def __init__(self, table: TableClient | Callable[[], TableClient], pk: str, rk: str,
                 **call_options: Any):
        self._table = table
        self.key = (pk, rk)
        self.etag: str | None = None
        self._options = call_options  # per-call options (e.g. `retry_total`)

    @property
    def table(self) -> TableClient:
        return self._table() if callable(self._table) else self._table

    @property
    def where(self) -> str:
        return where(self.table, *self.key)

    def read(self) -> dict[str, Any] | None:
        """The row's values (None if there is none); later writes are guarded by its ETag."""
        found = read_entity(self.table, *self.key)
        if found is None:
            self.etag = None
            return None
        values, self.etag = found
        return values

    def write(self, values: Mapping[str, Any]) -> bool:
        """Insert (no row was read) or replace the row read; False when another writer won."""
        entity = {**values, "PartitionKey": self.key[0], "RowKey": self.key[1]}
        if self.etag is None:
            self.etag = insert_entity(self.table, entity, **self._options)
        else:
            self.etag = replace_if_match(self.table, entity, self.etag, **self._options)
        return self.etag is not None

    def delete(self) -> bool:
        """Delete the row read, unless another writer changed it since."""
        etag, self.etag = self.etag, None
        return etag is not None and delete_if_match(self.table, *self.key, etag, **self._options)


# ---- an owned, expiring row (a lease) -------------------------------------------------------------

@dataclass(frozen=True)
class Holding:
    """Who holds an owned row and until when (epoch seconds), as validated."""

    holder: str
    expires: float

    def free_for(self, me: str, now: float) -> bool:
        return not self.holder or self.holder == me or self.expires <= now


NOBODY = Holding("", 0.0)


def holding(row: Mapping[str, Any] | None, now: float, longest: float, place: str = "",
            warn: Warn | None = None) -> Holding:
    """The validated holder and expiry of an owned row; NOBODY for a missing row or one that does not
    validate (a holder that is not text, an expiry that does not parse or lies too far ahead)."""
    if row is None:
        return NOBODY
    holder = read_text(row.get("holder", ""))
    expires = read_expiry(row.get("expires"), now, longest) if holder else 0.0
    if holder is None or expires is None:
        (warn or RowWarnings())(place or "owned row", f"holder {str(row.get('holder'))[:40]!r}, "
                                        f"expires {str(row.get('expires'))[:40]!r}")
        return NOBODY
    return Holding(holder, expires)


class OwnedRow:
    """A row one holder owns at a time until it expires: `acquire()` (an insert, or an ETag-guarded
    replace of a free, expired or invalid row), `renew()` while working, `release()`. When two race,
    exactly one wins. Thread-safe (a heartbeat may renew while the owner works)."""

    def __init__(self, table: TableClient | Callable[[], TableClient], pk: str, rk: str,
                 ttl_seconds: float, *, clock: Callable[[], float] = time.time,
                 holder: str | None = None, values: Mapping[str, Any] | None = None):
        self.ttl_seconds = ttl_seconds
        self.holder = holder or uuid.uuid4().hex
        self._row = GuardedRow(table, pk, rk)
        self._clock = clock
        self._values = dict(values or {})
        self._held = False
        self._lock = threading.Lock()
        self.found = NOBODY  # the holding seen by the last acquire
        self._warn = RowWarnings()

    @property
    def held(self) -> bool:
        """True after a successful acquire/renew and until release or a lost renewal."""
        return self._held

    def _entity(self) -> dict[str, Any]:
        now = self._clock()
        return {**self._values, "holder": self.holder, "acquired": stamp(now),
                "expires": stamp(now + self.ttl_seconds)}

    def acquire(self) -> bool:
        """Take the row if it is free, expired or does not validate; False if someone else holds it
        (or won the race)."""
        with self._lock:
            row = self._row.read()
            self.found = holding(row, self._clock(), self.ttl_seconds, self._row.where, self._warn)
            if row is not None and not self.found.free_for(self.holder, self._clock()):
                return False
            self._held = self._row.write(self._entity())
            return self._held

    def renew(self) -> bool:
        """Push the expiry out by the TTL; False if the row was lost (expired and taken over)."""
        with self._lock:
            if not self._held:
                return False
            self._held = self._row.write(self._entity())
            return self._held

    def release(self) -> None:
        """Give the row up now (a no-op if not held; never deletes another holder's row)."""
        with self._lock:
            if self._held:
                self._held = False
                self._row.delete()


class Heartbeat:
    """Calls `beat` every `every` seconds on a daemon thread until stopped or `beat` returns False
    (a lost lease); a beat that raises is logged and tried again next time."""

    def __init__(self, beat: Callable[[], bool], every: float, name: str = "heartbeat"):
        self._beat = beat
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._beat():
                    return
            except Exception as exc:  # storage hiccup: the next beat tries again (the TTL has room)
                log.warning("%s: renewal failed (%s); trying again", self._thread.name, type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
