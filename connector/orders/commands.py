"""Declared commands (`COMMANDS` setting): a `bc-commands` message names its command in `type` and
carries the body of BC's POST (BC field names, lines under the declared navigation); exactly one
message goes to `bc-command-results`.

A document command (sales quotes, credit memos, purchase orders, a custom page) takes the sales
orders' exactly-once path (`send.py`: claim on the key, key check in BC, one deep insert, deferral
after an ambiguous POST, poison and a `failed` result for bad input) with its own entity set, key
field and claims. An upsert (master data: customers by `number` or `email`) creates the entity its
key does not find and updates the one it finds, one delivery per key at a time. docs/entities.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connector.bc.client import BCClient
from connector.bc.errors import BCError
from connector.declarations import Command
from connector.errors import is_permanent
from connector.orders.claims import Claim, ClaimBusy, OrderClaims
from connector.orders.schema import OrderRejected, ResultError, SalesOrderResult, load_json
from connector.orders.send import (
    Deferral,
    OrderAttempt,
    OrderDelivery,
    answer_from_claim,
    connection_hint,
    failure_error,
)
from connector.orders.variants import odata_string
from connector.settings import QUEUE_COMMAND_RESULTS, QUEUE_COMMANDS, QUEUE_COMMANDS_POISON, TABLE_ORDERS
from connector.storage import kept_text
from connector.telemetry import current_traceparent

if TYPE_CHECKING:
    from connector.orders.context import OrderContext

log = logging.getLogger(__name__)

MAX_ECHOED = 200  # a longer type or key is not echoed: the result must fit in a queue message


class CommandMessage(BaseModel):
    """A `bc-commands` message: the connector's fields; every other field is the BC entity's, sent
    as it is (BC names what it refuses), lines under the command's navigation."""

    model_config = ConfigDict(extra="allow", title="CommandMessage")

    type: str = Field(min_length=1, description="The declared command's name (COMMANDS), e.g. salesQuote.")
    connection: str | None = Field(None, description="The connection (default: default).")
    company: str | None = Field(None, description="Company id or name (default: the connection's).")
    traceparent: str | None = Field(None, description="W3C trace context the result carries on.")

    @property
    def body(self) -> dict[str, Any]:
        """The BC fields (the POST or PATCH body)."""
        return dict(self.model_extra or {})


class CommandResult(BaseModel):
    """A message on `bc-command-results`: one per command message."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="CommandResult")

    type: str | None = Field(description="The command's name, as the message gave it.")
    key: str | None = Field(description="The value of the command's key field.")
    status: Literal["created", "duplicate", "updated", "unchanged", "failed"]
    id: str | None = Field(description="The BC entity's id.")
    number: str | None = Field(description="The BC entity's number.")
    error: ResultError | None
    traceparent: str | None = None

    def to_message(self) -> str:
        return self.model_dump_json()


@dataclass(frozen=True)
class CommandAnswer:
    """What a command did: its status and the entity (id, number)."""

    status: Literal["created", "duplicate", "updated", "unchanged"]
    entity: dict[str, Any]


def parse_command(text: str) -> CommandMessage:
    """The message, or OrderRejected naming what is wrong with it."""
    data = load_json(text)
    if not isinstance(data, dict):
        raise OrderRejected("InvalidMessage", "a command message must be a JSON object with `type`")
    if not isinstance(data.get("type"), str) or not data["type"]:
        raise OrderRejected("InvalidMessage", "`type` must name a declared command (COMMANDS)")
    wrong = [f for f in ("connection", "company", "traceparent")
             if f in data and not isinstance(data[f], str)]
    annotated = sorted(k for k in data if k.startswith("@odata."))
    if wrong or annotated:
        raise OrderRejected("InvalidMessage", f"{', '.join(wrong + annotated)}: "
                            + ("must be strings" if wrong else "OData annotations are not BC fields"))
    return CommandMessage.model_validate(data)


def key_of(command: Command, message: CommandMessage) -> str | None:
    """The command's key in the message (a non-empty string), None when absent."""
    key = message.body.get(command.key_field) if command.key_field else None
    if key is None or (isinstance(key, str) and key.strip()):
        return key
    raise OrderRejected("InvalidKey", f"{command.key_field} must be a non-empty string")


def echo(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_ECHOED else None


# ---- the flow -------------------------------------------------------------------------------------

def handle_command(ctx: OrderContext, delivery: OrderDelivery) -> CommandResult | Deferral:
    """Process one delivery: exactly one result, a deferral (the copy will answer), or an exception
    for the host to retry (after a `failed` result on the last attempt)."""
    kind = echo(delivery.field("type"))
    connection = connection_hint(delivery.field("connection"), ctx.settings.connections)
    fields = {"connection": connection, "command": kind or "", "message_id": delivery.message_id}
    with ctx.telemetry.consume(f"process {QUEUE_COMMANDS}", delivery.field("traceparent"),
                                   **fields, **{"messaging.delivery_count": delivery.dequeue_count}):
        key: str | None = None
        try:
            message = parse_command(delivery.text)
            conn = ctx.settings.connection(message.connection)
            command = conn.command(message.type)
            if command is None:
                known = ", ".join(c.name for c in conn.commands) or "none"
                raise OrderRejected("UnknownCommand", f"connection {conn.name!r} declares no command "
                                    f"{echo(message.type)!r} (COMMANDS: {known})")
            key = key_of(command, message)
            answer: CommandAnswer | Deferral
            if command.upsert:
                answer = upsert(ctx, conn.name, command, message, delivery)
            else:
                answer = create(ctx, conn.name, command, message, delivery)
        except Exception as exc:
            return fail(ctx, delivery, exc, kind, echo(key), fields)
        if isinstance(answer, Deferral):
            return answer
        result = CommandResult(type=kind, key=echo(key), status=answer.status, error=None,
                               id=str(answer.entity.get("id") or "") or None,
                               number=str(answer.entity.get("number") or "") or None)
        publish(ctx, result)
        log.info("command %s %r (message %s): %s %s", kind, key, delivery.message_id, result.status,
                 result.number, extra=fields | {"status": result.status})
        return result


def fail(ctx: OrderContext, delivery: OrderDelivery, exc: Exception, kind: str | None, key: str | None,
         fields: dict[str, str]) -> CommandResult:
    """A permanent failure: a poison copy, then a `failed` result. A transient one is raised for the
    host to retry (with a `failed` result on the last attempt)."""
    error = failure_error(exc)
    failed = CommandResult(type=kind, key=key, status="failed", id=None, number=None, error=error)
    if is_permanent(exc):
        log.warning("command %s %r (message %s) failed: %s: %s", kind, key, delivery.message_id, error.code,
                    error.message, extra=fields | {"error_code": error.code})
        ctx.storage.sender(QUEUE_COMMANDS_POISON).send(kept_text(delivery.text))
        publish(ctx, failed)
        return failed
    if delivery.last_attempt:
        log.error("command %s %r (message %s) failed for good: %s", kind, key, delivery.message_id, exc,
                  extra=fields | {"error_code": error.code})
        publish(ctx, failed.model_copy(update={"error": ResultError(
            code=error.code, message=f"gave up after {delivery.dequeue_count} attempts: {error.message}")}))
    raise exc


def publish(ctx: OrderContext, result: CommandResult) -> None:
    with ctx.telemetry.produce(QUEUE_COMMAND_RESULTS, 1):
        result = result.model_copy(update={"traceparent": current_traceparent()})
        ctx.storage.sender(QUEUE_COMMAND_RESULTS).send(result.to_message())


def create(ctx: OrderContext, connection: str, command: Command, message: CommandMessage,
           delivery: OrderDelivery) -> CommandAnswer | Deferral:
    """A document, exactly once per key: the sales orders' path with the command's entity set."""
    bc = ctx.bc(connection)
    company_id = ctx.company_id(connection, message.company)
    key = key_of(command, message)
    claims = OrderClaims(ctx.storage.table(TABLE_ORDERS), connection, company_id, scope=command.name,
                         batches=ctx.table_batches)
    held = claims.acquire(key, delivery.message_id)
    if isinstance(held, Claim):
        answer: SalesOrderResult | Deferral = answer_from_claim(ctx, held, key, delivery)
    else:
        answer = OrderAttempt(ctx, bc, company_id, key, delivery, claims, held, command).run(message.body)
    if isinstance(answer, Deferral):
        return answer
    status: Literal["created", "duplicate"] = "created" if answer.status == "created" else "duplicate"
    return CommandAnswer(status, {"id": answer.salesOrderId, "number": answer.number})


def find_by_key(bc: BCClient, company_id: str, command: Command, key: str) -> dict[str, Any] | None:
    """The entity whose key field is `key` (the first, if BC has several), or None."""
    found = bc.get(bc.api_path(command.api, company_id, command.entity_set),
                   {"$filter": f"{command.key_field} eq {odata_string(key)}", "$top": "1"})
    return next(iter(found.get("value", [])), None)


def upsert(ctx: OrderContext, connection: str, command: Command, message: CommandMessage,
           delivery: OrderDelivery) -> CommandAnswer | Deferral:
    """Create the entity the key does not find, update (only the fields that differ) the one it finds.
    The key's claim lets one delivery at a time decide, so two messages never both create."""
    key = key_of(command, message)
    if key is None:
        raise OrderRejected("MissingKey", f"an upsert of {command.entity_set} needs its key field "
                            f"{command.key_field}")
    bc = ctx.bc(connection)
    company_id = ctx.company_id(connection, message.company)
    claims = OrderClaims(ctx.storage.table(TABLE_ORDERS), connection, company_id, scope=command.name,
                         batches=ctx.table_batches)
    held = claims.acquire(key, delivery.message_id)
    if isinstance(held, Claim):  # upserts never settle a claim; a settled one is not ours to judge
        raise ClaimBusy(f"the claim of {command.key_field} {key!r} is held")
    try:
        body = message.body
        existing = find_by_key(bc, company_id, command, key)
        if existing is not None:
            changes = {k: v for k, v in body.items() if existing.get(k) != v}
            if not changes:
                return CommandAnswer("unchanged", existing)
            path = bc.api_path(command.api, company_id, f"{command.entity_set}({existing['id']})")
            return CommandAnswer("updated", bc.patch(path, changes, etag=existing["@odata.etag"]))
        try:
            return CommandAnswer("created", bc.post(bc.api_path(command.api, company_id, command.entity_set),
                                                    body))
        except BCError as exc:
            created = find_by_key(bc, company_id, command, key) if exc.ambiguous else None
            if created is None:
                raise
            return CommandAnswer("created", created)
    finally:
        claims.release(held)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas of `bc-commands` and `bc-command-results` messages."""
    dialect = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    return {"bc-command.schema.json": dialect | CommandMessage.model_json_schema(),
            "bc-command-result.schema.json": dialect | CommandResult.model_json_schema()}
