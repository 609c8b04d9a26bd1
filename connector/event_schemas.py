"""JSON Schemas of each event type's `data`, published in `schemas/` (`python -m connector schema`).

One shape per entity whatever the path (webhook, collection, sweep, pull): the BC entity with its
fields as the API names them, no `@odata.*` annotations, children under their navigation name in
the same form. Only what the connector guarantees is required; BC may add fields.
"""
from __future__ import annotations

from typing import Any

from connector.declarations import Trigger
from connector.events import ITEM_PULLED
from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES, QUEUE_SALES_SHIPMENTS

# The seed's triggers with every option on (the schemas cover what any connection may emit).
SEED_TRIGGERS = (
    Trigger("items", QUEUE_ITEMS, "item", expand=("itemVariants",)),
    Trigger("salesShipments", QUEUE_SALES_SHIPMENTS, "salesShipment", expand=("salesShipmentLines",)),
    Trigger("salesInvoices", QUEUE_SALES_INVOICES, "salesInvoice", expand=("salesInvoiceLines",)),
)

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_NO_ANNOTATIONS = {"not": {"pattern": "^@odata\\."}}
_GUID = {"type": "string", "format": "uuid"}
_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
# What a posted document carries of the sales order it was posted from ("" when posted ad hoc).
_ORDER_KEYS = {"externalDocumentNumber": _TEXT, "orderNumber": _TEXT}
_FIELDS: dict[str, dict[str, Any]] = {
    "item": {"id": _GUID, "number": _TEXT, "displayName": _TEXT, "lastModifiedDateTime": _TIME},
    "salesShipment": {"id": _GUID, "number": _TEXT, "lastModifiedDateTime": _TIME, **_ORDER_KEYS},
    "salesInvoice": {"id": _GUID, "number": _TEXT, "lastModifiedDateTime": _TIME, **_ORDER_KEYS},
}


def entity_schema(trigger: Trigger, title: str, description: str) -> dict[str, Any]:
    """The `data` of a created, updated or pulled event: the entity, its children optional."""
    child = {"type": "object", "propertyNames": _NO_ANNOTATIONS, "required": ["id"],
             "properties": {"id": _GUID}}
    fields = _FIELDS[trigger.entity]
    return {
        "$schema": _DIALECT, "title": title, "description": description, "type": "object",
        "propertyNames": _NO_ANNOTATIONS, "required": list(fields),
        "properties": fields | {name: {"type": "array", "items": child} for name in trigger.expand},
    }


def deleted_schema(trigger: Trigger, title: str) -> dict[str, Any]:
    """The `data` of a deleted event: the id, and the number last seen when the connector has one."""
    return {
        "$schema": _DIALECT, "title": title, "type": "object", "additionalProperties": False,
        "description": f"A {trigger.entity} deleted in BC (announced from webhooks only).",
        "required": ["id"], "properties": {"id": _GUID, "number": _TEXT},
    }


def event_data_schemas() -> dict[str, dict[str, Any]]:
    """The published schema of each event type's `data`, by file name (`schemas/<type>.data.schema.json`)."""
    schemas: dict[str, dict[str, Any]] = {}
    for trigger in SEED_TRIGGERS:
        for change in ("created", "updated"):
            kind = trigger.event_type(change)
            schemas[kind] = entity_schema(trigger, kind,
                                          f"A {trigger.entity} as BC returns it after the change.")
        schemas[trigger.event_type("deleted")] = deleted_schema(trigger, trigger.event_type("deleted"))
    items = SEED_TRIGGERS[0]
    schemas[ITEM_PULLED] = entity_schema(items, ITEM_PULLED,
                                         "An item as BC returns it, read by the item pull.")
    return {f"{kind}.data.schema.json": schema for kind, schema in schemas.items()}
