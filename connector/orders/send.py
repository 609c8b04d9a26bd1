"""Send Created Sales Order: a `sales-orders` message (or its claim check, `payloads.py`) becomes one
BC sales order, created in one deep-insert POST, and exactly one message on `sales-order-results`.

With an `externalDocumentNumber` no second order is ever created for it: a claim row (`claims.py`)
lets one delivery create, BC is asked before the POST and after an ambiguous failure, and an order
still unknown after one is deferred past the ambiguity window, never retried blind. Without a key a
POST of unknown outcome fails (`OutcomeUnknown`). Permanent failures end at once (result + poison
copy); transient ones raise for the host to retry. The whole story: docs/sales-orders.md.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from connector.bc.client import BCClient
from connector.bc.errors import BCError
from connector.bc.lookups import KeyLookup, Ticket, odata_string
from connector.declarations import SALES_ORDERS, Command
from connector.errors import describe, is_permanent
from connector.orders.claims import (
    MAX_DEFER_SECONDS,
    Claim,
    ClaimState,
    ClaimStep,
    HeldClaim,
    OrderClaims,
    ambiguous_since,
    defer_seconds,
)
from connector.orders.payloads import order_text
from connector.orders.schema import (
    OrderRejected,
    ResultError,
    SalesOrderMessage,
    SalesOrderResult,
    load_json,
    parse_order,
)
from connector.orders.variants import variant_wanted
from connector.settings import (
    CONTAINER_SALES_ORDER_PAYLOADS,
    DEFAULT_CONNECTION,
    QUEUE_SALES_ORDER_RESULTS,
    QUEUE_SALES_ORDERS,
    QUEUE_SALES_ORDERS_POISON,
    TABLE_ORDERS,
)
from connector.storage import kept_text
from connector.telemetry import current_traceparent, log_value

if TYPE_CHECKING:
    from connector.orders.context import OrderContext

log = logging.getLogger(__name__)

MAX_ECHOED_KEY = 1000  # a longer (invalid) key is not echoed: the result must fit in a queue message
DEFER_MARGIN_SECONDS = 5  # a message deferred behind an uncertain claim returns this long after its window

Status = Literal["created", "duplicate", "failed"]


# ------------------------------------------------------------------------------------ deliveries

@dataclass(frozen=True)
class OrderDelivery:
    """One delivery of a queue message, as plain values: the host's envelope (id, dequeue count) and
    the message's own top-level fields (`envelope`), parsed once where it enters."""

    text: str
    message_id: str
    dequeue_count: int
    max_dequeue_count: int
    queue: str = QUEUE_SALES_ORDERS  # where it came from (a deferred copy goes back there)

    @property
    def last_attempt(self) -> bool:
        """After this attempt the host moves the message to `-poison` if it fails."""
        return self.dequeue_count >= self.max_dequeue_count

    @cached_property
    def envelope(self) -> Mapping[str, Any]:
        """The message's top-level fields, read once ({} when it is not a JSON object): the key,
        connection, type and trace come from here; the order itself is validated from the text."""
        try:
            data = load_json(self.text)
        except OrderRejected:
            return {}
        return data if isinstance(data, dict) else {}

    def field(self, name: str) -> str | None:
        """A string field of the message (None when absent, not a string, or not JSON at all)."""
        value = self.envelope.get(name)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Deferral:
    """The order's outcome is still unknown: a copy of the message waits on the queue until `until`."""

    key: str
    message_id: str  # the copy's id (the claim is the copy's when this delivery owned it)
    until: datetime


# ------------------------------------------------------------------------------------ pure decisions

def failure_error(exc: BaseException) -> ResultError:
    """The `error` of a failed result: a stable code and a message naming the problem. An internal
    or unexpected exception's text stays in the log: the result says only that something failed."""
    described = describe(exc)
    if described.code == "InternalError":
        return ResultError(code="InternalError", message="the connector failed unexpectedly; its log "
                                                         "has the details under this message's id")
    return ResultError(**described.as_dict())


def logged_message(exc: BaseException, error: ResultError) -> str:
    """The failure as the log shows it: a validation failure without the values the message carried."""
    return exc.logged if isinstance(exc, OrderRejected) else error.message


def message_field(text: str, name: str) -> str | None:
    """A string field of a message that may be invalid (None when absent or not a string)."""
    try:
        data = load_json(text)
    except OrderRejected:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def key_hint(text: str) -> str | None:
    """The `externalDocumentNumber` of a message that may be invalid, so a failed result can name it."""
    return echoed_key(message_field(text, "externalDocumentNumber"))


def echoed_key(key: str | None) -> str | None:
    """A message's key as a result may echo it (None when too long to be one)."""
    return key if key is not None and len(key) <= MAX_ECHOED_KEY else None


def connection_hint(named: str | None, configured: Iterable[str]) -> str:
    """The connection a message is for (`named`: its `connection` field), as a metric and log
    dimension: a configured name, `default` when none is named, `unknown` otherwise (never free text
    from the message)."""
    if named is None:
        return DEFAULT_CONNECTION
    return named if named in configured else "unknown"


def order_result(status: Status, key: str | None, order: Mapping[str, Any] | None = None,
                 error: ResultError | None = None) -> SalesOrderResult:
    """A result message; `order` is BC's order (or a claim's record of it)."""
    return SalesOrderResult(
        externalDocumentNumber=key, status=status,
        salesOrderId=str(order["id"]) if order else None,
        number=str(order["number"]) if order else None, error=error, traceparent=None,
    )


def deep_insert_body(order: SalesOrderMessage, variant_ids: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The body of `POST .../salesOrders`: BC fields only, conveniences resolved, lines inline with no
    `documentId` (and `sequence` only where given, bc-api.md §4)."""
    body = order.model_dump(mode="json", exclude_none=True,
                            exclude={"connection", "company", "traceparent", "salesOrderLines"})
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


# ------------------------------------------------------------------------------------ BC lookups

def key_select(command: Command) -> str:
    return f"id,number,{command.key_field}"


def key_lookup(ctx: OrderContext, bc: BCClient, company_id: str, command: Command) -> KeyLookup:
    """The batched key check of a command's entity set in a company (`connector/bc/lookups.py`)."""
    return ctx.key_lookups.get(bc, company_id, command.entity_set, command.key_field,
                                   key_select(command), api=command.api)

def find_order(bc: BCClient, company_id: str, key: str, command: Command = SALES_ORDERS
               ) -> dict[str, Any] | None:
    """The order (or a command's document) BC already has for its key, or None (one GET of its own;
    the flow shares batched GETs instead, `KeyLookup`)."""
    found = bc.get(bc.api_path(command.api, company_id, command.entity_set),
                   {"$filter": f"{command.key_field} eq {odata_string(key)}",
                    "$select": key_select(command)})
    orders = found.get("value", [])
    return orders[0] if orders else None


# ------------------------------------------------------------------------------------ the flow

def handle_delivery(ctx: OrderContext, delivery: OrderDelivery) -> SalesOrderResult | Deferral:
    """Process one delivery: exactly one result message, a deferral (the copy will answer), or an
    exception for the host to retry. It runs in the trace the message names (`traceparent`)."""
    key = echoed_key(delivery.field("externalDocumentNumber"))
    connection = connection_hint(delivery.field("connection"), ctx.settings.connections)
    fields = {"connection": connection, "order_key": log_value(key or ""), "message_id": delivery.message_id}
    traceparent = delivery.field("traceparent")
    with ctx.telemetry.consume(f"process {QUEUE_SALES_ORDERS}", traceparent, **fields,
                                   **{"messaging.delivery_count": delivery.dequeue_count}):
        return _handle_delivery(ctx, delivery, key, fields)


def _handle_delivery(ctx: OrderContext, delivery: OrderDelivery, key: str | None,
                     fields: dict[str, str]) -> SalesOrderResult | Deferral:
    # Announced at once, so that a key check forming meanwhile waits for this delivery's key.
    ticket = ctx.key_lookups.coming()
    shown = fields["order_key"]  # the key as logs show it: cut short, escaped
    try:
        payloads = ctx.storage.container(CONTAINER_SALES_ORDER_PAYLOADS, create=False)  # read-only role
        text = order_text(payloads, delivery.text, ctx.settings.sales_order_max_payload_bytes)
        key = key_hint(text) or key
        shown = log_value(key or "")
        order = parse_order(text)
        result = send_order(ctx, order, delivery, ticket)
    except Exception as exc:
        ticket.cancel()
        error = failure_error(exc)
        if is_permanent(exc):
            log.warning("sales order %r (message %s) failed: %s: %s", shown, delivery.message_id,
                        error.code, logged_message(exc, error), extra=fields | {"error_code": error.code})
            failed = order_result("failed", key, error=error)
            # Keep the message first: if the result send then fails, the retry repeats both
            # (a second poison copy and result) rather than losing the order.
            ctx.storage.sender(QUEUE_SALES_ORDERS_POISON).send(kept_text(delivery.text))
            publish_result(ctx, failed, fields["connection"])
            return failed
        if delivery.last_attempt:
            error = ResultError(code=error.code, message=f"gave up after {delivery.dequeue_count} "
                                                         f"attempts: {error.message}")
            log.error("sales order %r (message %s) failed for good: %s", shown, delivery.message_id,
                      exc if error.code == "InternalError" else logged_message(exc, error),
                      extra=fields | {"error_code": error.code})
            publish_result(ctx, order_result("failed", key, error=error), fields["connection"])
        else:
            log.warning("sales order %r (message %s) attempt %d failed, will retry: %s", shown,
                        delivery.message_id, delivery.dequeue_count, exc,
                        extra=fields | {"error_code": error.code})
        raise
    ticket.cancel()
    if isinstance(result, Deferral):
        return result
    publish_result(ctx, result, fields["connection"])
    log.info("sales order %r (message %s): %s %s (%s)", shown, delivery.message_id, result.status,
             result.number, result.salesOrderId,
             extra=fields | {"status": result.status, "sales_order_number": result.number or ""})
    return result


def publish_result(ctx: OrderContext, result: SalesOrderResult, connection: str) -> None:
    """Send the result, in the order's trace (`traceparent`), and count it."""
    with ctx.telemetry.produce(QUEUE_SALES_ORDER_RESULTS, 1):
        result = result.model_copy(update={"traceparent": current_traceparent()})
        ctx.storage.sender(QUEUE_SALES_ORDER_RESULTS).send(result.to_message())
    ctx.telemetry.order_result(connection, result.status)


def send_order(ctx: OrderContext, order: SalesOrderMessage, delivery: OrderDelivery,
               ticket: Ticket | None = None) -> SalesOrderResult | Deferral:
    """Resolve where and what to create, claim the key (or message), then create at most once. With a
    key, the look-up that follows the claim is announced (`ticket`, else now), so that it shares a
    batched GET with the other deliveries of this process claiming at the same moment."""
    connection = ctx.settings.connection(order.connection).name
    bc = ctx.bc(connection)
    company_id = ctx.company_id(connection, order.company)
    key = order.idempotency_key
    lookup = key_lookup(ctx, bc, company_id, SALES_ORDERS)
    if ticket is None:
        ticket = lookup.coming()
    if key is None:
        ticket.cancel()
    try:
        variant_ids = ctx.item_variants.resolve(bc, company_id, variant_wanted(order.salesOrderLines))
        body = deep_insert_body(order, variant_ids)
        claims = OrderClaims(ctx.storage.table(TABLE_ORDERS), connection, company_id,
                             batches=ctx.table_batches)
        held = claims.acquire(key, delivery.message_id)
        if isinstance(held, Claim):
            return answer_from_claim(ctx, held, key, delivery)
        return OrderAttempt(ctx, bc, company_id, key, delivery, claims, held, SALES_ORDERS, lookup,
                            ticket).run(body)
    finally:
        ticket.cancel()


def answer_from_claim(ctx: OrderContext, claim: Claim, key: str | None,
                      delivery: OrderDelivery) -> SalesOrderResult | Deferral:
    """A claim this delivery does not own: wait behind an UNCERTAIN one, else repeat our own result
    or answer `duplicate`."""
    if claim.state is ClaimState.UNCERTAIN and key is not None:
        return defer_behind(ctx, claim, key, delivery)
    ours = claim.owner == delivery.message_id and claim.state is ClaimState.CREATED
    return order_result("created" if ours else "duplicate", key, claim.order)


class OrderAttempt:
    """A delivery holding the claim: asks BC first (with a key), POSTs at most once, and leaves the
    claim settled, UNCERTAIN (an ambiguous POST may still be committed) or released."""

    def __init__(self, ctx: OrderContext, bc: BCClient, company_id: str, key: str | None,
                 delivery: OrderDelivery, claims: OrderClaims, held: HeldClaim,
                 command: Command = SALES_ORDERS, lookup: KeyLookup | None = None,
                 ticket: Ticket | None = None):
        self.ctx, self.bc, self.company_id, self.key = ctx, bc, company_id, key
        self.delivery, self.claims, self.held = delivery, claims, held
        self.command = command  # what is created where: sales orders, or a declared document command
        # the key check, batched with other deliveries' (`ticket`: this one was announced)
        self.lookup = lookup or key_lookup(ctx, bc, company_id, command)
        self.ticket = ticket
        self.window = ctx.settings.sales_order_ambiguity_seconds
        self.uncertain_since = held.ambiguous_since if key is not None else None
        self.ambiguous_posts = held.ambiguous_posts

    def run(self, body: dict[str, Any]) -> SalesOrderResult | Deferral:
        try:
            answer = self.before_post()
            return answer if answer is not None else self.post(body)
        except BaseException:
            self.leave_claim()
            raise

    def before_post(self) -> SalesOrderResult | Deferral | None:
        """An answer without a POST (BC has the order, or an earlier POST may still be committed), or
        None to go ahead. Without a key, a resumed attempt cannot ask BC: OutcomeUnknown."""
        if self.key is None:
            if self.held.step is ClaimStep.RESUME:
                self.uncertain_since = datetime.now(UTC)
                raise OrderRejected("OutcomeUnknown", "an earlier attempt of this message may have created "
                                    "the order, and without an externalDocumentNumber BC cannot be asked; "
                                    "check BC before replaying it")
            return None
        existing = self.lookup.find(self.key, self.ticket)
        if existing is not None:
            # Our own unfinished attempt may have created it; otherwise it was there already.
            return self.settle(ClaimState.CREATED if self.held.step is ClaimStep.RESUME
                               else ClaimState.DUPLICATE, existing)
        if self.uncertain_since is not None and defer_seconds(self.uncertain_since, datetime.now(UTC),
                                                              self.window):
            return self.defer()
        return None

    def post(self, body: dict[str, Any]) -> SalesOrderResult | Deferral:
        """The one POST; after an ambiguous failure, the order BC committed anyway, or a deferral."""
        try:
            command = self.command
            created = self.bc.post(self.bc.api_path(command.api, self.company_id, command.entity_set), body,
                                   {"$expand": command.lines} if command.lines else None)
            log.info("%s %r: BC %s %s created with %d line(s)", command.name, self.key, command.entity_set,
                     created.get("number"), len(created.get(command.lines, [])))
        except BCError as exc:
            if not exc.ambiguous:
                raise
            found = self.after_ambiguous_post(exc)
            if found is None:
                return self.defer()
            created = found
        return self.settle(ClaimState.CREATED, created)

    def after_ambiguous_post(self, exc: BCError) -> dict[str, Any] | None:
        """The order BC committed despite `exc`, or None (defer and ask again later); OutcomeUnknown
        without a key, or once every delivery's POST has been ambiguous."""
        self.uncertain_since = datetime.now(UTC)
        self.ambiguous_posts += 1
        if self.key is None:
            raise OrderRejected("OutcomeUnknown", f"BC may or may not have created the order ({exc}); "
                                "without an externalDocumentNumber it cannot be asked: check BC "
                                "before replaying it") from exc
        created = self.lookup.find(self.key)
        if created is None:
            if self.ambiguous_posts >= self.delivery.max_dequeue_count:
                raise OrderRejected("OutcomeUnknown", f"{self.ambiguous_posts} POSTs had an unknown outcome "
                                    f"(last: {exc}) and BC does not show the order; check BC before "
                                    "replaying it") from exc
            log.warning("sales order %r: POST outcome unknown (%s) and not in BC yet", self.key, exc)
        return created

    def settle(self, state: ClaimState, order: Mapping[str, Any]) -> SalesOrderResult:
        self.claims.finish(self.held, self.key, self.delivery.message_id, state, order)
        return order_result("created" if state is ClaimState.CREATED else "duplicate", self.key, order)

    def defer(self) -> Deferral:
        assert self.key is not None and self.uncertain_since is not None
        return defer_order(self.ctx, self.claims, self.held, self.key, self.delivery,
                           self.uncertain_since, self.ambiguous_posts)

    def leave_claim(self) -> None:
        """After a failure: keep the claim UNCERTAIN when a POST may have been carried out (a keyless
        message's claim always; a keyed one unless this was the last delivery), else release it."""
        if self.uncertain_since is not None and (self.key is None or not self.delivery.last_attempt):
            self.claims.finish(self.held, self.key, self.delivery.message_id, ClaimState.UNCERTAIN, {},
                               self.uncertain_since, self.ambiguous_posts)
        else:
            self.claims.release(self.held)


def defer_order(ctx: OrderContext, claims: OrderClaims, held: HeldClaim, key: str, delivery: OrderDelivery,
                uncertain_since: datetime, ambiguous_posts: int) -> Deferral:
    """Put a copy of the message back, invisible until the ambiguity window since `uncertain_since` has
    passed, and hand the UNCERTAIN claim to the copy. The host's delivery count is not spent waiting."""
    window = ctx.settings.sales_order_ambiguity_seconds
    copy_id = send_copy(ctx, delivery, defer_seconds(uncertain_since, datetime.now(UTC), window))
    claims.finish(held, key, copy_id, ClaimState.UNCERTAIN, {}, uncertain_since, ambiguous_posts)
    until = uncertain_since + timedelta(seconds=window)
    log.warning("sales order %r (message %s): outcome of an earlier POST unknown and not in BC yet; "
                "deferred as message %s until %s, when BC is asked again before any new POST", key,
                delivery.message_id, copy_id, until.isoformat(timespec="seconds"))
    return Deferral(key=key, message_id=copy_id, until=until)


def defer_behind(ctx: OrderContext, claim: Claim, key: str, delivery: OrderDelivery) -> Deferral:
    """Another message owns the key's UNCERTAIN claim: put a copy of this message back until
    DEFER_MARGIN_SECONDS after that owner's ambiguity window, without a POST, so it answers
    `duplicate` once the owner has settled instead of spending host deliveries on ClaimBusy."""
    now = datetime.now(UTC)
    delay = min(defer_seconds(ambiguous_since(claim), now, ctx.settings.sales_order_ambiguity_seconds)
                + DEFER_MARGIN_SECONDS, MAX_DEFER_SECONDS)
    copy_id = send_copy(ctx, delivery, delay)
    log.info("sales order %r (message %s): message %s has an order for it whose outcome is unknown; "
             "deferred as message %s for %d s", key, delivery.message_id, claim.owner, copy_id, delay)
    return Deferral(key=key, message_id=copy_id, until=now + timedelta(seconds=delay))


def send_copy(ctx: OrderContext, delivery: OrderDelivery, delay: int) -> str:
    """Put a copy of the message text back on its queue, invisible for `delay` seconds; its id."""
    # time_to_live=-1: the copy must not expire while it waits (up to 7 days).
    return ctx.storage.sender(delivery.queue).send(delivery.text, visibility_timeout=delay,
                                                       time_to_live=-1)
