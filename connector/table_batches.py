"""Conditional writes to a table partition from many threads, sent together (group commit).

A write that finds no other write of its partition at storage goes out alone, as a single call. Writes
that arrive while one is at storage wait and go out together in one entity-group transaction (up to
100 rows, one per row key), sent by the first of them: under load the transactions grow instead of
the calls multiplying, and a lone write waits for nobody. Each write gets its own answer, as a single
call would give it: the new ETag, or None when the row already exists (create) or changed or went
away (replace). A transaction refused as a whole (one row conflicts) is replayed as single calls,
which then answer each row; a transport error is raised to every write of the transaction, as a
lost single call is raised to its caller (the callers' own protocols cover an unknown outcome).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from connector.storage import insert_entity, replace_if_match

MAX_TRANSACTION_ROWS = 100  # Azure's limit for one entity-group transaction


@dataclass(eq=False)
class _Write:
    entity: Mapping[str, Any]
    etag: str | None  # None: create; else replace if unchanged since this ETag
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this write's thread sends the next transaction
    done: bool = False
    answered: bool = False
    answer: str | None = None
    error: BaseException | None = None

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])

    def operation(self) -> tuple[Any, ...]:
        if self.etag is None:
            return ("create", self.entity)
        return ("update", self.entity, {"mode": UpdateMode.REPLACE, "etag": self.etag,
                                        "match_condition": MatchConditions.IfNotModified})

    def single(self, table: TableClient) -> str | None:
        if self.etag is None:
            return insert_entity(table, dict(self.entity))
        return replace_if_match(table, dict(self.entity), self.etag)


@dataclass(eq=False)
class _Lane:
    """The writes of one partition: those waiting, and whether a transaction of it is at storage."""

    waiting: list[_Write] = field(default_factory=list)
    busy: bool = False


class TableBatches:
    """Group commit of creates and ETag-guarded replaces, per table and partition, in this process."""

    def __init__(self, max_rows: int = MAX_TRANSACTION_ROWS):
        self.max_rows = max_rows
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._lock = threading.Lock()
        self.calls = 0  # calls made to storage (single or transaction), for tests and figures
        self.writes = 0  # writes answered

    def create(self, table: TableClient, entity: Mapping[str, Any]) -> str | None:
        """Insert; the new ETag, or None when a row with that key exists."""
        return self._write(table, _Write(entity, None))

    def replace(self, table: TableClient, entity: Mapping[str, Any], etag: str) -> str | None:
        """Replace only if unchanged since `etag`; the new ETag, or None if it changed or is gone."""
        return self._write(table, _Write(entity, etag))

    def pending(self) -> int:
        """Writes waiting behind one at storage, over every partition."""
        with self._lock:
            return sum(len(lane.waiting) for lane in self._lanes.values())

    def _write(self, table: TableClient, write: _Write) -> str | None:
        ident = (table.url, table.table_name, str(write.entity["PartitionKey"]))
        with self._lock:
            lane = self._lanes.setdefault(ident, _Lane())
            lane.waiting.append(write)
            if not lane.busy:
                lane.busy = write.lead = True
        while not write.done:
            if write.lead:
                self._send(table, lane, self._take(lane))
                continue
            write.wake.wait()
            write.wake.clear()
        if write.error is not None:
            raise write.error
        return write.answer

    def _take(self, lane: _Lane) -> list[_Write]:
        """The next transaction: waiting writes in order, one per row key, up to `max_rows`."""
        with self._lock:
            batch: list[_Write] = []
            keys: set[str] = set()
            for write in lane.waiting:
                if len(batch) >= self.max_rows:
                    break
                if write.row_key not in keys:
                    keys.add(write.row_key)
                    batch.append(write)
            for write in batch:
                lane.waiting.remove(write)
            return batch

    def _send(self, table: TableClient, lane: _Lane, batch: list[_Write]) -> None:
        try:
            self._transaction(table, batch)
        except Exception as exc:  # every write of it raises, as its own call would have
            for write in batch:
                if not write.answered and write.error is None:
                    write.error = exc
        finally:
            self._settle(lane, batch)

    def _transaction(self, table: TableClient, batch: list[_Write]) -> None:
        """One transaction for the batch. Refused as a whole (nothing written), the write it names (or
        the first) is answered by a single call and the rest go again, until all are answered."""
        while len(batch) > 1:
            self.calls += 1
            try:
                answers = table.submit_transaction([w.operation() for w in batch])
            except TableTransactionError as exc:
                culprit = batch[exc.index if 0 <= exc.index < len(batch) else 0]
                batch = [w for w in batch if w is not culprit]
                self._single(table, culprit)
                continue
            for write, meta in zip(batch, answers, strict=True):
                write.answer, write.answered = (str(meta["etag"]) if meta.get("etag") else None), True
            return
        self._single(table, batch[0])

    def _single(self, table: TableClient, write: _Write) -> None:
        self.calls += 1
        try:
            write.answer, write.answered = write.single(table), True
        except HttpResponseError as exc:  # refused (e.g. an invalid row): this write's own answer
            write.error = exc

    def _settle(self, lane: _Lane, batch: list[_Write]) -> None:
        """Answer the batch's writes and hand the lane to the first write still waiting (or free it)."""
        with self._lock:
            self.writes += len(batch)
            for write in batch:
                write.done = True
                write.lead = False
                write.wake.set()
            if lane.waiting:
                successor = lane.waiting[0]
                successor.lead = True
                successor.wake.set()
            else:
                lane.busy = False
