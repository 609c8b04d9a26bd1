"""The one resumable read: where a checkpointed, incremental read of BC stands (`ReadCursor`), and
its row in `bccursors` (`CursorTable`). The item pull and the sweep both use it.

A *pass* reads what changed since `cursor` page by page, checkpointing after each page (the page's
next link, the newest change read, an optional hold); a run that stops or dies resumes at the last
checkpoint. When the pass completes, the cursor moves to the newest change read, but never back,
never past the pass's start (a change made during the read may sit behind the read position) and
never to or past the hold. Rows hold ISO 8601 text; rows written before this type still load.
Rows are read through the row layer's checks (`connector/rows.py`): a value of the wrong type, or a
time that does not parse or lies more than CURSOR_SKEW ahead, counts as absent (logged once).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from connector.bc.timestamps import bc_datetime, iso, parse_iso, utc_now
from connector.errors import ConnectorError
from connector.rows import RowWarnings, Warn, read_datetime, read_text, where
from connector.settings import TABLE_CURSORS
from connector.storage import (
    Storage,
    delete_if_match,
    insert_entity,
    read_entity,
    replace_if_match,
    table_key,
)

# ReadCursor field -> bccursors column (the columns keep the names older rows were written with)
COLUMNS = {"cursor": "cursor", "run_started": "run_started", "phase": "phase", "next_link": "next_link",
           "pending": "pending_cursor", "held": "held_before", "state": "state",
           "started_at": "started_at", "updated_at": "updated_at", "last_pass_started": "last_pass_started",
           "recent": "recent"}
TIMES = frozenset({"cursor", "run_started", "pending", "held", "started_at", "updated_at",
                   "last_pass_started"})
CURSOR_SKEW = timedelta(minutes=15)  # a time further ahead of our clock than this is not believed
LONGEST_TEXT = 16384  # a next link, a phase or a state longer than this is not believed


class ReadInterrupted(ConnectorError, RuntimeError):
    """Another runner took this read over (its lease was lost, or its cursor row written underneath)."""

    internal = True


def earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def newest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def newest_modified(values: Iterable[str | None]) -> datetime | None:
    """The newest of some `lastModifiedDateTime` values (missing ones ignored); None if none."""
    return newest(*(parse_iso(v) for v in values if v))


def completed_cursor(cursor: datetime | None, pending: datetime | None, pass_started: datetime,
                     held: datetime | None) -> datetime | None:
    """The cursor after a completed pass: the newest change read, capped at the pass's start and at
    the hold, and never moving back."""
    if pending is None:
        return cursor
    return newest(cursor, earliest(pending, pass_started, held))


@dataclass(frozen=True)
class ReadCursor:
    """Where a resumable read stands (one `bccursors` row).

    `cursor`: every change up to it was handled (None: no pass has completed). A pass under way has
    `run_started`, `phase` (which of its reads, when a pass reads several collections), `next_link`
    (where it resumes; None: at the start of the phase), `pending` (the newest change read so far)
    and `held` (the cursor may not reach it). `state` and `started_at` describe the read's set-up
    (the sweep's baseline); `updated_at` is stamped on every write; `last_pass_started`: when the
    last completed pass began (a request made before it is covered).
    """

    cursor: datetime | None = None
    run_started: datetime | None = None
    phase: str = ""
    next_link: str | None = None
    pending: datetime | None = None
    held: datetime | None = None
    state: str = ""
    started_at: datetime | None = None
    updated_at: datetime | None = None
    last_pass_started: datetime | None = None
    recent: str = ""  # what the last pass emitted that the next one's overlap reads again (item pull)

    @property
    def in_pass(self) -> bool:
        return self.run_started is not None

    def since(self, overlap_seconds: float) -> str | None:
        """The `gt` bound (BC filter literal) of a pass: the cursor minus the overlap; None = read all."""
        if self.cursor is None:
            return None
        return bc_datetime(self.cursor - timedelta(seconds=overlap_seconds))

    def start_pass(self, now: datetime, phase: str = "") -> ReadCursor:
        return replace(self, run_started=now, phase=phase, next_link=None, pending=None, held=None)

    def checkpoint(self, next_link: str | None, seen: datetime | None,
                   hold: datetime | None = None) -> ReadCursor:
        """After a page was handled: resume at `next_link`; remember the newest change and the hold."""
        return replace(self, next_link=next_link, pending=newest(self.pending, seen),
                       held=earliest(self.held, hold))

    def next_phase(self, phase: str) -> ReadCursor:
        return replace(self, phase=phase, next_link=None)

    def complete(self) -> ReadCursor:
        """The pass is done: the cursor moves (see `completed_cursor`), the pass's state goes."""
        if self.run_started is None:
            return self
        return ReadCursor(cursor=completed_cursor(self.cursor, self.pending, self.run_started, self.held),
                          state=self.state, started_at=self.started_at, updated_at=self.updated_at,
                          last_pass_started=self.run_started)

    def covers(self, requested_at: datetime) -> bool:
        """A pass that began at or after `requested_at` has completed (and none is under way)."""
        return (not self.in_pass and self.last_pass_started is not None
                and self.last_pass_started >= requested_at)

    def to_row(self) -> dict[str, str]:
        values = {column: getattr(self, name) for name, column in COLUMNS.items()}
        return {column: iso(value) if isinstance(value, datetime) else value
                for column, value in values.items() if value not in (None, "")}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], now: datetime | None = None,
                 warn: Warn | None = None, place: str = "bccursors") -> ReadCursor:
        """A row as written by this type or by the item pull and sweep before it (`""` = none;
        times in ISO 8601 or BC's form). A value that does not validate (a time that does not parse
        or lies more than CURSOR_SKEW ahead of `now`, text that is not text) counts as absent."""
        latest = (now or utc_now()) + CURSOR_SKEW
        values: dict[str, Any] = {}
        for name, column in COLUMNS.items():
            raw = row.get(column)
            if raw is None or raw == "":
                continue
            value = read_datetime(raw) if name in TIMES else read_text(raw, LONGEST_TEXT)
            if value is None or (isinstance(value, datetime) and value > latest):
                (warn or RowWarnings())(place, f"{column} {str(raw)[:40]!r}")
                continue
            values[name] = value
        return cls(**values)


class CursorTable:
    """One row of `bccursors` (PK = connection, RK = the read's name), read and written under its
    ETag: a write fails when another runner wrote the row since this one read it."""

    def __init__(self, storage: Storage, connection: str, name: str,
                 now: Callable[[], datetime] = utc_now):
        self._storage = storage
        self.key = (table_key(connection), table_key(name))
        self._now = now
        self._etag: str | None = None
        self._warn = RowWarnings()

    def _table(self) -> TableClient:
        return self._storage.table(TABLE_CURSORS)

    def load(self) -> ReadCursor | None:
        """The row (None if there is none); later writes are guarded by its ETag."""
        found = read_entity(self._table(), *self.key)
        if found is None:
            self._etag = None
            return None
        row, self._etag = found
        return ReadCursor.from_row(row, self._now(), self._warn, where(TABLE_CURSORS, *self.key))

    def write(self, state: ReadCursor) -> ReadCursor | None:
        """Insert (no row was read) or replace the row read, stamping `updated_at`; the state as
        written, or None when another runner won."""
        state = replace(state, updated_at=self._now())
        entity = {"PartitionKey": self.key[0], "RowKey": self.key[1], **state.to_row()}
        if self._etag is None:
            self._etag = insert_entity(self._table(), entity)
        else:
            self._etag = replace_if_match(self._table(), entity, self._etag)
        return None if self._etag is None else state

    def save(self, state: ReadCursor) -> ReadCursor:
        """`write`, raising ReadInterrupted when another runner won."""
        written = self.write(state)
        if written is None:
            raise ReadInterrupted(f"cursor {'/'.join(self.key)} was changed by another runner")
        return written

    def delete(self) -> bool:
        """Delete the row read, unless another runner changed it since."""
        return self._etag is not None and delete_if_match(self._table(), *self.key, self._etag)
