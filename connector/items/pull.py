"""Schedule Pull Items: every item of a company as one `bc.item.pulled` event, incrementally.

Passes read `items` (then the changed `itemVariants`) page by page through the one pager, checkpoint
a `ReadCursor` in `bccursors` after each page's events are queued, and resume there after a stop or a
crash; a lease per connection and company keeps runs from overlapping. A requested run that stops on
its time budget queues one continuation. The whole story: docs/architecture.md, "Resumable reads".
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from connector.bc.client import BCClient
from connector.bc.companies import CompanyNotFound
from connector.bc.errors import TokenUnavailable
from connector.bc.pager import ForeignLink
from connector.bc.timestamps import utc_now
from connector.connections import for_each_connection, results_or_raise
from connector.cursors import LONGEST_TEXT, CursorTable, ReadCursor, ReadInterrupted, newest_modified
from connector.errors import ConnectorError
from connector.events import ITEM_PULLED, EventPublisher, cloud_event
from connector.leases import LEASE_SECONDS, Lease
from connector.settings import (
    QUEUE_ITEM_PULLS,
    QUEUE_ITEM_PULLS_POISON,
    QUEUE_ITEMS,
    ConnectionSettings,
    Settings,
    UnknownConnection,
)
from connector.signing import UnsignedMessage, open_json, queue_signer, seal_json
from connector.storage import Storage

log = logging.getLogger(__name__)

PHASE_ITEMS = "items"
PHASE_VARIANTS = "variants"
ID_BATCH = 40  # ids per `id eq … or …` filter: about 2.5 KB of URL, well inside BC's limits
# Keys (12 hex characters and a comma each) remembered for the next overlap; more: re-emitted. The
# cursor row does not believe a longer text than LONGEST_TEXT (4,000 keys were 52,000 characters: read
# back as absent, and past a table string's 32 K characters, which Azure refuses).
MAX_RECENT = LONGEST_TEXT // 13
Entity = dict[str, Any]


# ----------------------------------------------------------------------------------------- pure core

def items_query(since: str | None, with_variants: bool) -> dict[str, str]:
    """Query of a pass's item read: changed since `since` (everything if None), variants expanded."""
    params = {"$filter": f"lastModifiedDateTime gt {since}"} if since else {}
    if with_variants:
        params["$expand"] = "itemVariants"
    return params


def variants_query(since: str) -> dict[str, str]:
    """Query of a pass's variant read: the variants changed since `since`."""
    return {"$filter": f"lastModifiedDateTime gt {since}"}


def items_by_id_query(item_ids: Iterable[str], since: str) -> dict[str, str]:
    """Items by id (OR on one field, as BC allows) with their variants — except those changed since
    `since`, which the item read of the same pass already emitted."""
    ids = " or ".join(f"id eq {i}" for i in item_ids)
    return {"$filter": f"({ids}) and lastModifiedDateTime le {since}", "$expand": "itemVariants"}


def page_latest(entities: Iterable[Entity]) -> datetime | None:
    """The newest `lastModifiedDateTime` of a page, expanded variants included."""
    return newest_modified(time for entity in entities for time in (
        entity.get("lastModifiedDateTime"),
        *(v.get("lastModifiedDateTime") for v in entity.get("itemVariants") or ())))


def items_read(state: ReadCursor, with_variants: bool) -> ReadCursor:
    """The item read of a pass is done: on to the variant read (incremental passes with variants
    on), or the pass is complete."""
    if with_variants and state.cursor is not None:
        return state.next_phase(PHASE_VARIANTS)
    return state.complete()


def cursor_name(company_id: str) -> str:
    """The RowKey of a company's item pull in `bccursors`."""
    return f"items:{company_id}"


def item_event(connection: str, company_id: str, item: Entity, with_variants: bool) -> Entity:
    """The `bc.item.pulled` event of one item. Its id comes from the item's and its variants'
    `lastModifiedDateTime`, so a change gives a new id and a re-read of the same state the same id."""
    entity = dict(item)
    id_parts = [str(item.get("id", "")), str(item.get("lastModifiedDateTime", ""))]
    if with_variants:
        variants = list(item.get("itemVariants") or ())
        entity["itemVariants"] = variants
        id_parts += sorted(f"{v.get('id')}@{v.get('lastModifiedDateTime', '')}" for v in variants)
    else:
        entity.pop("itemVariants", None)
    return cloud_event(event_type=ITEM_PULLED, connection=connection, company_id=company_id,
                       entity=entity, id_parts=id_parts)


def event_key(event_id: str) -> str:
    """A short key of an event id, as remembered in the cursor row."""
    return hashlib.blake2s(event_id.encode(), digest_size=6).hexdigest()


def variant_key(variant: Entity) -> str:
    """A short key of one state of a variant (its id and change time), remembered like an event's."""
    return event_key(f"variant:{variant.get('id')}@{variant.get('lastModifiedDateTime', '')}")


def recent_keys(seen: Iterable[tuple[str, datetime | None]], cursor: datetime | None,
                overlap_seconds: float) -> str:
    """The keys of the events the next pass's overlap (`gt cursor − overlap`) reads again, comma
    separated; empty when there are more than MAX_RECENT (those are then emitted again)."""
    if cursor is None:
        return ""
    start = cursor - timedelta(seconds=overlap_seconds)
    keys = sorted({key for key, latest in seen if latest is not None and latest > start})
    return ",".join(keys) if len(keys) <= MAX_RECENT else ""


class RecentItemIds:
    """The item ids of the last two pages of changed variants: an item's variants come together, so
    this window skips almost every repeat while memory stays bounded by the page size."""

    def __init__(self) -> None:
        self._previous: set[str] = set()
        self._current: set[str] = set()

    def new(self, variants: Iterable[Entity]) -> list[str]:
        """The distinct item ids of a new page of variants, in order, not seen in the window."""
        self._previous, self._current = self._current, set()
        ids: list[str] = []
        for variant in variants:
            item_id = str(variant.get("itemId") or "").lower()
            if not item_id:
                continue
            if item_id not in self._previous and item_id not in self._current:
                ids.append(item_id)
            self._current.add(item_id)
        return ids


class ItemPullRequest(BaseModel):
    """A `bc-item-pulls` message: pull this connection's items now (asked for by the route, or the
    continuation of a requested run that stopped on its time budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str = Field(min_length=1)
    requestedAt: AwareDatetime
    continuation: bool = False
    # put back behind another run whose pass began then: settled when that pass has completed
    awaiting: AwareDatetime | None = None


class BadPullRequest(ConnectorError, ValueError):
    """A `bc-item-pulls` message that is not an `ItemPullRequest`."""

    retryable = False
    http_status = 400


def request_message(settings: Settings, request: ItemPullRequest) -> str:
    """The `bc-item-pulls` message of a request, signed (`connector.signing`)."""
    signer = queue_signer(settings.token_encryption_keys, QUEUE_ITEM_PULLS)
    return seal_json(signer, request.model_dump_json())


def parse_pull_request(text: str) -> ItemPullRequest:
    """The request in a message; BadPullRequest naming every problem otherwise."""
    try:
        return ItemPullRequest.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}"
                             for e in exc.errors())
        raise BadPullRequest(f"not an item pull request ({problems})") from None


@dataclass(frozen=True)
class PullDelivery:
    """One `bc-item-pulls` delivery, read once where it enters (`ItemPullService.read_delivery`):
    the request it carries, or why it is not one (`refused`); `text` is kept for the poison queue."""

    text: str
    message_id: str
    request: ItemPullRequest | None = None
    refused: BadPullRequest | None = None


# Why a request can never run, whatever the retries: it is kept on the poison queue at once rather
# than retried maxDequeueCount times (a not-signed-in connection, or a checkpoint whose link is off
# the BC host, needs a person, not a retry).
CANNOT_RUN: tuple[type[Exception], ...] = (BadPullRequest, UnknownConnection, TokenUnavailable,
                                           CompanyNotFound, ForeignLink)


# ----------------------------------------------------------------------------------------- edges

@dataclass(frozen=True)
class PullResult:
    """What one run did for one connection/company."""

    connection: str
    company_id: str
    status: str  # finished | partial (resumes next run) | already-running
    emitted: int = 0
    pages: int = 0

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.connection, "companyId": self.company_id, "status": self.status,
                "emitted": self.emitted, "pages": self.pages, "finished": self.finished}


class ItemPull:
    """One run of the item pull for one connection and company, within a time budget."""

    def __init__(self, *, bc: BCClient, storage: Storage, events: EventPublisher,
                 connection: ConnectionSettings, company_id: str, page_size: int,
                 overlap_seconds: float, max_seconds: float,
                 now: Callable[[], datetime] = utc_now):
        self._bc = bc
        self._events = events
        self._connection = connection.name
        self._variants = connection.pull_item_variants
        self._read_only = connection.read_only_intent  # bulk reads: BC's read-only replica
        self._company_id = company_id
        self._page_size = page_size
        self._overlap = overlap_seconds
        self._max_seconds = max_seconds
        self._now = now
        self._deadline = 0.0
        self._lease = Lease(storage, f"items:{self._connection}:{company_id}")
        self._cursors = CursorTable(storage, self._connection, cursor_name(company_id), now)
        self._emitted = 0
        self._page_count = 0
        self._skip: frozenset[str] = frozenset()  # what the last pass's overlap emitted already
        self._seen: list[tuple[str, datetime | None]] = []  # this run's events: key, newest change
        self._variants_seen: set[str] = set()  # variant states this run emitted with their items

    def run(self) -> PullResult:
        """Pull until the pass completes or the time budget is spent; another runner → already-running."""
        self._deadline = time.monotonic() + self._max_seconds
        with self._lease as acquired:
            if not acquired:
                return self._result("already-running")
            finished = self._run_pass()
        result = self._result("finished" if finished else "partial")
        log.info("item pull %s/%s: %s, %d items in %d pages", self._connection, self._company_id,
                 result.status, result.emitted, result.pages)
        return result

    def _result(self, status: str) -> PullResult:
        return PullResult(self._connection, self._company_id, status, self._emitted, self._page_count)

    def _time_left(self) -> bool:
        return time.monotonic() < self._deadline

    def _run_pass(self) -> bool:
        state = self._cursors.load() or ReadCursor()
        if not state.in_pass:
            state = self._cursors.save(state.start_pass(self._now(), PHASE_ITEMS))
        self._skip = frozenset(filter(None, state.recent.split(",")))
        since = state.since(self._overlap)
        if state.phase == PHASE_ITEMS:
            items = self._bc.company_path(self._company_id, "items")
            read = self._read(state, items, items_query(since, self._variants), lambda page: page)
            if read is None:
                return False
            state = self._cursors.save(self._remember(items_read(read, self._variants)))
        if state.phase == PHASE_VARIANTS and since is not None:
            recent = RecentItemIds()
            variants = self._bc.company_path(self._company_id, "itemVariants")
            read = self._read(state, variants, variants_query(since),
                              lambda page: self._items_by_id(recent.new(self._unseen(page)), since))
            if read is None:
                return False
            self._cursors.save(self._remember(read.complete()))
        return True

    def _remember(self, state: ReadCursor) -> ReadCursor:
        """A completed pass keeps the keys of what it emitted within the next pass's overlap, so a
        scheduled pull with nothing new emits nothing."""
        if state.in_pass:
            return state
        return replace(state, recent=recent_keys(self._seen, state.cursor, self._overlap))

    def _read(self, state: ReadCursor, path: str, params: dict[str, str],
              to_items: Callable[[list[Entity]], Iterable[Entity]]) -> ReadCursor | None:
        """Page through one phase (from its checkpoint), emitting `to_items(page)` for each page;
        the state after the last page, or None when the time budget ran out first."""
        pages = self._bc.pages(path, params, page_size=self._page_size, resume_from=state.next_link,
                               prefetch=True, go_on=self._time_left, read_only=self._read_only)
        for page in pages:
            self._emit(to_items(page.entities))
            self._page_count += 1
            if not self._lease.renew():  # stop before the checkpoint: another runner took over
                raise ReadInterrupted(f"lease {self._lease.name} was lost")
            state = self._cursors.save(state.checkpoint(page.next_link, page_latest(page.entities)))
        return None if state.next_link else state

    def _unseen(self, variants: list[Entity]) -> list[Entity]:
        """The variants neither this run nor the last pass emitted in this state (id and change
        time) with their item: a variant read again in the overlap needs no item fetched for it.
        Without this, the newest variant change, always inside the overlap, cost every idle pull a
        request."""
        return [v for v in variants
                if (key := variant_key(v)) not in self._skip and key not in self._variants_seen]

    def _items_by_id(self, item_ids: list[str], since: str) -> Iterator[Entity]:
        path = self._bc.company_path(self._company_id, "items")
        for start in range(0, len(item_ids), ID_BATCH):
            query = items_by_id_query(item_ids[start:start + ID_BATCH], since)
            yield from self._bc.iter_entities(path, query, self._page_size, read_only=self._read_only)

    def _emit(self, items: Iterable[Entity]) -> None:
        """Queue the items' events, except those the last pass emitted in its overlap (same id)."""
        events = []
        for item in items:
            event = item_event(self._connection, self._company_id, item, self._variants)
            key = event_key(event["id"])
            self._seen.append((key, page_latest([item])))
            for variant in (item.get("itemVariants") or ()) if self._variants else ():
                self._variants_seen.add(variant_key(variant))
                self._seen.append((variant_key(variant), page_latest([variant])))
            if key not in self._skip:
                events.append(event)
        self._emitted += self._events.publish(QUEUE_ITEMS, events)


# ----------------------------------------------------------------------------------------- entry points

RECHECK_SECONDS = int(LEASE_SECONDS // 3)  # a request waiting behind another run is looked at again


class ItemPullService:
    """Schedule Pull Items, built once by the runtime: the timer's run over every connection, the
    route's request and the `bc-item-pulls` queue. Its collaborators: the settings, storage, the
    event publisher, and a connection's BC client and company id."""

    def __init__(self, settings: Settings, storage: Storage, events: EventPublisher, *,
                 bc: Callable[[str], BCClient], company_id: Callable[[str], str]):
        self._settings = settings
        self._storage = storage
        self._events = events
        self._bc = bc
        self._company_id = company_id

    def pull_company(self, connection: str, *, max_seconds: float | None = None) -> PullResult:
        """One run for a connection's company; `max_seconds` overrides ITEM_PULL_MAX_SECONDS."""
        settings = self._settings
        conn = settings.connection(connection)
        return ItemPull(
            bc=self._bc(conn.name), storage=self._storage, events=self._events, connection=conn,
            company_id=self._company_id(conn.name), page_size=settings.item_pull_page_size,
            overlap_seconds=settings.cursor_overlap_seconds,
            max_seconds=settings.item_pull_max_seconds if max_seconds is None else max_seconds,
        ).run()

    def pull_all(self) -> list[PullResult]:
        """The timer's run: every configured connection at once (connections not signed in are
        skipped); one connection's failure does not stop the others and is raised once all have run."""
        outcomes = for_each_connection(self._settings, self.pull_company, task="item pull")
        return results_or_raise(outcomes)

    def request_pull(self, connection: str, *, continuation: bool = False) -> ItemPullRequest:
        """Queue a pull of a configured connection on `bc-item-pulls` (UnknownConnection otherwise)."""
        name = self._settings.connection(connection).name
        request = ItemPullRequest(connection=name, requestedAt=utc_now(), continuation=continuation)
        self._storage.sender(QUEUE_ITEM_PULLS).send(request_message(self._settings, request))
        return request

    def handle_pull_request(self, text: str, message_id: str) -> None:
        """Run the pull a `bc-item-pulls` message's text asks for (`handle_delivery`)."""
        self.handle_delivery(self.read_delivery(text, message_id))

    def read_delivery(self, text: str, message_id: str) -> PullDelivery:
        """The typed delivery of a message's text: the only place the text is read."""
        try:
            return PullDelivery(text, message_id, request=parse_pull_request(self._opened(text)))
        except BadPullRequest as exc:
            return PullDelivery(text, message_id, refused=exc)

    def handle_delivery(self, delivery: PullDelivery) -> None:
        """Run the pull a `bc-item-pulls` delivery asks for. A request that can never run
        (`CANNOT_RUN`) is copied to `bc-item-pulls-poison` with an error log; any other failure is
        raised, so the host retries it and finally moves it to the poison queue. While another run
        holds the lease, the request waits on the queue (`_wait_on_queue`) until a completed pass
        covers it: if that run dies, its lease runs out within LEASE_SECONDS and the request runs."""
        text, message_id = delivery.text, delivery.message_id
        try:
            if delivery.request is None:
                raise delivery.refused or BadPullRequest("not an item pull request")
            request = delivery.request
            if request_covered(self.pull_state(request.connection), request):
                log.info("item pull request %s (%s): a pass begun since then has completed and covers it",
                         message_id, request.connection)
                return
            result = self._pull_on_request(request.connection)
            if result.finished and not request_covered(self.pull_state(request.connection), request):
                # the pass completed was one resumed from before the request (a run that died): one more
                result = self._pull_on_request(request.connection)
        except CANNOT_RUN as exc:
            self._storage.sender(QUEUE_ITEM_PULLS_POISON).send(text)
            log.error("item pull request %s cannot run: %s; kept on %s (replay it once fixed)",
                      message_id, exc, QUEUE_ITEM_PULLS_POISON)
            return
        except ReadInterrupted as exc:
            self._wait_on_queue(request, message_id, f"stopped, another runner took over ({exc})")
            return
        if result.status == "already-running":
            self._wait_on_queue(request, message_id, "another run is pulling")
        elif result.status == "partial":
            log.info("item pull request %s (%s): time budget spent, continuation queued", message_id,
                     result.connection)

    def pull_state(self, connection: str) -> ReadCursor | None:
        """Where the item pull of a connection's company stands (None: it never ran)."""
        conn = self._settings.connection(connection)
        return CursorTable(self._storage, conn.name, cursor_name(self._company_id(conn.name))).load()

    def _opened(self, text: str) -> str:
        """The request the connector signed (`seal_json`); BadPullRequest when unsigned or forged."""
        try:
            return open_json(queue_signer(self._settings.token_encryption_keys, QUEUE_ITEM_PULLS), text)
        except UnsignedMessage as exc:
            raise BadPullRequest(f"not an item pull request the connector queued: {exc}") from None

    def _pull_on_request(self, connection: str) -> PullResult:
        """A requested run within ITEM_PULL_MAX_SECONDS (`already-running` if another runner holds
        the lease); if this one stops on its budget with work left, one continuation is queued."""
        result = self.pull_company(connection)
        if result.status == "partial":
            self.request_pull(connection, continuation=True)
        return result

    def _wait_on_queue(self, request: ItemPullRequest, message_id: str, why: str) -> None:
        """Put the request back on `bc-item-pulls`, visible again in RECHECK_SECONDS and awaiting the
        pass under way: it is settled only once that pass has completed (or a later one), so a run
        that dies loses no request; its lease runs out within LEASE_SECONDS and the request runs."""
        state = self.pull_state(request.connection)
        awaiting = state.run_started if state is not None and state.in_pass else None
        waiting = request.model_copy(update={"awaiting": awaiting})
        self._storage.sender(QUEUE_ITEM_PULLS).send(request_message(self._settings, waiting),
                                                    visibility_timeout=RECHECK_SECONDS)
        log.info("item pull request %s (%s): %s; it waits on %s and is looked at again in %d s",
                 message_id, request.connection, why, QUEUE_ITEM_PULLS, RECHECK_SECONDS)


def request_covered(state: ReadCursor | None, request: ItemPullRequest) -> bool:
    """Whether the request's work is done: a pass that began after it was made has completed
    (requests made on every instance at once run once, not once each), or the pass of the run it
    waited behind (`awaiting`); for a continuation, the pass it continues (no pass under way)."""
    if state is None:
        return False
    if request.continuation:
        return not state.in_pass
    return state.covers(request.requestedAt) or (
        request.awaiting is not None and state.last_pass_started is not None
        and state.last_pass_started >= request.awaiting)
