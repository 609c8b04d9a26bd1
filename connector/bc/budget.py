"""BC's per-principal budget (≤5 requests at once, ≤6,000 per 5 minutes) shared by every instance.

BC counts its limits per principal (the app or user a token names), not per instance. The 5
concurrency slots of a principal are 5 rows in Table Storage (`bcleases`, PK `budget:<principal>`,
RK `slot-0`..`slot-4`) that instances lease with ETag-guarded writes: a row names its holder and an
expiry (`SLOT_TTL` ≤ 60 s), so a dead instance's slots come free by themselves. A held slot carries
any number of requests, one at a time, with no storage call per request; a background thread renews
busy slots and gives idle ones back. Each slot also carries a fifth of the request rate: its row
keeps request counts per 30-s bucket over the window, charged in blocks before they are used.
An instance that waits for a slot writes a `want-<instance>` row; holders above their fair share
(5 / instances that hold or want) give slots back. A request inside `first_in_line()` takes the next
free slot before those already waiting; `freed`/`wait_freed` let a client with several principals
wait for whichever slot comes free first. See docs/architecture.md ("Shared BC budget").
Slot and want rows are read through the row layer's checks (`connector/rows.py`): a row that does not
validate counts as free and is overwritten. If storage fails, or anything else inside the shared
budget does, or no slot comes within `deadline_seconds`, the budget falls back to a per-process one
(with a warning) and tries the shared one again later: a BC call never fails because of the budget.
"""
from __future__ import annotations

import atexit
import base64
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.rows import RowWarnings, Warn, holding, read_count, read_expiry, read_json, stamp, where
from connector.settings import TABLE_LEASES, BCLimits
from connector.storage import Storage, delete_if_match, insert_entity, replace_if_match, table_key

log = logging.getLogger(__name__)


class Budget(Protocol):
    """What the BC client needs: a ticket per request, given back when the response is in."""

    max_concurrency: int

    @property
    def max_in_flight(self) -> int: ...

    def acquire(self, principal: str = "") -> object: ...

    def release(self, ticket: object = None) -> None: ...

    def close(self) -> None: ...


_FIRST: ContextVar[bool] = ContextVar("bc_budget_first", default=False)


@contextmanager
def first_in_line() -> Iterator[None]:
    """BC requests of this thread inside the block take a principal's next free slot before the
    requests already waiting for one: a key check that a batch of orders waits on goes while their
    writes still keep BC's slots busy, not after them (the shared budget; the per-process fallback
    keeps no order)."""
    token = _FIRST.set(True)
    try:
        yield
    finally:
        _FIRST.reset(token)


def in_first_line() -> bool:
    """True inside `first_in_line` (such a request waits on its principal, ahead of the others)."""
    return _FIRST.get()


class RequestBudget:
    """Concurrency cap plus sliding-window rate limit within one process (one principal)."""

    def __init__(self, max_concurrency: int, max_requests: int, window_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._max_requests = max_requests
        self._window = window_seconds
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.max_in_flight = 0
        self._in_flight = 0

    def acquire(self, principal: str = "") -> RequestBudget:
        self._slots.acquire()
        while (wait := self._send_now()) > 0:
            self._sleep(wait)
        return self

    def try_acquire(self, principal: str = "") -> RequestBudget | None:
        """A slot now, or None (no waiting): when a slot and the rate allow it."""
        if not self._slots.acquire(blocking=False):
            return None
        if self._send_now() == 0:
            return self
        self._slots.release()
        return None

    def _send_now(self) -> float:
        """Count a request now if the window allows it (0.0), else the seconds until it will."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - self._window:
                self._sent.popleft()
            if len(self._sent) >= self._max_requests:
                return max(self._sent[0] + self._window - now, 0.01)
            self._sent.append(now)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return 0.0

    def release(self, ticket: object = None) -> None:
        with self._lock:
            self._in_flight -= 1
        self._slots.release()

    def close(self) -> None:
        """Nothing to give back."""


class LocalBudgets:
    """One `RequestBudget` per principal in this process (the budget when nothing is shared)."""

    def __init__(self, limits: BCLimits):
        self.max_concurrency = limits.max_concurrency
        self._limits = limits
        self._budgets: dict[str, RequestBudget] = {}
        self._lock = threading.Lock()

    @property
    def max_in_flight(self) -> int:
        return max((b.max_in_flight for b in self._budgets.values()), default=0)

    def acquire(self, principal: str = "") -> RequestBudget:
        return self._budget(principal).acquire()

    def try_acquire(self, principal: str = "") -> RequestBudget | None:
        """A slot of `principal` now, or None (no waiting)."""
        return self._budget(principal).try_acquire()

    def _budget(self, principal: str) -> RequestBudget:
        with self._lock:
            budget = self._budgets.get(principal)
            if budget is None:
                budget = self._budgets[principal] = RequestBudget(
                    self._limits.max_concurrency, self._limits.max_requests_per_window,
                    self._limits.window_seconds)
            return budget

    def release(self, ticket: object = None) -> None:
        assert isinstance(ticket, RequestBudget)
        ticket.release()

    def close(self) -> None:
        """Nothing to give back."""


def principal_of(token: str) -> str | None:
    """`<tenant>:<object id>` of the app or user a bearer token names (BC's unit of limits), read
    from the JWT's claims without checking them (BC does that); None if it is not a JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    who = claims.get("oid") or claims.get("appid")
    return f"{claims.get('tid', '')}:{who}" if who else None


# ---- pure decisions --------------------------------------------------------------------------

Ring = dict[int, int]
"""Requests charged to a slot per time bucket (bucket number -> count)."""


@dataclass(frozen=True)
class RateWindow:
    """A slot's share of the rate: `limit` requests in any `window_seconds`, counted in buckets."""

    limit: int
    window_seconds: float
    bucket_seconds: float = 30.0

    def bucket(self, now: float) -> int:
        return int(now // self.bucket_seconds)

    @property
    def span(self) -> int:
        """Buckets counted: the current one and enough before it to cover any window ending now."""
        return math.ceil(self.window_seconds / self.bucket_seconds) + 1

    def charge(self, ring: Ring, now: float, wanted: int) -> tuple[Ring, int]:
        """Charge up to `wanted` requests to the current bucket; the pruned ring and how many fit."""
        current = self.bucket(now)
        kept = {b: n for b, n in ring.items() if b > current - self.span and n > 0}
        granted = max(0, min(wanted, self.limit - sum(kept.values())))
        if granted:
            kept[current] = kept.get(current, 0) + granted
        return kept, granted

    def next_bucket_at(self, now: float) -> float:
        return (self.bucket(now) + 1) * self.bucket_seconds


def fair_share(slots: int, contenders: int) -> int:
    """Slots one instance may keep while others wait: an equal split, rounded up."""
    return max(1, math.ceil(slots / max(1, contenders)))


def slots_to_keep(held_since: list[float], now: float, me: str, holders: set[str],
                  wanting: set[str], slots: int, tenure_seconds: float) -> int:
    """How many of my held slots (leased at `held_since`) to keep: all unless others wait; then my
    fair share, and with more contenders than slots, none held longer than the tenure (rotation)."""
    if not wanting - {me}:
        return len(held_since)
    contenders = len(holders | wanting | {me})
    keep = min(len(held_since), fair_share(slots, contenders))
    if contenders > slots:
        keep = min(keep, sum(1 for t in held_since if now - t < tenure_seconds))
    return keep


def free_slots(rows: dict[int, dict[str, Any]], slots: int, now: float) -> list[int]:
    """Slot numbers nobody holds: no row yet, given back, or expired (rows as `slot_row` reads them)."""
    return [i for i in range(slots)
            if i not in rows or not rows[i].get("holder") or float(rows[i].get("expires", 0)) <= now]


def slot_number(row_key: str, slots: int) -> int | None:
    """The slot a `slot-<n>` RowKey names (n below `slots`); None for any other key."""
    digits = row_key[5:]
    if not row_key.startswith("slot-") or not digits.isascii() or not digits.isdigit() or len(digits) > 3:
        return None
    number = int(digits)
    return number if number < slots else None


def read_ring(raw: Any, limit: int) -> Ring | None:
    """A slot row's request counts per bucket (JSON `{"bucket": count}`); None when it is not that
    (or counts more than `limit` in a bucket): the ring is then taken as empty and rewritten."""
    if raw in (None, ""):
        return {}
    value = read_json(raw, longest=4096)
    if not isinstance(value, dict) or len(value) > 64:
        return None
    ring: Ring = {}
    for bucket, count in value.items():
        if not (isinstance(bucket, str) and bucket.isascii() and bucket.isdigit() and len(bucket) < 16):
            return None
        checked = read_count(count, limit)
        if checked is None:
            return None
        ring[int(bucket)] = checked
    return ring


def slot_row(entity: dict[str, Any], now: float, ttl: float, limit: int, place: str,
             warn: Warn) -> dict[str, Any]:
    """A slot row as believed: holder and expiry validated (an invalid one: free), its ring (an
    invalid one: empty); unexpected columns dropped (the next write replaces the row)."""
    held = holding(entity, now, ttl, place, warn)
    ring = read_ring(entity.get("ring"), limit)
    if ring is None:
        warn(place, f"ring {str(entity.get('ring'))[:40]!r} is not a request count per bucket")
        ring = {}
    return {"holder": held.holder, "expires": held.expires, "ring": ring}


# ---- the shared budget -----------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetTuning:
    """Timings of the shared budget (tests shrink them)."""

    slot_ttl_seconds: float = 30.0  # a dead instance's slots come free after this (≤ 60 s)
    renew_seconds: float = 5.0  # busy slots are renewed this often
    idle_seconds: float = 5.0  # a slot unused this long goes back
    idle_wanted_seconds: float = 0.25  # ... or this long while another instance waits for one
    tick_seconds: float = 0.25  # background thread: idle slots, yields
    fairness_seconds: float = 1.0  # holders look for waiting instances this often
    poll_seconds: float = 0.2  # a waiting instance asks storage again after about this long
    held_poll_seconds: float = 2.0  # ... or this long when it holds slots of the principal already
    want_ttl_seconds: float = 2.0  # a want row counts this long after its last refresh
    tenure_seconds: float = 15.0  # with more instances than slots, a slot changes hands this often
    block: int = 50  # requests charged to a slot's window per storage write
    degraded_seconds: float = 30.0  # after a storage failure, per-process budget this long
    deadline_seconds: float = 60.0  # a request waiting this long for a slot: per-process budget


@dataclass(eq=False)
class _Slot:
    index: int
    etag: str
    ring: Ring
    leased_at: float
    credit: int = 0  # requests charged to `ring[charged_bucket]`, not yet sent
    charged_bucket: int = 0
    busy: bool = False
    last_used: float = 0.0
    renewed_at: float = 0.0
    exhausted_until: float = 0.0
    yielding: bool = False
    dropped: bool = False
    state: _Principal | None = field(default=None, repr=False)


@dataclass(eq=False)
class _Principal:
    key: str  # PartitionKey
    lock: threading.RLock = field(default_factory=threading.RLock)
    io: threading.Lock = field(default_factory=threading.Lock)  # one storage conversation at a time
    slots: list[_Slot] = field(default_factory=list)
    want_written_at: float = 0.0
    judged_at: float = 0.0  # last fairness check by the background thread
    others_waiting: bool = False  # as of that check
    cooldown_until: float = 0.0  # after yielding, leave freed slots to the instances waiting
    full_until: float = 0.0  # no slot was free: ask storage again after this (poll_seconds)
    first_waiting: int = 0  # requests waiting in `first_in_line`: the next free slot is theirs

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)  # requests waiting for a slot
        self.first = threading.Condition(self.lock)  # ... of them, those first in line

    def held(self) -> int:
        """Slots this instance holds (not given back or taken over)."""
        return sum(1 for s in self.slots if not s.dropped)

    def wake_all(self) -> None:
        """Every waiter looks again (callers hold `lock`)."""
        self.first.notify_all()
        self.cond.notify_all()

    def ready(self, now: float, first: bool = False) -> _Slot | None:
        """An idle slot with credit for a request (none for one not first in line while one is)."""
        if self.first_waiting and not first:
            return None
        for slot in self.slots:
            if not (slot.busy or slot.dropped or slot.yielding) and slot.credit > 0:
                return slot
        return None


class SharedBudget:
    """BC's budget per principal, shared with every other instance through Table Storage."""

    def __init__(self, storage: Storage, limits: BCLimits, *,
                 tuning: BudgetTuning = BudgetTuning(),
                 fallback: LocalBudgets | None = None,
                 clock: Callable[[], float] = time.time):
        self.max_concurrency = limits.max_concurrency
        self.instance = uuid.uuid4().hex[:12]
        self.tuning = tuning
        self.rate = RateWindow(max(1, limits.max_requests_per_window // limits.max_concurrency),
                               limits.window_seconds)
        self.max_in_flight = 0
        self._in_flight = 0
        self._storage = storage
        self._fallback = fallback or LocalBudgets(limits)
        self._clock = clock
        self._lock = threading.Lock()
        self._principals: dict[str, _Principal] = {}
        self._degraded_until = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()  # a slot runs low on credit: top it up before it runs out
        self._freed = threading.Condition()  # a slot of some principal came free (`wait_freed`)
        self._freed_count = 0
        self._thread: threading.Thread | None = None
        self._warn = RowWarnings()  # rows that did not validate, logged once each

    # Requests ---------------------------------------------------------------------------------
    def acquire(self, principal: str = "") -> object:
        """A slot of `principal` (waits for one); falls back to the per-process budget while
        storage is unavailable."""
        if self._clock() < self._degraded_until:
            return self._fallback.acquire(principal)
        state = self._state(principal)
        first = _FIRST.get()
        if not first:
            return self._wait(state, principal, first)
        with state.lock:
            state.first_waiting += 1
        try:
            return self._wait(state, principal, first)
        finally:
            with state.lock:
                state.first_waiting -= 1
                if not state.first_waiting and state.ready(self._clock()) is not None:
                    state.cond.notify()  # a slot the others let pass while this one waited

    def _wait(self, state: _Principal, principal: str, first: bool) -> object:
        deadline = time.monotonic() + self.tuning.deadline_seconds
        while True:
            with state.lock:
                slot = state.ready(self._clock(), first)
                if slot is not None:
                    slot.busy, slot.credit = True, slot.credit - 1
                    self._count(+1)
                    if slot.credit == self.low_credit:
                        self._wake.set()
                    return slot
            if state.io.acquire(blocking=False):
                try:
                    grew = self._grow(state)
                except Exception as exc:  # storage, or a row nobody foresaw: never into the BC call
                    self._degrade(exc)
                    return self._fallback.acquire(principal)
                finally:
                    state.io.release()
                if grew:
                    continue
            if time.monotonic() > deadline:
                self._degrade(TimeoutError(f"no slot within {self.tuning.deadline_seconds:.0f}s"))
                return self._fallback.acquire(principal)
            with state.lock:
                if state.ready(self._clock(), first) is None:
                    (state.first if first else state.cond).wait(
                        self.tuning.poll_seconds * random.uniform(0.5, 1.5))

    def try_acquire(self, principal: str = "") -> object | None:
        """A slot of `principal` this instance already holds, idle and with credit, or None: no
        storage call, no waiting, no `want` row (a client with several principals sends on the one
        where it has a slot free before it queues on any)."""
        if self._clock() < self._degraded_until:
            return self._fallback.try_acquire(principal)
        with self._lock:
            state = self._principals.get(principal)
        if state is None:
            return None
        with state.lock:
            slot = state.ready(self._clock(), _FIRST.get())
            if slot is None:
                return None
            slot.busy, slot.credit = True, slot.credit - 1
            self._count(+1)
            if slot.credit == self.low_credit:
                self._wake.set()
            return slot

    def release(self, ticket: object = None) -> None:
        if not isinstance(ticket, _Slot):
            self._fallback.release(ticket)
            return
        state = ticket.state
        assert state is not None
        with state.lock:
            ticket.busy = False
            ticket.last_used = self._clock()
            self._count(-1)
            # one slot, one waiter (first in line if one is): waking them all costs the next request time
            first = state.first_waiting > 0
            (state.first if first else state.cond).notify()
        if not first:
            self._announce()  # or to a client waiting for any of its principals' slots
        # Hand the interpreter over now: the waiter just woken sends the slot's next request instead
        # of waiting for this thread to block on its own I/O (or for the 5-ms switch interval).
        time.sleep(0)

    # Waiting for a slot of any of several principals (a client with several) --------------------
    def freed(self) -> int:
        """How many times a slot came free so far (pass it to `wait_freed`)."""
        with self._freed:
            return self._freed_count

    def holds_all(self, principals: list[str]) -> bool:
        """True when this instance holds every slot of each principal (nothing to lease: a request
        may wait for whichever of them comes free first)."""
        if self._clock() < self._degraded_until:
            return False
        with self._lock:
            states = [self._principals.get(p) for p in principals]
        return all(st is not None and st.held() >= self.max_concurrency for st in states)

    def wait_freed(self, seen: int, timeout: float) -> None:
        """Wait until a slot came free after `freed()` returned `seen` (or `timeout`)."""
        with self._freed:
            if self._freed_count == seen:
                self._freed.wait(timeout)

    def _announce(self, everyone: bool = False) -> None:
        with self._freed:
            self._freed_count += 1
            if everyone:
                self._freed.notify_all()
            else:
                self._freed.notify()

    def _count(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _state(self, principal: str) -> _Principal:
        with self._lock:
            state = self._principals.get(principal)
            if state is None:
                state = self._principals[principal] = _Principal(table_key(f"budget:{principal}"))
            return state

    # Storage (callers hold state.io) ------------------------------------------------------------
    def _table(self) -> Any:
        return self._storage.table(TABLE_LEASES, retry_total=0)

    def _grow(self, state: _Principal) -> bool:
        """Top up an idle slot's rate credit, or lease one more slot; False if neither was possible."""
        now = self._clock()
        with state.lock:
            empty = [s for s in state.slots if not (s.busy or s.dropped or s.yielding)
                     and s.credit == 0 and s.exhausted_until <= now]
            if empty:
                empty[0].busy = True  # kept from other threads while charged
        if empty:
            slot = empty[0]
            try:
                self._write(state, slot, now, top_up=True)
            finally:
                with state.lock:
                    slot.busy = False
                    state.wake_all()
                self._announce(everyone=True)
            if slot.credit == 0 and not slot.dropped:
                slot.exhausted_until = self.rate.next_bucket_at(now)
            return slot.credit > 0
        with state.lock:
            held = state.held()
        if held >= self.max_concurrency or now < state.cooldown_until or now < state.full_until:
            return False  # all of them are ours, or storage said none was free a moment ago
        rows, _, _ = self._read(state, now)
        candidates = free_slots(rows, self.max_concurrency, now)
        random.shuffle(candidates)
        for index in candidates:
            taken = self._take(state, index, rows.get(index), now)
            if taken is not None:
                with state.lock:
                    state.slots.append(taken)
                    state.wake_all()
                self._announce(everyone=True)
                self._ensure_thread()
                return True
        # An instance with slots of its own has requests running meanwhile: it asks (and reads the
        # rows) far less often, so instances sharing principals do not poll storage for every slot.
        poll = self.tuning.held_poll_seconds if held else self.tuning.poll_seconds
        state.full_until = now + poll * random.uniform(0.5, 1.0)
        self._want(state, now)
        return False

    def _read(self, state: _Principal, now: float) -> tuple[dict[int, dict[str, Any]], set[str], set[str]]:
        """Slot rows by number, instances wanting a slot, instances holding one."""
        rows: dict[int, dict[str, Any]] = {}
        wanting: set[str] = set()
        entities = list(self._table().query_entities(
            "PartitionKey eq @pk", parameters={"pk": state.key}, retry_total=0))
        # Believability is judged by the clock after the answer: rows renewed while this read waited
        # (a loaded host can wait seconds) lie further ahead of `now` than any row's life.
        seen = max(now, self._clock())
        for entity in entities:
            rk = entity["RowKey"]
            place = where(TABLE_LEASES, state.key, rk)
            index = slot_number(rk, self.max_concurrency)
            if index is not None:
                row = slot_row(entity, seen, self.tuning.slot_ttl_seconds, self.rate.limit, place,
                               self._warn)
                row["etag"] = entity.metadata["etag"]
                rows[index] = row
            elif rk.startswith("want-"):
                expires = read_expiry(entity.get("expires"), seen, self.tuning.want_ttl_seconds)
                if expires is None:
                    self._warn(place, f"expires {str(entity.get('expires'))[:40]!r}")
                elif expires > now:
                    wanting.add(rk[5:])
            else:
                self._warn(place, "not a slot or want row of the budget")
        holders = {r["holder"] for r in rows.values() if r["holder"] and r["expires"] > now}
        return rows, wanting, holders

    def _take(self, state: _Principal, index: int, row: dict[str, Any] | None,
              now: float) -> _Slot | None:
        ring = row["ring"] if row else {}
        ring, granted = self.rate.charge(ring, now, self.tuning.block)
        entity = self._entity(state, index, ring, now)
        table = self._table()
        etag = (insert_entity(table, entity, retry_total=0) if row is None
                else replace_if_match(table, entity, row["etag"], retry_total=0))
        if etag is None:
            return None
        slot = _Slot(index, etag, ring, leased_at=now, credit=granted,
                     charged_bucket=self.rate.bucket(now), last_used=now, renewed_at=now,
                     state=state)
        if not granted:
            slot.exhausted_until = self.rate.next_bucket_at(now)
        return slot

    def _write(self, state: _Principal, slot: _Slot, now: float, *, top_up: bool = False,
               give_back: bool = False) -> None:
        """Renew (plus top up the credit) or give back a held slot; a slot found taken over is
        dropped. Unused credit moves to the current bucket, so every request is counted in the
        bucket it was sent in or the one before (the window's extra bucket covers that)."""
        with state.lock:
            unused = slot.credit  # requests may still spend it while storage answers
        ring = _refund(slot.ring, slot.charged_bucket, unused)
        credit = 0
        if not give_back:
            ring, credit = self.rate.charge(ring, now,
                                            unused + (self.tuning.block if top_up else 0))
        entity = self._entity(state, slot.index, ring, now, holder="" if give_back else None)
        etag = replace_if_match(self._table(), entity, slot.etag, retry_total=0)
        if etag is None:
            log.warning("BC budget %s: slot %d was taken over (renewal too late)", state.key,
                        slot.index)
            slot.dropped, slot.credit = True, 0
            return
        with state.lock:
            slot.etag, slot.ring, slot.renewed_at = etag, ring, now
            slot.credit = max(0, credit - (unused - slot.credit))
            slot.charged_bucket = self.rate.bucket(now)

    def _entity(self, state: _Principal, index: int, ring: Ring, now: float,
                holder: str | None = None) -> dict[str, Any]:
        holder = self.instance if holder is None else holder
        return {"PartitionKey": state.key, "RowKey": f"slot-{index}", "holder": holder,
                "expires": stamp(now + self.tuning.slot_ttl_seconds if holder else now),
                "ring": json.dumps(ring, separators=(",", ":"))}

    def _want(self, state: _Principal, now: float) -> None:
        if now - state.want_written_at < self.tuning.want_ttl_seconds / 2:
            return
        self._table().upsert_entity(
            {"PartitionKey": state.key, "RowKey": f"want-{self.instance}",
             "expires": stamp(now + self.tuning.want_ttl_seconds)}, retry_total=0)
        state.want_written_at = now

    # Background: renew, give back, yield --------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:  # a process that exits cleanly frees its slots at once
                    atexit.register(self.close)
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="bc-budget", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.tuning.tick_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            for state in self._all():
                try:
                    with state.io:
                        wrote = self._tend(state, self._clock())
                except Exception as exc:  # storage, or a row nobody foresaw
                    self._degrade(exc)
                    continue
                if wrote:
                    with state.lock:
                        state.wake_all()  # topped-up credit: waiters look again
                    self._announce(everyone=True)

    def _all(self) -> list[_Principal]:
        with self._lock:
            return list(self._principals.values())

    @property
    def low_credit(self) -> int:
        """Credit left when a slot is topped up ahead of need (requests never wait for storage)."""
        return self.tuning.block // 5

    def _tend(self, state: _Principal, now: float) -> bool:
        """Give back idle and yielded slots, renew busy ones and top up those running low, and
        yield above the fair share; True if a slot was written."""
        wrote = False
        with state.lock:
            state.slots = [s for s in state.slots if not s.dropped or s.busy]
            live = [s for s in state.slots if not s.dropped]
        if live and now - state.judged_at >= self.tuning.fairness_seconds:
            state.judged_at = now
            _, wanting, holders = self._read(state, now)
            state.others_waiting = bool(wanting - {self.instance})
            keep = slots_to_keep([s.leased_at for s in live], now, self.instance, holders, wanting,
                                 self.max_concurrency, self.tuning.tenure_seconds)
            for slot in sorted(live, key=lambda s: (s.busy, s.leased_at))[:len(live) - keep]:
                slot.yielding = True
                state.cooldown_until = now + 3 * self.tuning.poll_seconds
        idle_after = (self.tuning.idle_wanted_seconds if state.others_waiting
                      else self.tuning.idle_seconds)
        for slot in live:
            with state.lock:
                idle = not slot.busy and (slot.yielding or now - slot.last_used >= idle_after)
                if idle:
                    slot.dropped = True  # no new request takes it while it goes back
            if idle:
                self._write(state, slot, now, give_back=True)
                slot.dropped = True
                wrote = True
                continue
            low = slot.credit <= self.low_credit and slot.exhausted_until <= now
            if low or now - slot.renewed_at >= self.tuning.renew_seconds:
                self._write(state, slot, now, top_up=slot.credit < self.tuning.block // 2)
                wrote = True
                if low and slot.credit <= self.low_credit and not slot.dropped:
                    slot.exhausted_until = self.rate.next_bucket_at(now)  # the window is spent
        return wrote

    def _degrade(self, exc: Exception) -> None:
        """Storage failed: drop every shared slot and use the per-process budget for a while."""
        first = self._clock() >= self._degraded_until
        self._degraded_until = self._clock() + self.tuning.degraded_seconds
        for state in self._all():
            with state.lock:
                for slot in state.slots:
                    slot.dropped = True
                state.wake_all()
        self._announce(everyone=True)
        if first:
            log.warning("BC budget: storage unavailable or the shared budget failed (%s: %s); each "
                        "instance keeps to BC's limits on its own for %.0fs (instances together may "
                        "exceed them)",
                        type(exc).__name__, str(exc)[:200], self.tuning.degraded_seconds)

    def close(self) -> None:
        """Stop the background thread and give every held slot back (best effort)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._clock() < self._degraded_until:
            return
        for state in self._all():
            with state.io:
                for slot in [s for s in state.slots if not s.dropped]:
                    try:
                        self._write(state, slot, self._clock(), give_back=True)
                    except Exception:  # best effort: the slot expires by itself
                        pass
                    slot.dropped = True
                try:
                    _delete(self._table(), state.key, f"want-{self.instance}")
                except Exception:
                    pass


def _refund(ring: Ring, bucket: int, unused: int) -> Ring:
    """Take unused credit back out of the bucket it was charged to (if still counted)."""
    if unused <= 0 or bucket not in ring:
        return ring
    refunded = dict(ring)
    refunded[bucket] = max(0, ring[bucket] - unused)
    return refunded


def _delete(table: Any, pk: str, rk: str) -> None:
    delete_if_match(table, pk, rk, "*", retry_total=0)  # no back-off: close() runs at process exit

