"""The sweep: creations and updates the webhooks did not announce (a subscription BC dropped, a
resource BC cannot watch, a notification lost in BC's queue), read per trigger through the resumable
read since its cursor. Deletions cannot be seen this way. The baseline, the cursor's rules and the
hold: docs/architecture.md ("Resumable reads").
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from connector.bc.errors import BCError
from connector.bc.timestamps import bc_datetime, iso, parse_iso, utc_now
from connector.connections import for_each_connection, results_or_raise
from connector.cursors import CursorTable, ReadCursor, ReadInterrupted, newest_modified
from connector.declarations import WatchedEntitySet
from connector.health.events import GAP_FILLED
from connector.leases import LEASE_SECONDS, Lease
from connector.rows import Heartbeat
from connector.webhooks.context import WebhookContext
from connector.webhooks.dedupe import DedupeScope
from connector.webhooks.triggers import EmitCount, announce, collection_path, seen

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # entities per BC page (documents come with their lines)
BASELINE_PAGE_SIZE = 20000  # ids only
BC_TICK = timedelta(milliseconds=1)  # the resolution of BC's lastModifiedDateTime
BASELINING = "baselining"  # the state of a cursor row whose trigger is being set up
BASELINE_STALE_SECONDS = LEASE_SECONDS  # a set-up not refreshed this long has died (a heartbeat
# refreshes a live one every third of it)


# ---- cursor decisions ------------------------------------------------------------------------------

def hold_before(page: Iterable[dict[str, Any]], busy: Collection[str]) -> datetime | None:
    """The hold a page sets: one BC tick before the earliest change of an entity that another
    runner's live hold kept from being announced (`busy` ids); None if there is none."""
    held: datetime | None = None
    for entity in page:
        modified = entity.get("lastModifiedDateTime")
        if modified and str(entity.get("id", "")).lower() in busy:
            moment = parse_iso(modified) - BC_TICK
            held = moment if held is None else min(held, moment)
    return held


# ---- storage and BC edges ---------------------------------------------------------------------------

def cursor_key(trigger: WatchedEntitySet, company_id: str) -> str:
    return f"sweep:{trigger.key}:{company_id.lower()}"


def scope_of(connection: str, company_id: str, trigger: WatchedEntitySet) -> DedupeScope:
    return DedupeScope(connection, company_id, trigger.key)


def start_trigger(ctx: WebhookContext, connection: str, company_id: str, trigger: WatchedEntitySet,
                  keep_alive: Callable[[], None] = lambda: None) -> tuple[CursorTable, ReadCursor] | None:
    """The trigger's cursor (and its row, to write it back), set up on first use; None while another
    runner sets it up.

    Set-up is claimed first: a `baselining` row holding the cutoff is inserted, and only the runner
    whose insert won records the existing entities as `known` (ids only, paged, up to that cutoff),
    then completes the row. A runner that lost could otherwise record as `known` entities created
    after the winner's cursor, which would never be announced. The winner's heartbeat refreshes the
    row while it works; a `baselining` row not refreshed for BASELINE_STALE_SECONDS (or whose
    `updated_at` does not validate) belongs to a dead runner and is taken over (same cutoff,
    ETag-guarded).
    `keep_alive` runs after every page (a lease renewal; it raises to stop)."""
    row = CursorTable(ctx.storage, connection, cursor_key(trigger, company_id))
    for _ in range(3):  # the row may appear, complete or vanish (an aborted set-up) meanwhile
        found = row.load()
        if found is None:
            started = utc_now()
            claimed = row.write(ReadCursor(cursor=started, state=BASELINING, started_at=started))
        elif found.state != BASELINING:
            return row, found
        elif found.updated_at and utc_now() - found.updated_at < timedelta(seconds=BASELINE_STALE_SECONDS):
            log.info("sweep %s: %s of company %s is being set up by another runner", connection,
                     trigger.key, company_id)
            return None
        else:
            claimed = row.write(found)
        if claimed is not None:
            return Baseline(ctx, connection, company_id, trigger, row, keep_alive).run(claimed)
    return None


class Baseline:
    """One runner's set-up of a trigger whose `baselining` row it holds (by ETag)."""

    def __init__(self, ctx: WebhookContext, connection: str, company_id: str, trigger: WatchedEntitySet,
                 row: CursorTable, keep_alive: Callable[[], None]):
        self.ctx = ctx
        self.connection = connection
        self.company_id = company_id
        self.trigger = trigger
        self.row = row
        self.keep_alive = keep_alive
        self._writing = threading.RLock()  # the heartbeat and the pages write the row in turn
        self._completing = False  # the heartbeat writes the marker no more

    def run(self, marker: ReadCursor) -> tuple[CursorTable, ReadCursor] | None:
        """Record every entity up to the marker's cutoff as `known`, then complete the row; None if
        another runner took the row over. The marker is refreshed by a heartbeat meanwhile. When
        stopped (`keep_alive` or BC raised), the row is removed so the next runner starts afresh."""
        done: tuple[CursorTable, ReadCursor] | None = None
        heartbeat = Heartbeat(lambda: self._refresh(marker), BASELINE_STALE_SECONDS / 3,
                              f"baseline {self.trigger.entity_set}").start()
        try:
            done = self._record_known(marker)
            return done
        finally:
            heartbeat.stop()
            if done is None:
                with self._writing:
                    self.row.delete()  # unless another runner took it over

    def _refresh(self, marker: ReadCursor) -> bool:
        """The heartbeat: the marker written again (its `updated_at` now); False once completing or
        taken over."""
        with self._writing:
            return not self._completing and self._write(marker) is not None

    def _write(self, state: ReadCursor) -> ReadCursor | None:
        """Write `state` if this runner still holds the row (the state as written); None when taken over."""
        with self._writing:
            written = self.row.write(state)
        if written is None:
            log.warning("sweep %s: set-up of %s of company %s was taken over by another runner",
                        self.connection, self.trigger.key, self.company_id)
        return written

    def _record_known(self, marker: ReadCursor) -> tuple[CursorTable, ReadCursor] | None:
        assert marker.cursor is not None
        cutoff = marker.cursor
        bc = self.ctx.bc(self.connection)
        dedupe = self.ctx.dedupe
        scope = scope_of(self.connection, self.company_id, self.trigger)
        trigger = self.trigger
        draft_field = (trigger.draft[0],) if trigger.draft else ()
        fields = ("id", trigger.number_field, "lastModifiedDateTime", *trigger.watch, *draft_field)
        params = {"$filter": f"lastModifiedDateTime le {bc_datetime(cutoff)}",
                  "$select": ",".join(f for f in dict.fromkeys(fields) if f)}
        known = 0
        read_only = self.ctx.settings.connection(self.connection).read_only_intent
        for page in bc.iter_pages(collection_path(bc, trigger, self.company_id), params, BASELINE_PAGE_SIZE,
                                  read_only=read_only):
            dedupe.settle(scope, [str(e["id"]).lower() for e in page], "known",
                          values={str(e["id"]).lower(): seen(trigger, e) for e in page})
            known += len(page)
            self.keep_alive()
            if self._write(marker) is None:
                return None
        with self._writing:
            self._completing = True
        written = self._write(replace(marker, state=""))
        if written is None:
            return None
        log.info("sweep %s: %s of company %s starts at %s; %d existing entities recorded as known",
                 self.connection, self.trigger.key, self.company_id, iso(marker.cursor), known)
        return self.row, written


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


class SweepRun:
    """One sweep of a connection's company: every trigger, within a time budget, under a lease."""

    def __init__(self, ctx: WebhookContext, connection: str, company_id: str, lease: Lease,
                 max_seconds: float, triggers: tuple[WatchedEntitySet, ...] | None = None):
        self.ctx = ctx
        self.triggers = ctx.settings.connection(connection).triggers if triggers is None else triggers
        self.connection = connection
        self.company_id = company_id
        self.lease = lease
        self.deadline = time.monotonic() + max_seconds
        self.owner = f"sweep-{uuid.uuid4().hex}"
        self.bc = ctx.bc(connection)
        self.dedupe = ctx.dedupe

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
                log.error("sweep %s: %s failed: %s", self.connection, trigger.key, exc)
                errors.append(exc)
            except ReadInterrupted as exc:
                log.warning("sweep %s: stopped: %s", self.connection, exc)
                break
        log.info("sweep %s: %s", self.connection, [r.as_dict() for r in results])
        self.report_gaps(results)
        if errors:
            raise errors[0]
        return results

    def sweep_trigger(self, trigger: WatchedEntitySet, share_ends: float) -> SweepResult:
        """Announce what changed since the cursor and was never announced, page by page, checkpointing
        after each page; move the cursor once the pass is complete."""
        scope = scope_of(self.connection, self.company_id, trigger)
        started = start_trigger(self.ctx, self.connection, self.company_id, trigger, self.renew_lease)
        if started is None:  # another runner is setting the trigger up; the next run sweeps it
            return SweepResult(trigger.key, 0, 0, "", finished=False)
        row, state = started
        assert state.cursor is not None  # set when the trigger started
        if not state.in_pass:
            state = state.start_pass(utc_now())
        since = state.since(self.ctx.settings.cursor_overlap_seconds)
        params = {"$filter": f"lastModifiedDateTime gt {since}", **trigger.params()}
        count = EmitCount()
        pages = self.bc.pages(collection_path(self.bc, trigger, self.company_id), params,
                              page_size=PAGE_SIZE, resume_from=state.next_link,
                              go_on=lambda: time.monotonic() < share_ends,
                              read_only=self.ctx.settings.connection(self.connection).read_only_intent)
        for page in pages:
            self.renew_lease()
            done = announce(self.dedupe, self.ctx.events, scope, trigger, page.entities, self.owner)
            count.add(done)
            state = state.checkpoint(page.next_link,
                                     newest_modified(e.get("lastModifiedDateTime") for e in page.entities),
                                     hold_before(page.entities, done.busy))
            if page.next_link:
                state = row.save(state)
        if state.next_link:
            log.info("sweep %s: %s paused by SWEEP_MAX_SECONDS; the next run resumes", self.connection,
                     trigger.key)
            return SweepResult(trigger.key, count.emitted, count.skipped,
                               iso(state.cursor) if state.cursor else "",
                               finished=False)
        if state.held is not None:
            log.info("sweep %s: %s cursor held before %s (entities claimed by another runner)",
                     self.connection, trigger.key, iso(state.held))
        moved = row.save(state.complete()).cursor
        assert moved is not None
        self.dedupe.purge_gone(scope)
        return SweepResult(trigger.key, count.emitted, count.skipped, iso(moved))

    def report_gaps(self, results: list[SweepResult]) -> None:
        """One `bc.connector.gap.filled` per trigger that announced changes the webhooks missed."""
        for result in results:
            if result.emitted:
                self.ctx.health.emit(
                    GAP_FILLED, connection=self.connection, company_id=self.company_id,
                    occurrence=f"{self.owner}:{result.entity_set}",
                    summary=f"the sweep announced {result.emitted} {result.entity_set} change(s) the "
                            "webhooks missed", details={"entitySet": result.entity_set,
                                                        "missed": result.emitted})

    def renew_lease(self) -> None:
        if not self.lease.renew():
            raise ReadInterrupted(f"lease {self.lease.name} was lost")


# ---- entry points -----------------------------------------------------------------------------------

def sweep(ctx: WebhookContext, connection: str | None = None,
          triggers: tuple[WatchedEntitySet, ...] | None = None) -> list[SweepResult]:
    """Sweep the triggers (all the connection's by default) of one connection (one runner at a time
    per connection; [] when another run holds the lease: it covers what changed before it read)."""
    conn = ctx.settings.connection(connection)
    company_id = ctx.company_id(conn.name)
    max_seconds = ctx.settings.sweep_max_seconds
    lease = Lease(ctx.storage, f"sweep:{conn.name}")
    with lease as acquired:
        if not acquired:
            log.info("sweep %s: another run is in progress; skipped", conn.name)
            return []
        return SweepRun(ctx, conn.name, company_id, lease, max_seconds, triggers).run()


def sweep_all(ctx: WebhookContext) -> list[SweepResult]:
    """Sweep every connection; one that is not signed in is skipped. Raises the first other error
    after trying every connection."""
    outcomes = for_each_connection(ctx.settings, partial(sweep, ctx), task="sweep")
    return [result for results in results_or_raise(outcomes) for result in results]
