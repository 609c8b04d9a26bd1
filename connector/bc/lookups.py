"""Batched look-ups by key: the deliveries of one process that are about to ask BC whether a key
exists share one GET, `$filter=<field> eq 'A' or <field> eq 'B' …` (an OR on one field, which BC
allows), sealed before its query outgrows a safe URL length.

A `KeyLookup` serves one entity set and key field of one company through one BC client (e.g.
`salesOrders` by `externalDocumentNumber`); `KeyLookups` (owned by the runtime) hands them out.
A delivery that may soon look a key up says so when it starts (`KeyLookups.coming()`, a `Ticket`): the
first key of a batch waits until every delivery said to be coming has joined a batch (or given up), at
most `linger` seconds, so a burst of deliveries (the host hands them out by the dozen) costs one GET
while a lone one waits for nobody. The GET takes its principal's next free BC slot before the requests
already waiting for one (`first_in_line`): the orders it unblocks then reach BC while the writes queued
before them still keep its slots busy. While a GET of the same lookup is at BC, the next batch keeps
collecting (up to 4 × `linger`), and GETs of one lookup start far enough apart for about TARGET_BATCH
keys each at the rate keys arrive (at least `spacing`, at most 1 s): under load the GETs take turns and
grow instead of multiplying (45 orders a second cost about 1.07 requests each), while a lone order after
a quiet spell waits for nothing. Every waiter of a batch gets its result, or the batch's error raised
in its own thread, as a single GET would.
Matching is by the key upper-cased (BC stores Code fields upper-cased).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from connector.bc.budget import first_in_line

if TYPE_CHECKING:
    from connector.bc.client import BCClient

Entity = dict[str, Any]

MAX_FILTER_CHARS = 1800  # the `$filter` parameter URL-encoded: with the path, well under 2,048
LINGER_SECONDS = 0.1  # the first key of a batch waits at most this long for announced ones
SPACING_SECONDS = 0.15  # GETs of one lookup start at least this far apart (a full batch goes at once)
MAX_SPACING_SECONDS = 1.0  # ... and at most this far while keys stream in
TARGET_BATCH = 12  # keys per GET the spacing aims at, from the recent arrival rate
RATE_WINDOW_SECONDS = 5.0


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with single quotes doubled (BC's escaping)."""
    return "'" + value.replace("'", "''") + "'"


def key_filter(key_field: str, keys: Iterable[str]) -> str:
    """`<field> eq 'A' or <field> eq 'B' …`."""
    return " or ".join(f"{key_field} eq {odata_string(k)}" for k in keys)


def encoded_length(key_field: str, keys: Iterable[str]) -> int:
    """Characters the `$filter` of these keys takes in a URL (as `requests` encodes it)."""
    return len(urlencode({"$filter": key_filter(key_field, keys)}))


@dataclass(eq=False)
class _Batch:
    key_field: str
    max_chars: int
    keys: list[str] = field(default_factory=list)
    wanted: set[str] = field(default_factory=set)  # upper-cased
    done: threading.Event = field(default_factory=threading.Event)
    found: dict[str, Entity] = field(default_factory=dict)  # upper-cased key -> first entity
    error: BaseException | None = None

    def add(self, key: str) -> bool:
        """Take `key` in (True), or False when it would make the query too long."""
        if key.upper() in self.wanted:
            return True
        if self.keys and encoded_length(self.key_field, [*self.keys, key]) > self.max_chars:
            return False
        self.keys.append(key)
        self.wanted.add(key.upper())
        return True


class Ticket:
    """A delivery that may look a key up soon: batches wait for it (see `KeyLookups.coming`)."""

    def __init__(self, lookups: KeyLookups):
        self._lookups = lookups
        self.open = True

    def cancel(self) -> None:
        """No look-up after all (or it is done): batches stop waiting for this one. Idempotent."""
        self._lookups._leave(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class KeyLookup:
    """Look-ups of one entity set by one key field, batched across this process's threads."""

    def __init__(self, lookups: KeyLookups, bc: BCClient, path: str, key_field: str, select: str = ""):
        self.bc, self.path, self.key_field, self.select = bc, path, key_field, select
        self.linger, self.max_chars, self.spacing = lookups.linger, lookups.max_chars, lookups.spacing
        self._lookups = lookups
        self._cond = lookups._cond
        self._open: _Batch | None = None
        self._sending = 0  # batches of this lookup at BC now
        self._last_sent = float("-inf")  # when the last batch was sealed (monotonic)
        self._arrivals: deque[float] = deque()  # when keys were asked for, over RATE_WINDOW_SECONDS
        self.gets = 0  # batched GETs sent (for tests and figures)

    def coming(self) -> Ticket:
        """Announce a look-up (as `KeyLookups.coming`)."""
        return self._lookups.coming()

    def find(self, key: str, ticket: Ticket | None = None) -> Entity | None:
        """The entity whose key field equals `key` (upper-cased), or None; raises what the GET raised."""
        with self._cond:
            now = time.monotonic()
            self._arrivals.append(now)
            while self._arrivals[0] < now - RATE_WINDOW_SECONDS:
                self._arrivals.popleft()
            if ticket is not None and ticket.open:
                ticket.open = False
                self._lookups._coming -= 1
            batch = self._open
            lead = batch is None or not batch.add(key)
            if lead:
                batch = self._open = _Batch(self.key_field, self.max_chars)  # a full one is sealed
                batch.add(key)
            self._cond.notify_all()
            assert batch is not None
            if lead:
                started = time.monotonic()
                while self._open is batch:
                    now = time.monotonic()
                    waited, since_last = now - started, now - self._last_sent
                    if self._lookups._coming > 0 and waited < self.linger:
                        self._cond.wait(self.linger - waited)
                    elif self._sending and waited < 4 * self.linger:
                        self._cond.wait(4 * self.linger - waited)
                    elif since_last < self._spacing():
                        self._cond.wait(self._spacing() - since_last)
                    else:
                        break
                if self._open is batch:
                    self._open = None
                self._sending += 1
                self._last_sent = time.monotonic()
        if lead:
            self._run(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.found.get(key.upper())

    def _spacing(self) -> float:
        """How far apart GETs start (callers hold the lock): TARGET_BATCH keys' worth of the recent
        arrival rate, within [`spacing`, MAX_SPACING_SECONDS]."""
        rate = len(self._arrivals) / RATE_WINDOW_SECONDS
        return min(MAX_SPACING_SECONDS, max(self.spacing, TARGET_BATCH / rate if rate else 0.0))

    def _run(self, batch: _Batch) -> None:
        try:
            params = {"$filter": key_filter(self.key_field, batch.keys)}
            if self.select:
                params["$select"] = self.select
            self.gets += 1
            with first_in_line():  # the batch's orders wait on it, not the other way round
                for entity in self.bc.iter_entities(self.path, params):
                    found = str(entity.get(self.key_field, "")).upper()
                    if found in batch.wanted:
                        batch.found.setdefault(found, entity)
        except BaseException as exc:  # every waiter raises it, as its own GET would have
            batch.error = exc
        finally:
            batch.done.set()
            with self._cond:
                self._sending -= 1
                self._cond.notify_all()


class KeyLookups:
    """The `KeyLookup`s of a process, one per BC client, company, entity set, key field and select."""

    def __init__(self, linger: float = LINGER_SECONDS, max_chars: int = MAX_FILTER_CHARS,
                 spacing: float = SPACING_SECONDS):
        self.linger, self.max_chars, self.spacing = linger, max_chars, spacing
        self._lookups: dict[tuple[int, str, str, str, str, str], KeyLookup] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition()  # shared by every lookup: one count of deliveries coming
        self._coming = 0

    def coming(self) -> Ticket:
        """Announce a delivery that may look a key up soon (in any lookup of this process): a batch
        being formed waits for it, up to `linger`, until it looks up or cancels its ticket."""
        with self._cond:
            self._coming += 1
        return Ticket(self)

    def _leave(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.open:
                ticket.open = False
                self._coming -= 1
                self._cond.notify_all()

    def get(self, bc: BCClient, company_id: str, entity_set: str, key_field: str,
            select: str = "", *, api: str = "v2.0") -> KeyLookup:
        """The lookup of `entity_set` (of the standard API, or of a custom API's route) by `key_field`
        in a company (InvalidKey unless a GUID)."""
        ident = (id(bc), company_id.lower(), api, entity_set, key_field, select)
        with self._lock:
            lookup = self._lookups.get(ident)
            if lookup is None or lookup.bc is not bc:
                lookup = self._lookups[ident] = KeyLookup(
                    self, bc, bc.api_path(api, company_id, entity_set), key_field, select)
            return lookup
