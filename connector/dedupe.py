"""What has been announced: one row per connection/company/entity set/entity id in `bcdedupe`.

A row is `claimed` while one runner announces the entity, then `emitted` (event queued), `gone`
(the entity vanished before it could be read) or `known` (it existed before the trigger started).
Claiming is an insert, so exactly one runner wins; the claim names its owner (a queue message id
or a sweep run) so that the owner's retry may carry on, and a claim older than `CLAIM_SECONDS` is
abandoned and can be taken over. Rows expire after DEDUPE_TTL_DAYS (an expired row counts as
absent and is purged by the sweep); every sighting past half that age pushes the expiry out, so an
entity that keeps changing stays known.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.data.tables import TableClient, UpdateMode

from connector.settings import TABLE_DEDUPE
from connector.storage import Storage, insert_entity, read_entity, replace_if_match, table_key

log = logging.getLogger(__name__)

CLAIM_SECONDS = 600.0  # the functionTimeout: a claim this old belongs to a dead runner
BATCH = 100  # entities per table transaction (the service's limit)
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dedupe")

State = Literal["claimed", "emitted", "gone", "known"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and `Z` (sorts as text, so tables can filter on it)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    """A tz-aware datetime from ISO 8601 (`Z` or an offset; naive is taken as UTC)."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DedupeScope:
    """The partition of one trigger: connection, company and entity set."""

    connection: str
    company_id: str
    entity_set: str

    @property
    def partition(self) -> str:
        return table_key(f"{self.connection}|{self.company_id.lower()}|{self.entity_set}")


def may_claim(row: dict[str, Any] | None, owner: str, now: datetime) -> bool:
    """May `owner` announce the entity of `row`? Yes when there is no live row, when the row is its
    own claim (a retry), or when another runner's claim was abandoned."""
    if row is None or parse_iso(row["expires_at"]) <= now:
        return True
    if row.get("state") != "claimed":
        return False
    return row.get("owner") == owner or parse_iso(row["claimed_until"]) <= now


def needs_refresh(row: dict[str, Any], now: datetime, ttl: timedelta) -> bool:
    """A settled row seen again after half its life: push the expiry out."""
    return row.get("state") != "claimed" and parse_iso(row["expires_at"]) - now < ttl / 2


class DedupeLog:
    """Claims and records in `bcdedupe`; table calls run in parallel (Azurite/Azure round-trips
    dominate when a `collection` brings a thousand entities)."""

    def __init__(self, storage: Storage, ttl_days: float):
        self._storage = storage
        self.ttl = timedelta(days=ttl_days)

    def _table(self) -> TableClient:
        return self._storage.table(TABLE_DEDUPE)

    def _row(self, scope: DedupeScope, entity_id: str, state: State, owner: str,
             now: datetime) -> dict[str, Any]:
        return {"PartitionKey": scope.partition, "RowKey": table_key(entity_id.lower()), "state": state,
                "owner": owner, "claimed_until": iso(now + timedelta(seconds=CLAIM_SECONDS)),
                "expires_at": iso(now + self.ttl)}

    def claim(self, scope: DedupeScope, entity_ids: list[str], owner: str) -> set[str]:
        """The ids this owner may announce now (each claimed for it); the rest are done or busy.
        Existing rows are read first, 14 per query (the service allows 15 comparisons per
        filter), since re-reads (sweeps, BC's re-sends) mostly meet entities already announced."""
        table = self._table()
        chunks = [entity_ids[i:i + 14] for i in range(0, len(entity_ids), 14)]
        existing: dict[str, tuple[dict[str, Any], str]] = {}
        for found in _pool.map(lambda chunk: self._read_many(table, scope, chunk), chunks):
            existing.update(found)
        won = _pool.map(lambda i: self._claim_one(table, scope, i, owner, existing.get(table_key(i.lower()))),
                        entity_ids)
        return {i for i, ok in zip(entity_ids, won, strict=True) if ok}

    def _read_many(self, table: TableClient, scope: DedupeScope,
                   entity_ids: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
        keys = {f"k{n}": table_key(i.lower()) for n, i in enumerate(entity_ids)}
        query = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{k}" for k in keys) + " )"
        rows = table.query_entities(query, parameters={"pk": scope.partition, **keys})
        return {r["RowKey"]: (dict(r), r.metadata["etag"]) for r in rows}

    def _claim_one(self, table: TableClient, scope: DedupeScope, entity_id: str, owner: str,
                   found: tuple[dict[str, Any], str] | None) -> bool:
        now = utc_now()
        row = self._row(scope, entity_id, "claimed", owner, now)
        for _ in range(2):  # the row may appear (another runner) or vanish (a purge) meanwhile
            if found is None:
                if insert_entity(table, row) is not None:
                    return True
                found = read_entity(table, row["PartitionKey"], row["RowKey"])
                if found is None:
                    continue
            existing, etag = found
            if may_claim(existing, owner, now):
                return replace_if_match(table, row, etag) is not None
            if needs_refresh(existing, now, self.ttl):
                replace_if_match(table, {**existing, "expires_at": iso(now + self.ttl)}, etag)
            return False
        return False

    def settle(self, scope: DedupeScope, entity_ids: Iterable[str], state: State,
               owner: str = "") -> None:
        """Record entities as emitted/gone/known (upserts, in transactions of up to 100)."""
        now = utc_now()
        rows = [self._row(scope, i, state, owner, now) for i in entity_ids]
        if not rows:
            return
        table = self._table()
        chunks = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
        list(_pool.map(lambda chunk: table.submit_transaction(
            [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in chunk]), chunks))

    def purge_expired(self, scope: DedupeScope, limit: int = 5000) -> int:
        """Delete expired rows of a partition (Table Storage has no TTL); returns how many."""
        table = self._table()
        found = table.query_entities("PartitionKey eq @pk and expires_at lt @now",
                                     parameters={"pk": scope.partition, "now": iso(utc_now())},
                                     select=["PartitionKey", "RowKey"], results_per_page=BATCH)
        keys = []
        for row in found:
            keys.append(row["RowKey"])
            if len(keys) >= limit:
                break
        chunks = [keys[i:i + BATCH] for i in range(0, len(keys), BATCH)]
        list(_pool.map(lambda chunk: table.submit_transaction(
            [("delete", {"PartitionKey": scope.partition, "RowKey": k}) for k in chunk]), chunks))
        if keys:
            log.info("dedupe %s: purged %d expired row(s)", scope.partition, len(keys))
        return len(keys)
