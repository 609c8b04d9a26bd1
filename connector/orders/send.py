"""Send Created Sales Order: a `sales-orders` message becomes one BC sales order, header and lines
created together in one deep-insert `POST companies({id})/salesOrders` (bc-api.md §4), and exactly
one message on `sales-order-results`.

Idempotency differs with and without a key:

* With `externalDocumentNumber` (the key) no second order is ever created for it. A claim row in
  `bcorders` (one per connection, company and key; `insert_entity` lets only one worker win) stops
  two deliveries from creating at once; the others wait and then answer `duplicate` (behind an
  `uncertain` claim, see below, they are deferred past the owner's window instead). The winner asks
  BC (`salesOrders?$filter=externalDocumentNumber eq '…'`) before it creates, and again after an
  ambiguous failure (timeout, 500/502/504 after sending), so an order BC committed is found, never
  created twice. Ambiguous and still not found: BC may still be carrying the POST out (its operation
  timeout is 8 minutes) and commit it later, so the claim stays `uncertain` and the message is
  deferred, not retried: a copy of its text goes back on `sales-orders`, invisible until
  `SALES_ORDER_AMBIGUITY_SECONDS` after the ambiguous POST, and this delivery ends without a result.
  The copy asks BC again and POSTs only if the order is still not there (after as many ambiguous
  POSTs as the host has deliveries it fails with `OutcomeUnknown` instead).
* Without a key there is nothing to ask BC, so the record is only the queue message id (best
  effort): a redelivered message that already created its order answers `created` again, and a POST
  whose outcome is unknown is not repeated but failed (`OutcomeUnknown`) and kept on the poison queue
  for an operator to check BC first.

Failures: permanent ones (invalid message, BC 4xx business errors, unknown connection, company, item
or variant) fail at once: a `failed` result, the original text on `sales-orders-poison`, and a normal
return so the host does not retry. Transient ones (429/5xx/timeouts, no token, a busy claim) raise so
the host retries; on the last delivery the `failed` result is written first and the host moves the
original to `-poison` itself.
"""
from __future__ import annotations

import enum
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from azure.data.tables import TableClient

from connector.bc.client import BCClient
from connector.bc.companies import CompanyNotFound
from connector.bc.errors import BCError, TokenUnavailable
from connector.orders.schema import (
    OrderRejected,
    ResultError,
    SalesOrderLineMessage,
    SalesOrderMessage,
    SalesOrderResult,
    parse_order,
)
from connector.settings import (
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_SALES_ORDERS,
    QUEUE_SALES_ORDERS_POISON,
    TABLE_ORDERS,
    UnknownConnection,
)
from connector.storage import delete_if_match, insert_entity, read_entity, replace_if_match, table_key

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
CLAIM_TTL = timedelta(minutes=15)  # > functionTimeout (10 min): an older claim has no live owner
CLAIM_WAIT_SECONDS = 20.0  # how long a second delivery of a key waits for the first one
ITEM_CACHE_SECONDS = 600.0
MAX_ECHOED_KEY = 1000  # a longer (invalid) key is not echoed: the result must fit in a queue message
MAX_DEFER_SECONDS = 7 * 24 * 3600  # longest queue message visibility timeout
DEFER_MARGIN_SECONDS = 5  # a message deferred behind an uncertain claim returns this long after its window

Status = Literal["created", "duplicate", "failed"]


# ------------------------------------------------------------------------------------ deliveries

@dataclass(frozen=True)
class OrderDelivery:
    """One delivery of a queue message, as plain values."""

    text: str
    message_id: str
    dequeue_count: int
    max_dequeue_count: int

    @property
    def last_attempt(self) -> bool:
        """After this attempt the host moves the message to `-poison` if it fails."""
        return self.dequeue_count >= self.max_dequeue_count


@functools.cache
def host_max_dequeue_count() -> int:
    """`extensions.queues.maxDequeueCount` of host.json (the host's default 5 if absent)."""
    config = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    return int(config.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5))


class ClaimBusy(Exception):
    """Another delivery with the same key is still creating its order; try again later."""


@dataclass(frozen=True)
class Deferral:
    """The order's outcome is still unknown: a copy of the message waits on the queue until `until`."""

    key: str
    message_id: str  # the copy's id (the claim is the copy's when this delivery owned it)
    until: datetime


# ------------------------------------------------------------------------------------ pure decisions

def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help: fail the message now instead of letting the host retry."""
    if isinstance(exc, OrderRejected | UnknownConnection | CompanyNotFound):
        return True
    if isinstance(exc, BCError):
        return not exc.retryable
    return False


def failure_error(exc: BaseException) -> ResultError:
    """The `error` of a failed result: a stable code and a message naming the problem."""
    if isinstance(exc, OrderRejected):
        return ResultError(code=exc.code, message=exc.message)
    if isinstance(exc, BCError):
        return ResultError(**exc.as_dict())
    named = (UnknownConnection, CompanyNotFound, TokenUnavailable, ClaimBusy)
    if isinstance(exc, named):
        return ResultError(code=type(exc).__name__, message=str(exc))
    return ResultError(code="InternalError", message=f"{type(exc).__name__}: {exc}")


def key_hint(text: str) -> str | None:
    """The `externalDocumentNumber` of a message that may be invalid, so a failed result can name it."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    key = data.get("externalDocumentNumber") if isinstance(data, dict) else None
    return key if isinstance(key, str) and len(key) <= MAX_ECHOED_KEY else None


def order_result(status: Status, key: str | None, order: Mapping[str, Any] | None = None,
                 error: ResultError | None = None) -> SalesOrderResult:
    """A result message; `order` is BC's order (or a claim's record of it)."""
    return SalesOrderResult(
        externalDocumentNumber=key, status=status,
        salesOrderId=str(order["id"]) if order else None,
        number=str(order["number"]) if order else None, error=error,
    )


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def variant_wanted(lines: Iterable[SalesOrderLineMessage]) -> set[tuple[str, str]]:
    """(item no., variant code) pairs to resolve, upper-cased like BC's Code fields."""
    return {(line.item_number.upper(), line.variantCode.upper())
            for line in lines if line.variantCode is not None and line.item_number is not None}


def deep_insert_body(order: SalesOrderMessage, variant_ids: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The body of `POST .../salesOrders`: BC fields only, conveniences resolved, lines inline with no
    `documentId` (and `sequence` only where given, bc-api.md §4)."""
    body = order.model_dump(mode="json", exclude_none=True,
                            exclude={"connection", "company", "salesOrderLines"})
    lines = []
    for line in order.salesOrderLines:
        out = line.model_dump(mode="json", exclude_none=True, exclude={"itemNumber", "variantCode"})
        if line.itemNumber is not None:
            out.update(lineType="Item", lineObjectNumber=line.itemNumber)
        if line.variantCode is not None and line.item_number is not None:
            out["itemVariantId"] = variant_ids[(line.item_number.upper(), line.variantCode.upper())]
        lines.append(out)
    if lines:
        body["salesOrderLines"] = lines
    return body


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


# ------------------------------------------------------------------------------------ claims (Table Storage)

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

    def __init__(self, table: TableClient, connection: str, company_id: str):
        self.table = table
        self.partition = table_key(f"{connection}|{company_id}")

    @staticmethod
    def row_key(key: str | None, message_id: str) -> str:
        """`key|<KEY>` (External Document No. is a Code field: BC upper-cases it) or `message|<id>`."""
        return table_key(f"key|{key.upper()}" if key is not None else f"message|{message_id}")

    def read(self, row_key: str) -> tuple[Claim, str] | None:
        found = read_entity(self.table, self.partition, row_key)
        if found is None:
            return None
        entity, etag = found
        claim = Claim(owner=entity["owner"], state=ClaimState(entity["state"]),
                      claimed_at=entity["claimedAt"], sales_order_id=entity.get("salesOrderId", ""),
                      number=entity.get("number", ""), uncertain_since=entity.get("uncertainSince"),
                      ambiguous_posts=entity.get("ambiguousPosts", 0))
        return claim, etag

    def _entity(self, row_key: str, claim: Claim, key: str | None) -> dict[str, Any]:
        entity = {"PartitionKey": self.partition, "RowKey": row_key, "owner": claim.owner,
                  "state": claim.state.value, "claimedAt": claim.claimed_at,
                  "salesOrderId": claim.sales_order_id, "number": claim.number,
                  "externalDocumentNumber": key or "", "ambiguousPosts": claim.ambiguous_posts}
        if claim.uncertain_since is not None:
            entity["uncertainSince"] = claim.uncertain_since
        return entity

    def acquire(self, key: str | None, message_id: str) -> HeldClaim | Claim:
        """Own the claim (a `HeldClaim`), or the claim to answer from or defer behind (`REPEAT`,
        `DUPLICATE` or `DEFER` steps, returned as the `Claim`). Waits for another owner up to
        CLAIM_WAIT_SECONDS, then raises ClaimBusy."""
        row_key = self.row_key(key, message_id)
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        pause = 0.05
        while True:
            found = self.read(row_key)
            claim = found[0] if found else None
            now = datetime.now(UTC)
            step = next_claim_step(claim, message_id, now)
            carried = {"uncertain_since": claim.uncertain_since,
                       "ambiguous_posts": claim.ambiguous_posts} if claim else {}
            mine = self._entity(row_key, Claim(message_id, ClaimState.CREATING, now, **carried), key)
            if step is ClaimStep.WAIT:
                if time.monotonic() + pause > deadline:
                    raise ClaimBusy(f"another message with externalDocumentNumber {key!r} is still "
                                    "being created")
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
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
        etag = replace_if_match(self.table, self._entity(held.row_key, claim, key), held.etag)
        if etag is None:
            log.warning("sales order claim %s was taken over before it was settled", held.row_key)
        else:
            held.etag = etag

    def release(self, held: HeldClaim) -> None:
        """Drop the claim: nothing was created, another delivery may try."""
        delete_if_match(self.table, self.partition, held.row_key, held.etag)


# ------------------------------------------------------------------------------------ BC lookups

class ItemVariants:
    """Variant ids by item no. and code, from `items?$filter=number eq '…'&$expand=itemVariants`,
    cached per BC environment and company for ITEM_CACHE_SECONDS (one request per item, not per line).
    A code missing from a cached item is looked up again once before it is refused."""

    def __init__(self, ttl: float = ITEM_CACHE_SECONDS):
        self.ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, dict[str, str]]] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve(self, bc: BCClient, company_id: str,
                wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(item no., variant code) → itemVariantId; OrderRejected names an unknown item or variant."""
        out = {}
        for item, code in sorted(wanted):
            variants = self._variants(bc, company_id, item, fresh=False)
            if code not in variants:
                variants = self._variants(bc, company_id, item, fresh=True)
            if code not in variants:
                known = ", ".join(sorted(variants)) or "none"
                raise OrderRejected("UnknownVariant",
                                    f"item {item!r} has no variant {code!r} (its variants: {known})")
            out[(item, code)] = variants[code]
        return out

    def _variants(self, bc: BCClient, company_id: str, item: str, *, fresh: bool) -> dict[str, str]:
        cache_key = (bc.base_url, company_id, item)
        with self._lock:
            lock = self._locks.setdefault(cache_key, threading.Lock())
        with lock:  # one lookup per item at a time: concurrent orders for it share the answer
            hit = self._cache.get(cache_key)
            if hit and not fresh and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            items = bc.get(bc.company_path(company_id, "items"),
                           {"$filter": f"number eq {odata_string(item)}", "$expand": "itemVariants"})
            found = items.get("value", [])
            if not found:
                raise OrderRejected("UnknownItem", f"item {item!r} does not exist")
            variants = {str(v["code"]).upper(): str(v["id"]) for v in found[0].get("itemVariants", [])}
            self._cache[cache_key] = (time.monotonic(), variants)
            return variants


ITEM_VARIANTS = ItemVariants()


def find_order(bc: BCClient, company_id: str, key: str) -> dict[str, Any] | None:
    """The order BC already has for an external document number, or None (one GET)."""
    found = bc.get(bc.company_path(company_id, "salesOrders"),
                   {"$filter": f"externalDocumentNumber eq {odata_string(key)}",
                    "$select": "id,number,externalDocumentNumber"})
    orders = found.get("value", [])
    return orders[0] if orders else None


# ------------------------------------------------------------------------------------ the flow

def handle_delivery(runtime: Runtime, delivery: OrderDelivery) -> SalesOrderResult | Deferral:
    """Process one delivery: exactly one result message, a deferral (the copy will answer), or an
    exception for the host to retry."""
    key = key_hint(delivery.text)
    try:
        order = parse_order(delivery.text)
        result = send_order(runtime, order, delivery)
    except Exception as exc:
        error = failure_error(exc)
        if is_permanent(exc):
            log.warning("sales order %r (message %s) failed: %s: %s", key, delivery.message_id,
                        error.code, error.message)
            failed = order_result("failed", key, error=error)
            # Keep the message first: if the result send then fails, the retry repeats both
            # (a second poison copy and result) rather than losing the order.
            runtime.storage.queue(QUEUE_SALES_ORDERS_POISON).send_message(delivery.text)
            publish_result(runtime, failed)
            return failed
        if delivery.last_attempt:
            error = ResultError(code=error.code, message=f"gave up after {delivery.dequeue_count} "
                                                         f"attempts: {error.message}")
            log.error("sales order %r (message %s) failed for good: %s", key, delivery.message_id,
                      error.message)
            publish_result(runtime, order_result("failed", key, error=error))
        else:
            log.warning("sales order %r (message %s) attempt %d failed, will retry: %s", key,
                        delivery.message_id, delivery.dequeue_count, exc)
        raise
    if isinstance(result, Deferral):
        return result
    publish_result(runtime, result)
    log.info("sales order %r (message %s): %s %s (%s)", key, delivery.message_id, result.status,
             result.number, result.salesOrderId)
    return result


def publish_result(runtime: Runtime, result: SalesOrderResult) -> None:
    runtime.storage.queue(QUEUE_SALES_ORDER_RESULTS).send_message(result.to_message())


def send_order(runtime: Runtime, order: SalesOrderMessage,
               delivery: OrderDelivery) -> SalesOrderResult | Deferral:
    """Resolve where and what to create, claim the key (or message), then create at most once."""
    connection = runtime.settings.connection(order.connection).name
    bc = runtime.bc(connection)
    company_id = runtime.company_id(connection, order.company)
    variant_ids = ITEM_VARIANTS.resolve(bc, company_id, variant_wanted(order.salesOrderLines))
    body = deep_insert_body(order, variant_ids)
    key = order.idempotency_key
    claims = OrderClaims(runtime.storage.table(TABLE_ORDERS), connection, company_id)
    held = claims.acquire(key, delivery.message_id)
    if isinstance(held, Claim) and held.state is ClaimState.UNCERTAIN and key is not None:
        return defer_behind(runtime, held, key, delivery)
    if isinstance(held, Claim):  # settled before: repeat our own result, else it is a duplicate
        ours = held.owner == delivery.message_id and held.state is ClaimState.CREATED
        return order_result("created" if ours else "duplicate", key, held.order)
    window = runtime.settings.sales_order_ambiguity_seconds
    uncertain_since = held.ambiguous_since if key is not None else None
    ambiguous_posts = held.ambiguous_posts
    try:
        if key is not None:
            existing = find_order(bc, company_id, key)
            if existing is not None:
                # Our own unfinished attempt may have created it; otherwise it was there already.
                state = ClaimState.CREATED if held.step is ClaimStep.RESUME else ClaimState.DUPLICATE
                claims.finish(held, key, delivery.message_id, state, existing)
                return order_result(state.value, key, existing)
            if uncertain_since is not None and defer_seconds(uncertain_since, datetime.now(UTC), window):
                return defer_order(runtime, claims, held, key, delivery, uncertain_since, ambiguous_posts)
        elif held.step is ClaimStep.RESUME:
            uncertain_since = datetime.now(UTC)
            raise OrderRejected("OutcomeUnknown", "an earlier attempt of this message may have created "
                                "the order, and without an externalDocumentNumber BC cannot be asked; "
                                "check BC before replaying it")
        try:
            created = bc.post(bc.company_path(company_id, "salesOrders"), body,
                              {"$expand": "salesOrderLines"})
            log.info("sales order %r: BC order %s created with %d line(s)", key, created.get("number"),
                     len(created.get("salesOrderLines", [])))
        except BCError as exc:
            if not exc.ambiguous:
                raise
            uncertain_since = datetime.now(UTC)
            ambiguous_posts += 1
            if key is None:
                raise OrderRejected("OutcomeUnknown", f"BC may or may not have created the order ({exc}); "
                                    "without an externalDocumentNumber it cannot be asked: check BC "
                                    "before replaying it") from exc
            created = find_order(bc, company_id, key)
            if created is None:
                if ambiguous_posts >= delivery.max_dequeue_count:
                    raise OrderRejected("OutcomeUnknown", f"{ambiguous_posts} POSTs had an unknown outcome "
                                        f"(last: {exc}) and BC does not show the order; check BC before "
                                        "replaying it") from exc
                log.warning("sales order %r: POST outcome unknown (%s) and not in BC yet", key, exc)
                return defer_order(runtime, claims, held, key, delivery, uncertain_since, ambiguous_posts)
        claims.finish(held, key, delivery.message_id, ClaimState.CREATED, created)
        return order_result("created", key, created)
    except BaseException:
        keep = uncertain_since is not None and (key is None or not delivery.last_attempt)
        if keep:
            claims.finish(held, key, delivery.message_id, ClaimState.UNCERTAIN, {}, uncertain_since,
                          ambiguous_posts)
        else:
            claims.release(held)
        raise


def defer_order(runtime: Runtime, claims: OrderClaims, held: HeldClaim, key: str, delivery: OrderDelivery,
                uncertain_since: datetime, ambiguous_posts: int) -> Deferral:
    """Put a copy of the message back, invisible until the ambiguity window since `uncertain_since` has
    passed, and hand the UNCERTAIN claim to the copy. The host's delivery count is not spent waiting."""
    window = runtime.settings.sales_order_ambiguity_seconds
    copy_id = send_copy(runtime, delivery, defer_seconds(uncertain_since, datetime.now(UTC), window))
    claims.finish(held, key, copy_id, ClaimState.UNCERTAIN, {}, uncertain_since, ambiguous_posts)
    until = uncertain_since + timedelta(seconds=window)
    log.warning("sales order %r (message %s): outcome of an earlier POST unknown and not in BC yet; "
                "deferred as message %s until %s, when BC is asked again before any new POST", key,
                delivery.message_id, copy_id, until.isoformat(timespec="seconds"))
    return Deferral(key=key, message_id=copy_id, until=until)


def defer_behind(runtime: Runtime, claim: Claim, key: str, delivery: OrderDelivery) -> Deferral:
    """Another message owns the key's UNCERTAIN claim: put a copy of this message back until
    DEFER_MARGIN_SECONDS after that owner's ambiguity window, without a POST, so it answers
    `duplicate` once the owner has settled instead of spending host deliveries on ClaimBusy."""
    now = datetime.now(UTC)
    delay = min(defer_seconds(ambiguous_since(claim), now, runtime.settings.sales_order_ambiguity_seconds)
                + DEFER_MARGIN_SECONDS, MAX_DEFER_SECONDS)
    copy_id = send_copy(runtime, delivery, delay)
    log.info("sales order %r (message %s): message %s has an order for it whose outcome is unknown; "
             "deferred as message %s for %d s", key, delivery.message_id, claim.owner, copy_id, delay)
    return Deferral(key=key, message_id=copy_id, until=now + timedelta(seconds=delay))


def send_copy(runtime: Runtime, delivery: OrderDelivery, delay: int) -> str:
    """Put a copy of the message text back on `sales-orders`, invisible for `delay` seconds; its id."""
    # time_to_live=-1: the copy must not expire while it waits (up to 7 days).
    copy = runtime.storage.queue(QUEUE_SALES_ORDERS).send_message(delivery.text, visibility_timeout=delay,
                                                                  time_to_live=-1)
    return str(copy.id)
