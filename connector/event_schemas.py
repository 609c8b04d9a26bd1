"""JSON Schemas of each event type's `data`, published in `schemas/` (`python -m connector schema`).

One shape per entity whatever the path (webhook, collection, sweep, pull): the BC entity with its
fields as the API names them, no `@odata.*` annotations, children under their navigation name in
the same form. Only what the connector guarantees is required; BC may add fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from connector.declarations import Command, WatchedEntitySet
from connector.events import ITEM_PULLED
from connector.health.events import health_data_schemas
from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES, QUEUE_SALES_SHIPMENTS

# The seed's triggers with every option on (the schemas cover what any connection may emit).
SEED_TRIGGERS = (
    WatchedEntitySet("items", QUEUE_ITEMS, "item", expand=("itemVariants",)),
    WatchedEntitySet("salesShipments", QUEUE_SALES_SHIPMENTS, "salesShipment",
                     expand=("salesShipmentLines",)),
    WatchedEntitySet("salesInvoices", QUEUE_SALES_INVOICES, "salesInvoice", expand=("salesInvoiceLines",)),
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


def entity_schema(trigger: WatchedEntitySet, title: str, description: str) -> dict[str, Any]:
    """The `data` of a created, updated or pulled event: the entity, its children optional."""
    child = {"type": "object", "propertyNames": _NO_ANNOTATIONS, "required": ["id"],
             "properties": {"id": _GUID}}
    fields = _FIELDS[trigger.entity]
    return {
        "$schema": _DIALECT, "title": title, "description": description, "type": "object",
        "propertyNames": _NO_ANNOTATIONS, "required": list(fields),
        "properties": fields | {name: {"type": "array", "items": child} for name in trigger.expand},
    }


def deleted_schema(trigger: WatchedEntitySet, title: str) -> dict[str, Any]:
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
        if trigger.draft is not None:
            kind = trigger.event_type("drafted")
            schemas[kind] = entity_schema(trigger, kind, f"A new draft {trigger.entity} (not posted).")
            schemas[trigger.event_type("created")]["description"] = (
                f"A {trigger.entity} BC posted, as BC returns it (announced once, when first seen posted).")
    items = SEED_TRIGGERS[0]
    schemas[ITEM_PULLED] = entity_schema(items, ITEM_PULLED,
                                         "An item as BC returns it, read by the item pull.")
    schemas.update(health_data_schemas())
    return {f"{kind}.data.schema.json": schema for kind, schema in schemas.items()}


# ---- schemas from BC's $metadata (`python -m connector schema --from-metadata`) --------------------

_EDM_NS = "{http://docs.oasis-open.org/odata/ns/edm}"
_EDM: dict[str, dict[str, Any]] = {
    "Edm.Guid": _GUID, "Edm.String": _TEXT, "Edm.Date": {"type": "string", "format": "date"},
    "Edm.DateTimeOffset": _TIME, "Edm.Decimal": {"type": "number"}, "Edm.Double": {"type": "number"},
    "Edm.Single": {"type": "number"}, "Edm.Int16": {"type": "integer"}, "Edm.Int32": {"type": "integer"},
    "Edm.Int64": {"type": "integer"}, "Edm.Byte": {"type": "integer"}, "Edm.Boolean": {"type": "boolean"},
}


@dataclass(frozen=True)
class CsdlEntity:
    """One `EntityType` of a `$metadata` document: its properties' types and its navigations' targets."""

    properties: dict[str, str]
    navigations: dict[str, str]


def parse_csdl(text: str) -> tuple[dict[str, CsdlEntity], dict[str, str]]:
    """The entity types (by unqualified name) and entity sets (name → type name) of a CSDL document."""
    root = ElementTree.fromstring(text)
    types: dict[str, CsdlEntity] = {}
    for node in root.iter(f"{_EDM_NS}EntityType"):
        props = {p.get("Name", ""): p.get("Type", "") for p in node.iter(f"{_EDM_NS}Property")}
        navs = {n.get("Name", ""): _unqualified(n.get("Type", ""))
                for n in node.iter(f"{_EDM_NS}NavigationProperty")}
        types[node.get("Name", "")] = CsdlEntity(props, navs)
    sets = {s.get("Name", ""): _unqualified(s.get("EntityType", ""))
            for s in root.iter(f"{_EDM_NS}EntitySet")}
    return types, sets


def _unqualified(type_name: str) -> str:
    """`Collection(Microsoft.NAV.itemVariant)` → `itemVariant`."""
    inner = type_name.removeprefix("Collection(").removesuffix(")")
    return inner.rsplit(".", 1)[-1]


def _object(entity: CsdlEntity, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """An entity's properties as JSON Schema (enums and other non-Edm types as strings)."""
    names = [n for n in entity.properties if not only or n in only]
    return {n: _EDM.get(entity.properties[n], _TEXT) for n in names}


def metadata_schemas(trigger: WatchedEntitySet, types: dict[str, CsdlEntity],
                     sets: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The `data` schemas of a trigger's event types from its API's `$metadata`, by file name:
    the entity's fields (its `$select` when it has one), expanded children as arrays of theirs."""
    type_name = sets.get(trigger.entity_set)
    if type_name not in types:
        raise KeyError(f"{trigger.resource}: not an entity set of the API's $metadata")
    entity = types[type_name]
    properties = _object(entity, trigger.select)
    for nav in trigger.expand:
        child = types.get(entity.navigations.get(nav, ""))
        item: dict[str, Any] = {"type": "object", "propertyNames": _NO_ANNOTATIONS}
        if child is not None:
            item["properties"] = _object(child)
        properties[nav] = {"type": "array", "items": item}
    required = [n for n in ("id", "lastModifiedDateTime") if n in properties]
    schemas: dict[str, dict[str, Any]] = {}
    for change in sorted(trigger.changes - {"deleted"}):
        kind = trigger.event_type(change)
        schemas[kind] = {"$schema": _DIALECT, "title": kind, "type": "object",
                         "description": f"A {trigger.entity} as BC returns it after the change (from "
                                        f"$metadata of api/{trigger.api}).",
                         "propertyNames": _NO_ANNOTATIONS, "required": required, "properties": properties}
    if "deleted" in trigger.changes:
        kind = trigger.event_type("deleted")
        schemas[kind] = {"$schema": _DIALECT, "title": kind, "type": "object", "additionalProperties": False,
                         "description": f"A {trigger.entity} deleted in BC (announced from webhooks only).",
                         "required": ["id"], "properties": {"id": _GUID, "number": _TEXT}}
    return {f"{kind}.data.schema.json": schema for kind, schema in schemas.items()}


def command_schema(command: Command, types: dict[str, CsdlEntity], sets: dict[str, str]) -> dict[str, Any]:
    """The JSON Schema of a declared command's `bc-commands` message from its API's `$metadata`: the
    envelope (`type`, `connection`, `company`, `traceparent`), the entity's fields, its lines as an
    array of the line entity's fields. `id` and `lastModifiedDateTime` are BC's to set and left out;
    which other fields BC refuses as read-only the CSDL does not say (BC names them when it does)."""
    type_name = sets.get(command.entity_set)
    if type_name not in types:
        raise KeyError(f"{command.api}/{command.entity_set}: not an entity set of the API's $metadata")
    entity = types[type_name]
    fields = {n: s for n, s in _object(entity).items() if n not in ("id", "lastModifiedDateTime")}
    if command.lines:
        line = types.get(entity.navigations.get(command.lines, ""))
        line_fields = ({n: s for n, s in _object(line).items() if n not in ("id", "documentId")}
                       if line else {})
        fields[command.lines] = {"type": "array", "items": {"type": "object", "properties": line_fields,
                                                            "additionalProperties": False}}
    envelope = {"type": {"const": command.name}, "connection": _TEXT, "company": _TEXT, "traceparent": _TEXT}
    return {"$schema": _DIALECT, "title": f"bc-commands: {command.name}", "type": "object",
            "description": f"A `bc-commands` message that {'upserts' if command.upsert else 'creates'} "
                           f"one of {command.api}/{command.entity_set} (from $metadata).",
            "required": ["type", *([command.key_field] if command.upsert else [])],
            "additionalProperties": False, "properties": envelope | fields}
