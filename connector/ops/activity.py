"""What each instance did per connection and hour, for the status page's counts and charts.

The telemetry hooks (orders settled, events queued, BC requests and 429s, change-to-event lag) feed an
`ActivityRecorder` in memory; it writes its counts of the current and last hour to `bcstats` (PK the
connection, RK `<yyyymmddhh>|<instance>`, one JSON column) at most once a minute and when asked
(`flush`, before a status page is drawn), so the page needs storage only. `read_activity` sums the
instances' rows of the last 24 hours.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from connector.bc.timestamps import utc_now
from connector.settings import TABLE_STATS
from connector.storage import Storage, table_key

log = logging.getLogger(__name__)

HOURS = 24
# counter names
ORDERS = "orders.{status}"  # created, duplicate, failed
EVENTS = "events"  # change events queued (health events excluded)
PULLED = "events.pulled"  # scheduled item pulls
BC_REQUESTS = "bc.requests"
BC_THROTTLED = "bc.429"
LAG_SUM, LAG_COUNT, LAG_MAX = "lag.sum", "lag.count", "lag.max"


def hour_of(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H")


class ActivityRecorder:
    """Per-instance counters by (connection, hour), written to storage at most every `interval` s."""

    def __init__(self, storage: Storage, *, instance: str | None = None, interval: float = 60.0,
                 clock: Callable[[], datetime] = utc_now):
        self._storage = storage
        self._instance = instance or uuid.uuid4().hex[:12]
        self._interval = interval
        self._clock = clock
        self._counts: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, connection: str, name: str, value: float = 1.0) -> None:
        key = (connection or "-", hour_of(self._clock()))
        with self._lock:
            counts = self._counts[key]
            if name == LAG_MAX:
                counts[name] = max(counts[name], value)
            else:
                counts[name] += value
            self._dirty.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="activity-flush", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self, connections: Collection[str] | None = None) -> None:
        """Write the counts that changed since the last flush (of `connections` only: a status page's
        50, not the thousand a timer run just touched); forget hours older than a day."""
        with self._lock:
            keys = {k for k in self._dirty if connections is None or k[0] in connections}
            dirty = {key: dict(self._counts[key]) for key in keys}
            self._dirty -= keys
            oldest = hour_of(self._clock() - timedelta(hours=HOURS + 1))
            for key in [k for k in self._counts if k[1] < oldest]:
                del self._counts[key]
        if not dirty:
            return
        table = self._storage.table(TABLE_STATS)
        for (connection, hour), counts in dirty.items():
            try:
                table.upsert_entity({"PartitionKey": table_key(connection),
                                     "RowKey": f"{hour}|{self._instance}", "hour": hour,
                                     "counts": json.dumps(counts)}, mode=UpdateMode.REPLACE)
            except Exception as exc:  # noqa: BLE001 - statistics must never break the work they count
                log.warning("activity: counts of %s %s not saved: %s", connection, hour, exc)
                with self._lock:
                    self._dirty.add((connection, hour))

    def close(self) -> None:
        self._stop.set()
        self.flush()


def read_activity(storage: Storage, connection: str, now: datetime) -> list[dict[str, Any]]:
    """The last 24 hours of a connection, oldest first: `{"hour": "yyyymmddhh", <counter>: n, ...}`
    summed over the instances (`lag.max` is the maximum)."""
    rows = storage.table(TABLE_STATS).query_entities(
        "PartitionKey eq @pk and RowKey ge @first",
        parameters={"pk": table_key(connection), "first": first_hour(now)})
    return activity_of(rows, now)


def first_hour(now: datetime) -> str:
    """The first hour (`yyyymmddhh`, a RowKey prefix) of the 24 `read_activity` shows."""
    return hour_of(now - timedelta(hours=HOURS - 1))


def activity_of(rows: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """A connection's `bcstats` rows as `read_activity` shows them."""
    hours = [hour_of(now - timedelta(hours=h)) for h in range(HOURS - 1, -1, -1)]
    totals: dict[str, dict[str, float]] = {h: defaultdict(float) for h in hours}
    for row in rows:
        hour = str(row.get("hour", ""))
        if hour not in totals:
            continue
        try:
            counts = json.loads(row.get("counts") or "{}")
        except ValueError:
            continue
        for name, value in counts.items():
            if not isinstance(value, (int, float)):
                continue
            if name == LAG_MAX:
                totals[hour][name] = max(totals[hour][name], float(value))
            else:
                totals[hour][name] += float(value)
    return [{"hour": h, **totals[h]} for h in hours]
