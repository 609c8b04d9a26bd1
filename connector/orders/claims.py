"""The `bcorders` claims table of Send Created Sales Order: one row per connection, company and key
(or message id) saying which delivery creates the order and how it ended (`insert_entity` lets only
one delivery win; ETags settle every later change). The decisions over a claim are pure functions.
Rows are read through the row layer's checks (`connector/rows.py`): snake_case columns and ISO text
times (rows written before with camelCase columns and typed times are read too); a row whose owner,
state or claim time does not validate (a time in the future included) counts as a claim abandoned
long ago, so the next delivery takes it over (asking BC first when there is a key).
"""
from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from connector.errors import ConnectorError
from connector.retry import RetryPolicy
from connector.rows import (
    CLOCK_SKEW_SECONDS,
    RowWarnings,
    column,
    read_count,
    read_datetime,
    read_text,
    stamp,
    where,
)
from connector.storage import delete_if_match, insert_entity, read_entity, replace_if_match, table_key
from connector.table_batches import TableBatches

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(minutes=15)  # > functionTimeout (10 min): an older claim has no live owner
CLAIM_WAIT_SECONDS = 20.0  # how long a second delivery of a key waits for the first one
MAX_DEFER_SECONDS = 7 * 24 * 3600  # longest queue message visibility timeout


class ClaimBusy(ConnectorError):
    """Another delivery with the same key is still creating its order; try again later."""

    http_status = 409


class ClaimState(enum.StrEnum):
    CREATING = "creating"  # the owner is creating the order now
    UNCERTAIN = "uncertain"  # the owner's POST may have been carried out; it will look again
    CREATED = "created"  # done: the owner created the order
    DUPLICATE = "duplicate"  # done: the owner found the order already in BC


DONE = (ClaimState.CREATED, ClaimState.DUPLICATE)


@dataclass(frozen=True)
class Claim:
    """A row of `bcorders`: who creates the order for a key (or message), and how it ended."""

    owner: str  # queue message id
    state: ClaimState
    claimed_at: datetime
    sales_order_id: str = ""
    number: str = ""
    uncertain_since: datetime | None = None  # when the last ambiguous POST failed
    ambiguous_posts: int = 0  # POSTs so far whose outcome was unknown

    @property
    def order(self) -> dict[str, str]:
        return {"id": self.sales_order_id, "number": self.number}


class ClaimStep(enum.Enum):
    CLAIM = "claim"  # no claim: insert one
    RESUME = "resume"  # our own earlier attempt left it unfinished: take it back
    TAKE_OVER = "take-over"  # abandoned by another owner (older than CLAIM_TTL)
    REPEAT = "repeat"  # we finished earlier: send the same result again
    DUPLICATE = "duplicate"  # another message finished it
    WAIT = "wait"  # another message is working on it now
    DEFER = "defer"  # another message's POST may still be committed: come back after its window


LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def claim_of(row: Mapping[str, Any], now: datetime, warn: Callable[[str, str], None],
             place: str = "bcorders") -> Claim:
    """The claim a `bcorders` row records, as believed. A row whose owner, state or claim time does
    not validate (or lies in the future) is an UNCERTAIN claim of nobody made long ago: abandoned, so
    the next delivery takes it over, asking BC first when there is a key."""
    latest = now + timedelta(seconds=CLOCK_SKEW_SECONDS)
    owner = read_text(column(row, "owner"))
    state = column(row, "state")
    claimed_at = read_datetime(column(row, "claimed_at", "claimedAt"))
    if (owner is None or state not in set(ClaimState) or claimed_at is None
            or claimed_at > latest):
        warn(place, f"owner {str(column(row, 'owner'))[:40]!r}, state {str(state)[:20]!r}, "
                    f"claimed at {str(column(row, 'claimed_at', 'claimedAt'))[:40]!r}")
        return Claim(owner="", state=ClaimState.UNCERTAIN, claimed_at=LONG_AGO)
    uncertain_since = read_datetime(column(row, "uncertain_since", "uncertainSince"))
    if uncertain_since is not None and uncertain_since > latest:
        uncertain_since = None
    return Claim(owner=owner, state=ClaimState(state), claimed_at=claimed_at,
                 sales_order_id=read_text(column(row, "sales_order_id", "salesOrderId")) or "",
                 number=read_text(column(row, "number")) or "", uncertain_since=uncertain_since,
                 ambiguous_posts=read_count(column(row, "ambiguous_posts", "ambiguousPosts"), 1000) or 0)


def next_claim_step(claim: Claim | None, message_id: str, now: datetime) -> ClaimStep:
    """What a delivery does with the claim it found."""
    if claim is None:
        return ClaimStep.CLAIM
    if claim.state in DONE:
        return ClaimStep.REPEAT if claim.owner == message_id else ClaimStep.DUPLICATE
    if claim.owner == message_id:
        return ClaimStep.RESUME
    if now - claim.claimed_at > CLAIM_TTL:
        return ClaimStep.TAKE_OVER
    return ClaimStep.DEFER if claim.state is ClaimState.UNCERTAIN else ClaimStep.WAIT


def ambiguous_since(claim: Claim | None) -> datetime | None:
    """Since when a POST for this claim may still be committed by BC: the last ambiguous POST of an
    UNCERTAIN claim, or the start of a CREATING claim whose owner vanished (maybe mid-request)."""
    if claim is None or claim.state in DONE:
        return None
    if claim.state is ClaimState.CREATING:
        return claim.claimed_at
    return claim.uncertain_since or claim.claimed_at


def defer_seconds(since: datetime | None, now: datetime, window: float) -> int:
    """Whole seconds to wait before POSTing again (0: go ahead), capped at a queue message's 7 days."""
    if since is None:
        return 0
    left = (since + timedelta(seconds=window) - now).total_seconds()
    return min(max(math.ceil(left), 0), MAX_DEFER_SECONDS)


@dataclass
class HeldClaim:
    """A claim this delivery owns: its row, ETag and how it was obtained."""

    row_key: str
    etag: str
    step: ClaimStep
    previous: Claim | None = None  # the unfinished claim it replaced, if any

    @property
    def ambiguous_since(self) -> datetime | None:
        return ambiguous_since(self.previous)

    @property
    def ambiguous_posts(self) -> int:
        return self.previous.ambiguous_posts if self.previous else 0


class OrderClaims:
    """The `bcorders` rows of one connection and company (partition)."""

    def __init__(self, table: TableClient, connection: str, company_id: str, *,
                 wait_seconds: float = CLAIM_WAIT_SECONDS, scope: str = "",
                 batches: TableBatches | None = None):
        self.table = table
        # the first claim and the settlement, the writes of every order, go out with the other
        # deliveries' of this process under load (one transaction); the rare paths go alone
        self.batches = batches
        self.wait_seconds = wait_seconds
        # `scope`: a declared command's own keys (sales orders have none, as before commands existed)
        self.partition = table_key(f"{connection}|{company_id}" + (f"|{scope}" if scope else ""))
        self._warn = RowWarnings()

    @staticmethod
    def row_key(key: str | None, message_id: str) -> str:
        """`key|<KEY>` (External Document No. is a Code field: BC upper-cases it) or `message|<id>`."""
        return table_key(f"key|{key.upper()}" if key is not None else f"message|{message_id}")

    def read(self, row_key: str) -> tuple[Claim, str] | None:
        found = read_entity(self.table, self.partition, row_key)
        if found is None:
            return None
        entity, etag = found
        place = where(self.table, self.partition, row_key)
        return claim_of(entity, datetime.now(UTC), self._warn, place), etag

    def _entity(self, row_key: str, claim: Claim, key: str | None) -> dict[str, Any]:
        entity = {"PartitionKey": self.partition, "RowKey": row_key, "owner": claim.owner,
                  "state": claim.state.value, "claimed_at": stamp(claim.claimed_at),
                  "sales_order_id": claim.sales_order_id, "number": claim.number,
                  "external_document_number": key or "", "ambiguous_posts": claim.ambiguous_posts}
        if claim.uncertain_since is not None:
            entity["uncertain_since"] = stamp(claim.uncertain_since)
        return entity

    def acquire(self, key: str | None, message_id: str) -> HeldClaim | Claim:
        """Own the claim (a `HeldClaim`), or the claim to answer from or defer behind (`REPEAT`,
        `DUPLICATE` or `DEFER` steps, returned as the `Claim`). Waits for another owner up to
        `wait_seconds`, then raises ClaimBusy."""
        row_key = self.row_key(key, message_id)
        # Insert first: almost every key is new, so one round trip claims it; a row already there
        # (a conflict) is read and decided on below.
        first = Claim(message_id, ClaimState.CREATING, datetime.now(UTC))
        entity = self._entity(row_key, first, key)
        etag = (self.batches.create(self.table, entity) if self.batches
                else insert_entity(self.table, entity))
        if etag:
            return HeldClaim(row_key, etag, ClaimStep.CLAIM)
        waiting = RetryPolicy(max_retries=1_000, backoff_seconds=0.1, backoff_max_seconds=1.0,
                              total_sleep_max_seconds=self.wait_seconds).start()
        while True:
            found = self.read(row_key)
            claim = found[0] if found else None
            now = datetime.now(UTC)
            step = next_claim_step(claim, message_id, now)
            carried: dict[str, Any] = {"uncertain_since": claim.uncertain_since,
                       "ambiguous_posts": claim.ambiguous_posts} if claim else {}
            mine = self._entity(row_key, Claim(message_id, ClaimState.CREATING, now, **carried), key)
            if step is ClaimStep.WAIT:
                pause = waiting.next_delay()
                if pause is None:
                    raise ClaimBusy(f"another message with externalDocumentNumber {key!r} is still "
                                    "being created")
                time.sleep(pause)
                continue
            if claim is not None and step in (ClaimStep.REPEAT, ClaimStep.DUPLICATE, ClaimStep.DEFER):
                return claim
            if found is None:
                etag = insert_entity(self.table, mine)
            else:
                etag = replace_if_match(self.table, mine, found[1])
            if etag:
                return HeldClaim(row_key, etag, step, claim)
            # lost a race for the row: look again

    def finish(self, held: HeldClaim, key: str | None, message_id: str, state: ClaimState,
               order: Mapping[str, Any], uncertain_since: datetime | None = None,
               ambiguous_posts: int = 0) -> None:
        """Record how it ended (CREATED/DUPLICATE with the order) or that it is UNCERTAIN (since the
        last ambiguous POST), owned by `message_id`."""
        claim = Claim(owner=message_id, state=state, claimed_at=datetime.now(UTC),
                      sales_order_id=str(order.get("id", "")), number=str(order.get("number", "")),
                      uncertain_since=uncertain_since, ambiguous_posts=ambiguous_posts)
        entity = self._entity(held.row_key, claim, key)
        etag = (self.batches.replace(self.table, entity, held.etag) if self.batches
                else replace_if_match(self.table, entity, held.etag))
        if etag is None:
            log.warning("sales order claim %s was taken over before it was settled", held.row_key)
        else:
            held.etag = etag

    def release(self, held: HeldClaim) -> None:
        """Drop the claim: nothing was created, another delivery may try."""
        delete_if_match(self.table, self.partition, held.row_key, held.etag)
