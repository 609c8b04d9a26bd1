"""The sweep: finds created entities that webhooks did not announce (a subscription BC dropped, a
resource BC cannot watch, a notification lost in BC's queue) by reading
`$filter=lastModifiedDateTime gt <cursor − CURSOR_OVERLAP_SECONDS>` for each trigger.

A collection read cannot tell created from updated (API v2.0 exposes no creation time), so an
entity counts as created when it was never announced: the dedupe table keeps every `emitted` and
`known` entity for good. To keep updates of older entities from being announced as created, a
trigger starts with a baseline: when it is set up (first subscription run or first sweep), every
entity last modified before the start (minus the overlap) is recorded as `known`, and the cursor
starts at that moment, so history is never announced (what changed within the overlap just before
the start may be: losing a creation would be worse). Only one runner baselines a trigger: it first
inserts the cursor row marked `baselining` with its cutoff, and only the winner of that insert
records `known` entities; a marker left by a dead runner is taken over after the function timeout.

The cursor row (`bccursors`, RK = `sweep:<entitySet>:<companyId>`) also holds a pass under way:
after each page's events are queued, the page's `next_link`, the newest change read so far and the
hold (see below) are written there. A run stops after SWEEP_MAX_SECONDS (shared out among the
triggers still to sweep; each reads at least one page) and renews its lease after every page; the
next run resumes at the `next_link`. When a pass completes, the cursor moves to the newest change
read, but never back, never past the pass's start (a change made during the read may sit behind
the read position), and never to or past an entity skipped because another runner's claim on it was
live: that runner may still die (its message ending in poison), so the next pass must read it again.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from azure.data.tables import TableClient

from connector.bc.errors import BCError
from connector.bc.timestamps import bc_datetime, iso, parse_iso, utc_now
from connector.connections import for_each_connection, results_or_raise
from connector.leases import Lease
from connector.runtime import Runtime
from connector.settings import TABLE_CURSORS
from connector.storage import delete_if_match, insert_entity, read_entity, replace_if_match
from connector.webhooks.dedupe import DedupeLog, DedupeScope
from connector.webhooks.triggers import TRIGGERS, CreatedTrigger, EmitCount, announce

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # entities per BC page (documents come with their lines)
BASELINE_PAGE_SIZE = 20000  # ids only
LEASE_MARGIN_SECONDS = 120.0  # lease TTL beyond the time budget (a slow last page, retries)
BC_TICK = timedelta(milliseconds=1)  # the resolution of BC's lastModifiedDateTime
BASELINING = "baselining"  # the state of a cursor row whose trigger is being set up
BASELINE_STALE_SECONDS = 600.0  # the functionTimeout: a set-up not refreshed this long has died


# ---- cursor decisions ------------------------------------------------------------------------------

def since_filter(cursor: datetime, overlap_seconds: float) -> str:
    return f"lastModifiedDateTime gt {bc_datetime(cursor - timedelta(seconds=overlap_seconds))}"


def newest_change(newest: datetime | None, modified: Iterable[str | None]) -> datetime | None:
    """The newest of `newest` and the `lastModifiedDateTime`s read (None: nothing read yet)."""
    for value in modified:
        if value:
            moment = parse_iso(value)
            newest = moment if newest is None else max(newest, moment)
    return newest


def hold_before(held: datetime | None, page: Iterable[dict[str, Any]],
                busy: Collection[str]) -> datetime | None:
    """The hold after a page: one BC tick before the earliest change of an entity that another
    runner's live claim kept from being announced (`busy` ids), or the earlier hold."""
    for entity in page:
        modified = entity.get("lastModifiedDateTime")
        if modified and str(entity.get("id", "")).lower() in busy:
            moment = parse_iso(modified) - BC_TICK
            held = moment if held is None else min(held, moment)
    return held


def completed_cursor(cursor: datetime, newest: datetime | None, pass_started: datetime,
                     held: datetime | None) -> datetime:
    """The cursor after a completed pass: the newest change read, capped at the pass's start and at
    the hold, and never moving back."""
    if newest is None:
        return cursor
    return max(cursor, min(t for t in (newest, pass_started, held) if t is not None))


# ---- storage and BC edges ---------------------------------------------------------------------------

def cursor_key(trigger: CreatedTrigger, company_id: str) -> str:
    return f"sweep:{trigger.entity_set}:{company_id.lower()}"


def scope_of(connection: str, company_id: str, trigger: CreatedTrigger) -> DedupeScope:
    return DedupeScope(connection, company_id, trigger.entity_set)


def start_trigger(runtime: Runtime, connection: str, company_id: str, trigger: CreatedTrigger,
                  keep_alive: Callable[[], None] = lambda: None) -> tuple[dict[str, Any], str] | None:
    """The trigger's cursor row and ETag, set up on first use; None while another runner sets it up.

    Set-up is claimed first: a `baselining` row holding the cutoff is inserted, and only the runner
    whose insert won records the existing entities as `known` (ids only, paged, up to that cutoff),
    then completes the row. A runner that lost could otherwise record as `known` entities created
    after the winner's cursor, which would never be announced. A `baselining` row not refreshed for
    BASELINE_STALE_SECONDS belongs to a dead runner and is taken over (same cutoff, ETag-guarded).
    `keep_alive` runs after every page (a lease renewal; it raises to stop)."""
    table = runtime.storage.table(TABLE_CURSORS)
    key = cursor_key(trigger, company_id)
    for _ in range(3):  # the row may appear, complete or vanish (an aborted set-up) meanwhile
        found = read_entity(table, connection, key)
        if found is None:
            started = utc_now()
            row = {"PartitionKey": connection, "RowKey": key, "state": BASELINING, "cursor": iso(started),
                   "started_at": iso(started), "updated_at": iso(started)}
            etag = insert_entity(table, row)
        else:
            row, etag = found
            if row.get("state") != BASELINING:
                return found
            if utc_now() - parse_iso(row["updated_at"]) < timedelta(seconds=BASELINE_STALE_SECONDS):
                log.info("sweep %s: %s of company %s is being set up by another runner", connection,
                         trigger.entity_set, company_id)
                return None
            etag = replace_if_match(table, {**row, "updated_at": iso(utc_now())}, etag)
        if etag is not None:
            return Baseline(runtime, connection, company_id, trigger, table, keep_alive).run(row, etag)
    return None


class Baseline:
    """One runner's set-up of a trigger whose `baselining` row it holds (by ETag)."""

    def __init__(self, runtime: Runtime, connection: str, company_id: str, trigger: CreatedTrigger,
                 table: TableClient, keep_alive: Callable[[], None]):
        self.runtime = runtime
        self.connection = connection
        self.company_id = company_id
        self.trigger = trigger
        self.table = table
        self.keep_alive = keep_alive

    def run(self, row: dict[str, Any], etag: str) -> tuple[dict[str, Any], str] | None:
        """Record every entity up to the row's cutoff as `known`, then complete the row; None if
        another runner took the row over. When stopped (`keep_alive` or BC raised), the row is
        removed so the next runner starts afresh."""
        self.etag: str | None = etag
        done: tuple[dict[str, Any], str] | None = None
        try:
            done = self._record_known(row)
            return done
        finally:
            if done is None and self.etag is not None:
                delete_if_match(self.table, self.connection, row["RowKey"], self.etag)

    def _write(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Write `row` if this runner still holds it (the row as written); None when taken over."""
        assert self.etag is not None
        written = {**row, "updated_at": iso(utc_now())}
        self.etag = replace_if_match(self.table, written, self.etag)
        if self.etag is None:
            log.warning("sweep %s: set-up of %s of company %s was taken over by another runner",
                        self.connection, self.trigger.entity_set, self.company_id)
            return None
        return written

    def _record_known(self, row: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        cutoff = parse_iso(row["cursor"]) - timedelta(seconds=self.runtime.settings.cursor_overlap_seconds)
        bc = self.runtime.bc(self.connection)
        dedupe = DedupeLog(self.runtime.storage, self.runtime.settings.dedupe_ttl_days)
        scope = scope_of(self.connection, self.company_id, self.trigger)
        params = {"$filter": f"lastModifiedDateTime le {bc_datetime(cutoff)}", "$select": "id"}
        known = 0
        for page in bc.iter_pages(bc.company_path(self.company_id, self.trigger.entity_set), params,
                                  BASELINE_PAGE_SIZE):
            dedupe.settle(scope, [str(e["id"]) for e in page], "known")
            known += len(page)
            self.keep_alive()
            if self._write(row) is None:
                return None
        written = self._write({k: v for k, v in row.items() if k != "state"})
        if written is None or self.etag is None:
            return None
        log.info("sweep %s: %s of company %s starts at %s; %d existing entities recorded as known",
                 self.connection, self.trigger.entity_set, self.company_id, row["cursor"], known)
        return written, self.etag


@dataclass
class SweepResult:
    entity_set: str
    emitted: int
    skipped: int
    cursor: str
    finished: bool = True  # False: the time budget ran out; the next run resumes the pass

    def as_dict(self) -> dict[str, Any]:
        return {"entitySet": self.entity_set, "emitted": self.emitted, "skipped": self.skipped,
                "cursor": self.cursor, "finished": self.finished}


class SweepInterrupted(RuntimeError):
    """Another runner took over (lease lost, or the cursor row changed underneath)."""


class SweepRun:
    """One sweep of a connection's company: every trigger, within a time budget, under a lease."""

    def __init__(self, runtime: Runtime, connection: str, company_id: str, lease: Lease,
                 max_seconds: float, triggers: tuple[CreatedTrigger, ...] = TRIGGERS):
        self.runtime = runtime
        self.triggers = triggers
        self.connection = connection
        self.company_id = company_id
        self.lease = lease
        self.deadline = time.monotonic() + max_seconds
        self.owner = f"sweep-{uuid.uuid4().hex}"
        self.bc = runtime.bc(connection)
        self.table = runtime.storage.table(TABLE_CURSORS)
        self.dedupe = DedupeLog(runtime.storage, runtime.settings.dedupe_ttl_days)

    def run(self) -> list[SweepResult]:
        """Sweep every trigger (one trigger's failure does not hold up the others); raises the first
        BC error at the end."""
        results, errors = [], []
        for position, trigger in enumerate(self.triggers):
            now = time.monotonic()
            share_ends = now + max(0.0, self.deadline - now) / (len(self.triggers) - position)
            try:
                results.append(self.sweep_trigger(trigger, share_ends))
            except BCError as exc:
                log.error("sweep %s: %s failed: %s", self.connection, trigger.entity_set, exc)
                errors.append(exc)
            except SweepInterrupted as exc:
                log.warning("sweep %s: stopped: %s", self.connection, exc)
                break
        log.info("sweep %s: %s", self.connection, [r.as_dict() for r in results])
        if errors:
            raise errors[0]
        return results

    def save(self, row: dict[str, Any], etag: str) -> str:
        new_etag = replace_if_match(self.table, {**row, "updated_at": iso(utc_now())}, etag)
        if new_etag is None:
            raise SweepInterrupted(f"cursor {row['RowKey']} was changed by another runner")
        return new_etag

    def sweep_trigger(self, trigger: CreatedTrigger, share_ends: float) -> SweepResult:
        """Announce what changed since the cursor and was never announced, page by page, checkpointing
        after each page; move the cursor once the pass is complete."""
        conn = self.runtime.settings.connection(self.connection)
        scope = scope_of(self.connection, self.company_id, trigger)
        started = start_trigger(self.runtime, self.connection, self.company_id, trigger, self.renew_lease)
        if started is None:  # another runner is setting the trigger up; the next run sweeps it
            return SweepResult(trigger.entity_set, 0, 0, "", finished=False)
        row, etag = started
        base = {k: row[k] for k in ("PartitionKey", "RowKey", "cursor", "started_at") if k in row}
        cursor = parse_iso(row["cursor"])
        resume_from = row.get("next_link") or None
        if resume_from:
            run_started = parse_iso(row["run_started"])
            newest = parse_iso(row["pending_cursor"]) if row.get("pending_cursor") else None
            held = parse_iso(row["held_before"]) if row.get("held_before") else None
        else:
            run_started, newest, held = utc_now(), None, None
        params = {"$filter": since_filter(cursor, self.runtime.settings.cursor_overlap_seconds),
                  **trigger.expand(conn)}
        count = EmitCount()
        pages = self.bc.pages(self.bc.company_path(self.company_id, trigger.entity_set), params,
                              page_size=PAGE_SIZE, resume_from=resume_from,
                              go_on=lambda: time.monotonic() < share_ends)
        for page in pages:
            self.renew_lease()
            done = announce(self.dedupe, self.runtime.events, scope, trigger, page.entities, self.owner)
            count.add(done)
            newest = newest_change(newest, (e.get("lastModifiedDateTime") for e in page.entities))
            held = hold_before(held, page.entities, done.busy)
            if not page.next_link:
                break
            etag = self.save({**base, "next_link": page.next_link, "run_started": iso(run_started),
                              "pending_cursor": iso(newest) if newest else "",
                              "held_before": iso(held) if held else ""}, etag)
        else:
            log.info("sweep %s: %s paused by SWEEP_MAX_SECONDS; the next run resumes", self.connection,
                     trigger.entity_set)
            return SweepResult(trigger.entity_set, count.emitted, count.skipped, row["cursor"],
                               finished=False)
        moved = completed_cursor(cursor, newest, run_started, held)
        if held is not None:
            log.info("sweep %s: %s cursor held before %s (entities claimed by another runner)",
                     self.connection, trigger.entity_set, iso(held))
        self.save({**base, "cursor": iso(moved)}, etag)
        self.dedupe.purge_gone(scope)
        return SweepResult(trigger.entity_set, count.emitted, count.skipped, iso(moved))

    def renew_lease(self) -> None:
        if not self.lease.renew():
            raise SweepInterrupted(f"lease {self.lease.name} was lost")


# ---- entry points -----------------------------------------------------------------------------------

def sweep(runtime: Runtime, connection: str | None = None,
          triggers: tuple[CreatedTrigger, ...] = TRIGGERS) -> list[SweepResult]:
    """Sweep the triggers (all by default) of one connection (one runner at a time per connection;
    [] when another run holds the lease: it covers what changed before it read)."""
    conn = runtime.settings.connection(connection)
    company_id = runtime.company_id(conn.name)
    max_seconds = runtime.settings.sweep_max_seconds
    lease = Lease(runtime.storage, f"sweep:{conn.name}", ttl_seconds=max_seconds + LEASE_MARGIN_SECONDS)
    with lease as acquired:
        if not acquired:
            log.info("sweep %s: another run is in progress; skipped", conn.name)
            return []
        return SweepRun(runtime, conn.name, company_id, lease, max_seconds, triggers).run()


def sweep_all(runtime: Runtime) -> list[SweepResult]:
    """Sweep every connection; one that is not signed in is skipped. Raises the first other error
    after trying every connection."""
    outcomes = for_each_connection(runtime.settings, partial(sweep, runtime), task="sweep")
    return [result for results in results_or_raise(outcomes) for result in results]
