"""What has been announced: one row per connection/company/entity set/entity id in `bcdedupe`,
claimed by exactly one runner per change, then settled with the entity's `lastModifiedDateTime`.
States, holds and what expires: docs/architecture.md ("What has been announced"). Rows are read
through the row layer's checks (`connector/rows.py`): a row that does not validate counts as absent,
a hold whose expiry does not validate as abandoned.
A runner's hold on a change (this module's word, kept apart from the orders' claims and the
claim check) is stored as state `claimed` with `claimed_until`: the stored names are unchanged.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from azure.data.tables import TableClient

from connector.bc.timestamps import iso, utc_now
from connector.rows import RowWarnings, read_expiry, read_text, read_time, where
from connector.settings import TABLE_DEDUPE
from connector.storage import (
    Storage,
    insert_entity,
    read_entity,
    replace_if_match,
    submit_deletes,
    submit_upserts,
    table_key,
)

log = logging.getLogger(__name__)

HOLD_SECONDS = 600.0  # the functionTimeout: a hold this old belongs to a dead runner
BATCH = 100  # entities per table transaction (the service's limit)

State = Literal["claimed", "emitted", "gone", "known"]
Change = Literal["created", "updated", "deleted"]


@dataclass(frozen=True)
class DedupeScope:
    """The partition of one trigger: connection, company and entity set."""

    connection: str
    company_id: str
    entity_set: str

    @property
    def partition(self) -> str:
        return table_key(f"{self.connection}|{self.company_id.lower()}|{self.entity_set}")


Verdict = Literal["free", "busy", "settled"]


@dataclass(frozen=True)
class Recorded:
    """What a row knew of the entity before this hold: the change being claimed, and the entity's
    `lastModifiedDateTime`, number and digest of watched fields as last recorded ("" when unknown)."""

    change: Change
    modified: str = ""
    number: str = ""
    digest: str = ""
    new: bool = False  # no row (or an expired `gone` marker) before this hold
    draft: bool = False  # the row recorded a draft (sets where BC mixes drafts and posted documents)


@dataclass(frozen=True)
class Holds:
    """The outcome of a hold: `won` are this owner's to announce now (`recorded` says which change
    and what the row knew); `busy` are held by another runner's live hold (that runner may still
    fail, so a sweep must read them again later); the others were settled (announced already)."""

    won: frozenset[str]
    busy: frozenset[str]
    recorded: Mapping[str, Recorded] = field(default_factory=dict)


STATES = ("claimed", "emitted", "gone", "known")
CHANGES = ("created", "updated", "deleted")


def newer(modified: str | None, recorded: Any) -> bool:
    """Is `modified` a later change than the `recorded` one (a row without a valid one: yes)?"""
    read = read_time(modified) if modified else None
    if read is None:
        return False
    before = read_time(recorded) if recorded else None
    return before is None or read > before


def row_problem(row: Mapping[str, Any], now: datetime) -> str | None:
    """Why a `bcdedupe` row is not believed (None: it is): an unknown state, an owner that is not
    text, a hold expiry that does not parse or lies beyond HOLD_SECONDS ahead, a `gone` marker
    whose expiry does not parse."""
    state = row.get("state")
    if state not in STATES:
        return f"state {str(state)[:20]!r}"
    if read_text(row.get("owner", "")) is None:
        return "owner is not text"
    if state == "claimed" and read_expiry(row.get("claimed_until"), now.timestamp(), HOLD_SECONDS) is None:
        return f"claimed_until {str(row.get('claimed_until'))[:40]!r}"
    if state == "gone" and read_time(row.get("expires_at")) is None:
        return f"expires_at {str(row.get('expires_at'))[:40]!r}"
    return None


def hold_verdict(row: dict[str, Any] | None, owner: str, now: datetime, modified: str | None = None,
                  deleting: bool = False) -> Verdict:
    """May `owner` announce a change of the entity of `row`? `free` when there is no row, when the row
    is its own hold (a retry), another runner's abandoned hold or an expired `gone` marker, when the
    entity read (`modified`) is newer than the recorded one, or when it is being deleted; `busy` while
    another runner's hold is live; `settled` otherwise."""
    if row is None or row_problem(row, now) is not None:
        return "free"  # a row that does not validate counts as absent (a hold: abandoned)
    if row.get("state") == "claimed":
        until = read_time(row.get("claimed_until")) or 0.0
        if row.get("owner") == owner or until <= now.timestamp():
            return "free"
        return "busy"
    if row.get("state") == "gone":
        return "free" if (read_time(row.get("expires_at")) or 0.0) <= now.timestamp() else "settled"
    return "free" if deleting or newer(modified, row.get("modified")) else "settled"


def recorded_of(row: dict[str, Any] | None, deleting: bool, absent: Change = "created") -> Recorded:
    """The change a won hold announces, and what the row knew before. An entity without a row is
    `absent` (BC's own change type: an entity that existed before the connector watched it and
    changed since is `updated`, not created)."""
    if row is None or row.get("state") == "gone" or row.get("state") not in STATES:
        return Recorded("deleted" if deleting else absent, new=True)
    if deleting:
        change: Change = "deleted"
    elif row.get("state") == "claimed":
        claimed = row.get("change")
        change = claimed if claimed in CHANGES else "created"
    else:
        change = "updated"
    modified = read_text(row.get("modified"), 64) or ""
    return Recorded(change, modified if read_time(modified) is not None else "",
                    read_text(row.get("number"), 100) or "", read_text(row.get("digest"), 200) or "",
                    new=row.get("state") == "claimed" and bool(row.get("new")),
                    draft=row.get("draft") == "1")


class DedupeLog:
    """Holds and records in `bcdedupe`; table calls run in parallel on `pool` when given (Azurite/Azure
    round-trips dominate when a `collection` brings a thousand entities), else one after another."""

    def __init__(self, storage: Storage, ttl_days: float, *, pool: Executor | None = None):
        self._storage = storage
        self.ttl = timedelta(days=ttl_days)
        self._map = pool.map if pool is not None else map
        self._warn = RowWarnings()

    def _table(self) -> TableClient:
        return self._storage.table(TABLE_DEDUPE)

    def _row(self, scope: DedupeScope, entity_id: str, state: State, owner: str, now: datetime,
             values: Mapping[str, str] | None = None) -> dict[str, Any]:
        row = {"PartitionKey": scope.partition, "RowKey": table_key(entity_id.lower()), "state": state,
               "owner": owner, **(values or {})}
        if state == "claimed":
            row["claimed_until"] = iso(now + timedelta(seconds=HOLD_SECONDS))
        elif state == "gone":
            row["expires_at"] = iso(now + self.ttl)
        return row

    def hold(self, scope: DedupeScope, entity_ids: list[str], owner: str,
             modified: Mapping[str, str] | None = None, deleting: bool = False,
             absent: Change = "created") -> Holds:
        """Hold the ids whose change this owner may announce now: new entities, those read newer
        than recorded (`modified`: id → `lastModifiedDateTime` as read), or all recorded ones when
        `deleting`; an id without a row holds the change `absent`. Existing rows are read first,
        14 per query (the service allows 15 comparisons
        per filter), since re-reads (sweeps, BC's re-sends) mostly meet entities already announced."""
        table = self._table()
        modified = modified or {}
        chunks = [entity_ids[i:i + 14] for i in range(0, len(entity_ids), 14)]
        existing: dict[str, tuple[dict[str, Any], str]] = {}
        for found in self._map(lambda chunk: self._read_many(table, scope, chunk), chunks):
            existing.update(found)
        outcomes = dict(zip(entity_ids, self._map(
            lambda i: self._hold_one(table, scope, i, owner, existing.get(table_key(i.lower())),
                                      modified.get(i), deleting, absent),
            entity_ids), strict=True))
        won = {i: o for i, o in outcomes.items() if isinstance(o, Recorded)}
        return Holds(won=frozenset(won), busy=frozenset(i for i, o in outcomes.items() if o == "busy"),
                      recorded=won)

    def _read_many(self, table: TableClient, scope: DedupeScope,
                   entity_ids: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
        keys = {f"k{n}": table_key(i.lower()) for n, i in enumerate(entity_ids)}
        query = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{k}" for k in keys) + " )"
        rows = table.query_entities(query, parameters={"pk": scope.partition, **keys})
        return {r["RowKey"]: (dict(r), str(r.metadata["etag"])) for r in rows}

    def _hold_one(self, table: TableClient, scope: DedupeScope, entity_id: str, owner: str,
                   found: tuple[dict[str, Any], str] | None, modified: str | None,
                   deleting: bool, absent: Change) -> Recorded | Literal["busy", "settled"]:
        """Hold one entity; losing a race means another runner claimed it just now (`busy`)."""
        now = utc_now()
        for _ in range(2):  # the row may appear (another runner) or vanish (a purge) meanwhile
            if found is None:
                recorded = recorded_of(None, deleting, absent)
                if insert_entity(table, self._hold_row(scope, entity_id, owner, now, recorded)) is not None:
                    return recorded
                found = read_entity(table, scope.partition, table_key(entity_id.lower()))
                if found is None:
                    continue
            existing, etag = found
            problem = row_problem(existing, now)
            if problem:
                self._warn(where(TABLE_DEDUPE, scope.partition, table_key(entity_id.lower())), problem)
            verdict = hold_verdict(existing, owner, now, modified, deleting)
            if verdict != "free":
                return verdict
            recorded = recorded_of(existing, deleting, absent)
            row = self._hold_row(scope, entity_id, owner, now, recorded)
            return recorded if replace_if_match(table, row, etag) is not None else "busy"
        return "busy"

    def _hold_row(self, scope: DedupeScope, entity_id: str, owner: str, now: datetime,
                   recorded: Recorded) -> dict[str, Any]:
        return self._row(scope, entity_id, "claimed", owner, now, {
            "change": recorded.change, "modified": recorded.modified, "number": recorded.number,
            "digest": recorded.digest, "new": "1" if recorded.new else "",
            "draft": "1" if recorded.draft else ""})

    def settle(self, scope: DedupeScope, entity_ids: Iterable[str], state: State, owner: str = "",
               values: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Record entities as emitted/gone/known (upserts, in transactions of up to 100), each with
        its `values` (id → {"modified", "number", "digest"}) when given."""
        now = utc_now()
        values = values or {}
        rows = [self._row(scope, i, state, owner, now, values.get(i)) for i in entity_ids]
        if not rows:
            return
        table = self._table()
        chunks = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
        list(self._map(lambda chunk: submit_upserts(table, chunk), chunks))

    def purge_gone(self, scope: DedupeScope, limit: int = 5000) -> int:
        """Delete a partition's `gone` markers past DEDUPE_TTL_DAYS (Table Storage has no TTL);
        returns how many. Nothing else is ever purged."""
        table = self._table()
        found = table.query_entities("PartitionKey eq @pk and state eq 'gone' and expires_at lt @now",
                                     parameters={"pk": scope.partition, "now": iso(utc_now())},
                                     select=["PartitionKey", "RowKey"], results_per_page=BATCH)
        keys = []
        for row in found:
            keys.append(row["RowKey"])
            if len(keys) >= limit:
                break
        chunks = [keys[i:i + BATCH] for i in range(0, len(keys), BATCH)]
        list(self._map(lambda chunk: submit_deletes(table, scope.partition, chunk), chunks))
        if keys:
            log.info("dedupe %s: purged %d expired gone marker(s)", scope.partition, len(keys))
        return len(keys)
