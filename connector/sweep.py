"""The sweep: finds created entities that webhooks did not announce (a subscription BC dropped, a
resource BC cannot watch, a notification lost in BC's queue) by reading
`$filter=lastModifiedDateTime gt <cursor − CURSOR_OVERLAP_SECONDS>` for each trigger.

A collection read cannot tell created from updated (API v2.0 exposes no creation time), so an
entity counts as created when it was never announced (dedupe table). To keep updates of older
entities from being announced as created, a trigger starts with a baseline: when it is set up (first
subscription run or first sweep), every entity last modified before the start (minus the overlap)
is recorded as `known`, and the cursor starts at that moment, so history is never announced (what
changed within the overlap just before the start may be: losing a creation would be worse). An
entity that stays unchanged for longer than DEDUPE_TTL_DAYS and then changes is announced again by
a sweep, with the same event id as before (consumers that dedupe on the id drop it).

The cursor (`bccursors`, RK = `sweep:<entitySet>:<companyId>`) moves to the newest
`lastModifiedDateTime` read, and only after every event of the run is queued.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.bc_errors import BCError, TokenUnavailable
from connector.companies import CompanyNotFound
from connector.dedupe import DedupeLog, DedupeScope, iso, parse_iso, utc_now
from connector.leases import Lease
from connector.runtime import Runtime
from connector.settings import TABLE_CURSORS
from connector.storage import insert_entity, read_entity, replace_if_match
from connector.triggers import TRIGGERS, CreatedTrigger, EmitCount, announce

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # entities per BC page (documents come with their lines)
BASELINE_PAGE_SIZE = 20000  # ids only
LEASE_SECONDS = 600.0


def bc_datetime(moment: datetime) -> str:
    """A BC filter literal: UTC, milliseconds (rounded down), `Z`."""
    moment = parse_iso(iso(moment))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def since_filter(cursor: datetime, overlap_seconds: float) -> str:
    return f"lastModifiedDateTime gt {bc_datetime(cursor - timedelta(seconds=overlap_seconds))}"


def next_cursor(current: datetime, modified: Iterable[str | None]) -> datetime:
    """The newest of the current cursor and the `lastModifiedDateTime`s read."""
    newest = current
    for value in modified:
        if value:
            newest = max(newest, parse_iso(value))
    return newest


def cursor_key(trigger: CreatedTrigger, company_id: str) -> str:
    return f"sweep:{trigger.entity_set}:{company_id.lower()}"


def scope_of(connection: str, company_id: str, trigger: CreatedTrigger) -> DedupeScope:
    return DedupeScope(connection, company_id, trigger.entity_set)


def start_trigger(runtime: Runtime, connection: str, company_id: str,
                  trigger: CreatedTrigger) -> tuple[dict[str, Any], str]:
    """The trigger's cursor row and ETag, set up on first use: the existing entities are recorded as
    `known` (ids only, paged), then the cursor starts now."""
    table = runtime.storage.table(TABLE_CURSORS)
    key = cursor_key(trigger, company_id)
    found = read_entity(table, connection, key)
    if found is not None:
        return found
    started = utc_now()
    cutoff = started - timedelta(seconds=runtime.settings.cursor_overlap_seconds)
    bc = runtime.bc(connection)
    dedupe = DedupeLog(runtime.storage, runtime.settings.dedupe_ttl_days)
    params = {"$filter": f"lastModifiedDateTime le {bc_datetime(cutoff)}", "$select": "id"}
    known = 0
    for page in bc.iter_pages(bc.company_path(company_id, trigger.entity_set), params, BASELINE_PAGE_SIZE):
        dedupe.settle(scope_of(connection, company_id, trigger), [str(e["id"]) for e in page], "known")
        known += len(page)
    row = {"PartitionKey": connection, "RowKey": key, "cursor": iso(started), "started_at": iso(started)}
    etag = insert_entity(table, row)
    if etag is None:  # another runner set it up meanwhile
        return read_entity(table, connection, key) or start_trigger(runtime, connection, company_id, trigger)
    log.info("sweep %s: %s of company %s starts now; %d existing entities recorded as known",
             connection, trigger.entity_set, company_id, known)
    return row, etag


@dataclass
class SweepResult:
    entity_set: str
    emitted: int
    skipped: int
    cursor: str

    def as_dict(self) -> dict[str, Any]:
        return {"entitySet": self.entity_set, "emitted": self.emitted, "skipped": self.skipped,
                "cursor": self.cursor}


def sweep_trigger(runtime: Runtime, connection: str, company_id: str, trigger: CreatedTrigger,
                  owner: str) -> SweepResult:
    """Announce what changed since the cursor and was never announced; then move the cursor."""
    conn = runtime.settings.connection(connection)
    bc = runtime.bc(connection)
    dedupe = DedupeLog(runtime.storage, runtime.settings.dedupe_ttl_days)
    scope = scope_of(connection, company_id, trigger)
    row, etag = start_trigger(runtime, connection, company_id, trigger)
    cursor = parse_iso(row["cursor"])
    params = {"$filter": since_filter(cursor, runtime.settings.cursor_overlap_seconds),
              **trigger.expand(conn)}
    newest = cursor
    count = EmitCount()
    for page in bc.iter_pages(bc.company_path(company_id, trigger.entity_set), params, PAGE_SIZE):
        count.add(announce(dedupe, runtime.events, scope, trigger, page, owner))
        newest = next_cursor(newest, (e.get("lastModifiedDateTime") for e in page))
    if newest > cursor and replace_if_match(runtime.storage.table(TABLE_CURSORS),
                                            {**row, "cursor": iso(newest), "swept_at": iso(utc_now())},
                                            etag) is None:
        log.warning("sweep %s: cursor of %s changed during the run; keeping the other runner's",
                    connection, trigger.entity_set)
    dedupe.purge_expired(scope)
    return SweepResult(trigger.entity_set, count.emitted, count.skipped, iso(newest))


def sweep(runtime: Runtime, connection: str | None = None) -> list[SweepResult]:
    """Sweep every trigger of one connection (one runner at a time per connection)."""
    conn = runtime.settings.connection(connection)
    company_id = runtime.company_id(conn.name)
    owner = f"sweep-{uuid.uuid4().hex}"
    with Lease(runtime.storage, f"sweep:{conn.name}", ttl_seconds=LEASE_SECONDS) as acquired:
        if not acquired:
            log.info("sweep %s: another run is in progress; skipped", conn.name)
            return []
        results, errors = [], []
        for trigger in TRIGGERS:  # one trigger's failure does not hold up the others
            try:
                results.append(sweep_trigger(runtime, conn.name, company_id, trigger, owner))
            except BCError as exc:
                log.error("sweep %s: %s failed: %s", conn.name, trigger.entity_set, exc)
                errors.append(exc)
    log.info("sweep %s: %s", conn.name, [r.as_dict() for r in results])
    if errors:
        raise errors[0]
    return results


def sweep_all(runtime: Runtime) -> list[SweepResult]:
    """Sweep every connection; one that is not signed in is skipped. Raises the first other error
    after trying every connection."""
    results, errors = [], []
    for name in runtime.settings.connections:
        try:
            results.extend(sweep(runtime, name))
        except TokenUnavailable as exc:
            log.warning("sweep %s: skipped: %s", name, exc)
        except (BCError, CompanyNotFound) as exc:
            log.error("sweep %s: failed: %s", name, exc)
            errors.append(exc)
    if errors:
        raise errors[0]
    return results
