"""Message shapes of Send Created Sales Order: the order in (`sales-orders`), the result out
(`sales-order-results`). Declared once here; `schemas/*.json` is generated from these models
(`python -m connector schema`).

The order is the body of BC's `POST .../salesOrders` with BC's own field names (bc-api.md §3.5, §3.6):
only writable fields, lines under `salesOrderLines`, plus the contract's additions `connection`,
`company`, and on lines `itemNumber` / `variantCode`. Everything else is refused by name, read-only
fields with a reason. pydantic (already a dependency) does the validation and the JSON Schema, so
the two cannot drift apart.
"""
from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from connector.errors import ConnectorError
from connector.telemetry import TRACEPARENT_PATTERN

# Field types. Strict: BC refuses "5" for a number and 1 for a boolean, so the connector does too.
Code10 = Annotated[str, Field(max_length=10)]
Code20 = Annotated[str, Field(max_length=20)]
Text30 = Annotated[str, Field(max_length=30)]
Text50 = Annotated[str, Field(max_length=50)]
Text100 = Annotated[str, Field(max_length=100)]

# BC's wire names of the line types (bc-api.md §2 enum encoding, §3.6).
LineType = Literal["Comment", "Account", "Item", "Resource", "Fixed_x0020_Asset", "Charge",
                   "Allocation_x0020_Account"]

# Lines per order: each may cost a variant lookup before the order is claimed, and BC must create the
# whole order within its 8-minute operation timeout; a larger one fails with TooManyLines, nothing sent.
MAX_ORDER_LINES = 5000
DATAREF = "dataref"  # a message with it carries its order in a blob (claim check, orders/payloads.py)

# A result must fit in a queue message whatever was sent: name this many problems, this long each.
MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 200

_ADDRESS = ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode")

# Read-only in BC (bc-api.md §3.5/§3.6): refused with this reason instead of "unknown field".
ORDER_READ_ONLY: dict[str, str] = {
    "id": "BC assigns the order id",
    "number": "BC numbers the order from its number series; put your reference in externalDocumentNumber",
    "customerName": "BC takes it from the customer",
    "billToName": "BC takes it from the bill-to customer",
    **{f"billTo{a}": "BC takes the bill-to address from the bill-to customer" for a in _ADDRESS},
    "discountAppliedBeforeTax": "BC calculates it",
    "totalAmountExcludingTax": "BC calculates the totals",
    "totalTaxAmount": "BC calculates the totals",
    "totalAmountIncludingTax": "BC calculates the totals",
    "fullyShipped": "BC derives it from the lines",
    "status": "BC sets the status",
    "lastModifiedDateTime": "BC sets it",
}
LINE_READ_ONLY: dict[str, str] = {
    "id": "BC assigns the line id",
    "documentId": "BC links the line to the order it is sent with",
    "discountAppliedBeforeTax": "BC calculates it",
    "amountExcludingTax": "BC calculates the line amounts",
    "taxPercent": "BC takes it from the tax setup",
    "totalTaxAmount": "BC calculates the line amounts",
    "amountIncludingTax": "BC calculates the line amounts",
    "invoiceDiscountAllocation": "BC calculates the line amounts",
    "netAmount": "BC calculates the line amounts",
    "netTaxAmount": "BC calculates the line amounts",
    "netAmountIncludingTax": "BC calculates the line amounts",
    "shippedQuantity": "BC counts what was shipped",
    "invoicedQuantity": "BC counts what was invoiced",
}


def _field_title(name: str, _: object) -> str:
    return name


class _BCBody(BaseModel):
    # allow_inf_nan=False: `1e999` parses as infinity, which BC cannot store
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              field_title_generator=_field_title)


class SalesOrderLineMessage(_BCBody):
    """One line of the order: BC's writable `salesOrderLine` fields plus `itemNumber`/`variantCode`."""

    sequence: int | None = Field(None, gt=0, lt=2**31,
                                 description="Line No.; BC numbers by 10000 if omitted.")
    lineType: LineType | None = None
    lineObjectNumber: Code20 | None = Field(None, description="Item or G/L account no., per lineType.")
    itemId: UUID | None = None
    accountId: UUID | None = None
    itemVariantId: UUID | None = None
    description: Text100 | None = None
    description2: Text50 | None = None
    unitOfMeasureId: UUID | None = None
    unitOfMeasureCode: Code10 | None = None
    quantity: float | None = None
    unitPrice: float | None = None
    discountAmount: float | None = None
    discountPercent: float | None = Field(None, ge=0, le=100)
    taxCode: Code20 | None = None
    shipmentDate: date | None = None
    invoiceQuantity: float | None = None
    shipQuantity: float | None = None
    locationId: UUID | None = None
    itemNumber: Code20 | None = Field(
        None, description="Connector convenience: the item no.; becomes lineType Item + lineObjectNumber.")
    variantCode: Code10 | None = Field(
        None, description="Connector convenience: the item variant code; resolved to itemVariantId.")

    @model_validator(mode="after")
    def _consistent(self) -> SalesOrderLineMessage:
        if self.itemId is not None and self.accountId is not None:
            _rule('both "itemId" and "accountId" are given; give only one')
        if self.itemNumber is not None:
            if self.lineType not in (None, "Item"):
                _rule(f'itemNumber is for item lines, but lineType is "{self.lineType}"')
            if self.itemId is not None:
                _rule("give the item as itemNumber or itemId, not both")
            if self.lineObjectNumber is not None and self.lineObjectNumber.upper() != self.itemNumber.upper():
                _rule("itemNumber and lineObjectNumber name different items")
        if self.variantCode is not None:
            if self.itemVariantId is not None:
                _rule("give the variant as variantCode or itemVariantId, not both")
            if self.item_number is None:
                _rule('variantCode needs the item number: itemNumber, or lineType "Item" with '
                      "lineObjectNumber")
        return self

    @property
    def item_number(self) -> str | None:
        """The item no. this line names by number (itemNumber, or an Item line's lineObjectNumber)."""
        if self.itemNumber is not None:
            return self.itemNumber
        return self.lineObjectNumber if self.lineType == "Item" else None


class SalesOrderMessage(_BCBody):
    """A message on `sales-orders`: the body of BC's `POST .../salesOrders` plus routing fields."""

    model_config = ConfigDict(title="SalesOrderMessage", json_schema_extra={
        "examples": [{"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP",
                      "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"}]})

    connection: str | None = Field(None, description="Connector: the BC connection (default: `default`).")
    traceparent: Annotated[str, Field(pattern=TRACEPARENT_PATTERN)] | None = Field(
        None, description="Connector: W3C trace context; the order, its BC calls and its result join "
                          "this trace.")
    company: str | None = Field(None,
                                description="Connector: company id or name (default: the connection's).")
    externalDocumentNumber: Annotated[str, Field(max_length=35)] | None = Field(
        None, description="Your order reference and the idempotency key: one order per value.")
    orderDate: date | None = None
    postingDate: date | None = None
    customerId: UUID | None = None
    customerNumber: Code20 | None = None
    billToCustomerId: UUID | None = None
    billToCustomerNumber: Code20 | None = None
    shipToName: Text100 | None = None
    shipToContact: Text100 | None = None
    sellToAddressLine1: Text100 | None = None
    sellToAddressLine2: Text50 | None = None
    sellToCity: Text30 | None = None
    sellToCountry: Code10 | None = None
    sellToState: Text30 | None = None
    sellToPostCode: Code20 | None = None
    shipToAddressLine1: Text100 | None = None
    shipToAddressLine2: Text50 | None = None
    shipToCity: Text30 | None = None
    shipToCountry: Code10 | None = None
    shipToState: Text30 | None = None
    shipToPostCode: Code20 | None = None
    shortcutDimension1Code: Code20 | None = None
    shortcutDimension2Code: Code20 | None = None
    currencyId: UUID | None = None
    currencyCode: Code10 | None = None
    pricesIncludeTax: bool | None = None
    paymentTermsId: UUID | None = None
    shipmentMethodId: UUID | None = None
    salesperson: Code20 | None = None
    partialShipping: bool | None = None
    requestedDeliveryDate: date | None = None
    discountAmount: float | None = None
    phoneNumber: Text30 | None = None
    email: Annotated[str, Field(max_length=80)] | None = None
    salesOrderLines: list[SalesOrderLineMessage] = Field(
        default_factory=list, max_length=MAX_ORDER_LINES,
        description=f"The lines, created with the order in one request (at most {MAX_ORDER_LINES}).")

    @model_validator(mode="after")
    def _has_customer(self) -> SalesOrderMessage:
        if self.customerNumber is None and self.customerId is None:
            _rule("customerNumber or customerId is required")
        return self

    @property
    def idempotency_key(self) -> str | None:
        """The external document number, if one is given (blank counts as none)."""
        key = self.externalDocumentNumber
        return key if key and key.strip() else None


class ResultError(BaseModel):
    """Why an order failed: a stable `code` and a message naming the problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    message: str

    _readable = field_validator("message")(lambda text: readable_text(text))


class SalesOrderResult(BaseModel):
    """A message on `sales-order-results`: one per order message (null where not applicable)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="SalesOrderResult",
                              field_title_generator=_field_title)

    externalDocumentNumber: str | None
    status: Literal["created", "duplicate", "failed"]
    salesOrderId: str | None = Field(description="The BC order id (created: the new one, duplicate: the "
                                                 "existing one).")
    number: str | None = Field(description="The BC order number.")
    error: ResultError | None
    traceparent: str | None = Field(description="W3C trace context of the order's processing (the "
                                               "message's trace when it named one).")

    _readable = field_validator("externalDocumentNumber")(
        lambda key: None if key is None else readable_text(key))

    def to_message(self) -> str:
        return self.model_dump_json()


class OrderRejected(ConnectorError, ValueError):
    """The order cannot be created as sent (retrying will not help); `code` and `message` say why,
    naming each field at fault."""

    retryable = False
    http_status = 400

    def __init__(self, code: str, message: str, logged: str | None = None):
        super().__init__(message, code=code)
        self.logged = message if logged is None else logged  # for the log: without the message's values


def _rule(message: str) -> None:
    raise PydanticCustomError("order_rule", message)


def readable_text(text: str) -> str:
    """`text` safe to put in a result: characters UTF-8 cannot carry (lone surrogates) become `?`."""
    return text.encode("utf-8", "replace").decode("utf-8")


def load_json(text: str, what: str = "the message") -> Any:
    """`json.loads`, or OrderRejected(`MalformedJson`) also for nesting too deep to parse."""
    try:
        return json.loads(text)
    except RecursionError:
        raise OrderRejected("MalformedJson", f"{what} is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise OrderRejected("MalformedJson", f"{what} is not valid JSON: {exc}") from None


def check_encoding(text: str) -> None:
    """OrderRejected(`InvalidEncoding`) unless `text` is valid UTF-8 (bytes the queue message could not
    decode arrive as lone surrogates, see `message_text`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OrderRejected("InvalidEncoding", f"the message is not valid UTF-8 text (byte or character "
                            f"at position {exc.start})") from None


def parse_order(text: str) -> SalesOrderMessage:
    """The order in a message's text, or `OrderRejected` naming every problem found."""
    check_encoding(text)
    try:
        return SalesOrderMessage.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            reason = errors[0]["msg"].removeprefix("Invalid JSON: ")
            raise OrderRejected("MalformedJson", f"the message is not valid JSON: {reason}") from None
        too_many = next((e for e in errors if e["type"] == "too_long" and e["loc"] == ("salesOrderLines",)),
                        None)
        if too_many is not None:
            raise OrderRejected("TooManyLines", f"the order has {too_many['ctx']['actual_length']} lines; "
                                f"one order may have at most {MAX_ORDER_LINES} (split it)") from None
        problems = [_clip(describe_error(e)) for e in errors[:MAX_PROBLEMS]]
        logged = [_clip(describe_error(e, values=False)) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"and {len(errors) - MAX_PROBLEMS} more problem(s)")
            logged.append(problems[-1])
        raise OrderRejected("InvalidMessage", "; ".join(problems), "; ".join(logged)) from None


def describe_error(error: ErrorDetails, values: bool = True) -> str:
    """One validation problem as `path: what is wrong` (read-only BC fields get their reason), with
    the value at fault unless `values` is False (for logs: names, addresses, e-mails are personal)."""
    loc = error["loc"]
    path = _path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        read_only = LINE_READ_ONLY if len(loc) > 1 and loc[0] == "salesOrderLines" else ORDER_READ_ONLY
        if name in read_only:
            return f"{path}: read-only field, not accepted ({read_only[name]})"
        return f"{path}: unknown field"
    if kind == "model_type" and not loc:
        return "the message must be a JSON object"
    text = error["msg"]
    if values and kind != "order_rule" and "input" in error and not isinstance(error["input"], dict | list):
        text += f" (got {json.dumps(error['input'], default=str, ensure_ascii=False)})"
    return f"{path}: {text}" if path else text


def _clip(text: str) -> str:
    text = readable_text(text)
    return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 1] + "…"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def claim_check_schema() -> dict[str, Any]:
    """The claim-check form of a `sales-orders` message: `dataref` plus, optionally, any order field
    (added to the blob's order; docs/sales-orders.md)."""
    order = SalesOrderMessage.model_json_schema()
    dataref = {"type": "string", "format": "uri", "title": DATAREF,
               "description": "URL of a blob in container `sales-order-payloads` holding the order's "
                              "JSON object (a SalesOrderMessage)."}
    integrity = {
        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "title": "sha256",
                   "description": "SHA-256 of the blob's bytes, hex: a blob that differs fails with "
                                  "DataRefMismatch."},
        "size": {"type": "integer", "minimum": 0, "title": "size",
                 "description": "The blob's length in bytes: a blob of another size fails with "
                                "DataRefMismatch before it is downloaded."}}
    return {"$defs": order["$defs"], "additionalProperties": False,
            "description": "A `sales-orders` message whose order is in a blob (claim check, for orders "
                           "over 64 KiB), with the blob's SHA-256 and size; its other fields are added to "
                           "the blob's order.",
            "examples": [{DATAREF: "https://<account>.blob.core.windows.net/sales-order-payloads/"
                                   "shop-eu/WEB-100234.json",
                          "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                          "size": 48213, "externalDocumentNumber": "WEB-100234"}],
            "properties": {DATAREF: dataref} | integrity | order["properties"],
            "required": [DATAREF, "sha256", "size"],
            "title": "SalesOrderClaimCheck", "type": "object"}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas by file name (`schemas/<name>`)."""
    dialect = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    return {
        "sales-order.schema.json": dialect | SalesOrderMessage.model_json_schema(),
        "sales-order-claim-check.schema.json": dialect | claim_check_schema(),
        "sales-order-result.schema.json": dialect | SalesOrderResult.model_json_schema(),
    }


def schema_text(schema: dict[str, Any]) -> str:
    """The file text of a schema: stable key order, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
