"""Declared triggers: what a connection watches in BC, parsed from its `TRIGGERS` setting (JSON) on
top of the seed's three webhook triggers (items, sales shipments, sales invoices).

A declaration names an entity set of the standard API (`v2.0`) or of a custom API page
(`publisher/group/version`), the changes announced, the children expanded, an optional `$select`,
optional watched fields (an update is announced only when one of them changed), the queue and the
event type prefix. The format and examples: docs/entities.md.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import ConnectorError

CHANGE_TYPES = ("created", "updated", "deleted")  # what a trigger may announce: `bc.<entity>.<change>`
DRAFTED_CHANGE_TYPES = (*CHANGE_TYPES, "drafted")  # sets where BC keeps drafts beside posted documents
# What BC's business events add to a standard entity set's change types (`bc.<entity>.<verb>`, from the
# business-event channel only: connector/businessevents/catalog.py)
EVENT_VERBS: dict[str, tuple[str, ...]] = {"customers": ("blocked",), "salesOrders": ("released",)}
STANDARD_API = "v2.0"

_API_RE = re.compile(r"^[A-Za-z0-9_]{1,64}/[A-Za-z0-9_]{1,64}/v[0-9]+\.[0-9]+$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_QUEUE_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*(?:\.[a-z][a-z0-9]*)*$")


class DeclarationError(ConnectorError, ValueError):
    """A declaration is malformed; the message names the setting, the declaration and the field."""

    internal = True


@dataclass(frozen=True)
class WatchedEntitySet:
    """One entity set a connection watches (a "trigger" of the product, not a Functions trigger):
    what it watches in BC and how it announces it: `<prefix>.<entity>.<change>` events on
    `queue`, with `expand` children inside `data`, only the fields of `select` (all when empty), and
    updates only when a field of `watch` changed (any change when empty). `number_field` is the
    entity's human key kept in the dedupe row (the `number` of a deleted event; empty: none).
    `draft` (field, value) marks a set where BC keeps drafts beside posted documents (sales
    invoices): a document is `created` when first seen posted, a new draft `drafted`."""

    entity_set: str
    queue: str
    entity: str
    api: str = STANDARD_API
    changes: frozenset[str] = frozenset({"created"})
    expand: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    type_prefix: str = "bc"
    number_field: str = "number"
    draft: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        """The trigger's name in storage rows and notes: the entity set of the standard API (as before
        declarations existed), `publisher/group/version/entitySet` of a custom API."""
        return self.entity_set if self.api == STANDARD_API else f"{self.api}/{self.entity_set}"

    @property
    def resource(self) -> str:
        """How BC's `webhookSupportedResources` names the entity set (`v2.0/items`, `contoso/shop/v1.0/x`)."""
        return f"{self.api}/{self.entity_set}"

    @property
    def custom(self) -> bool:
        return self.api != STANDARD_API

    def resource_path(self, company_id: str) -> str:
        """The subscription `resource` of a company's entity set."""
        return f"/api/{self.api}/companies({company_id})/{self.entity_set}"

    def params(self) -> dict[str, str]:
        """`$expand` and `$select` of every read of the entity."""
        params = {"$expand": ",".join(self.expand)} if self.expand else {}
        if self.select:
            params["$select"] = ",".join(self.select)
        return params

    def announces(self, change: str) -> bool:
        return change in self.changes

    def is_draft(self, entity: Mapping[str, Any]) -> bool:
        return self.draft is not None and entity.get(self.draft[0]) == self.draft[1]

    def needs(self, change: str) -> bool:
        """Must a notification of `change` be read? When it is announced, and for a set with drafts
        an `updated` one always (posting a draft is an update under the same id)."""
        return self.announces(change) or (self.draft is not None and change == "updated")

    def event_type(self, change: str) -> str:
        return f"{self.type_prefix}.{self.entity}.{change}"

    def digest(self, entity: Mapping[str, Any]) -> str:
        """A short digest of the watched fields' values ("" when nothing is watched)."""
        if not self.watch:
            return ""
        values = json.dumps([entity.get(f) for f in self.watch], sort_keys=True, default=str)
        return hashlib.sha256(values.encode()).hexdigest()[:24]


def singular(entity_set: str) -> str:
    """BC's entity name for an entity set: `customers` → `customer`, `itemLedgerEntries` →
    `itemLedgerEntry` (declare `entity` where the rule does not hold)."""
    if entity_set.endswith("ies"):
        return entity_set[:-3] + "y"
    return entity_set[:-1] if entity_set.endswith("s") else entity_set


def parse_changes(name: str, value: str | Iterable[str],
                  allowed: tuple[str, ...] = CHANGE_TYPES) -> frozenset[str]:
    """A comma list (or a list) of change types (`drafted` too where the trigger declares drafts)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    changes = frozenset(str(c).strip().lower() for c in items if str(c).strip())
    if changes - set(allowed) or not all(isinstance(c, str) for c in items):
        raise DeclarationError(f"{name} is a comma list of {','.join(allowed)}, not {value!r}")
    return changes


def _names(where: str, key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise DeclarationError(f"{where}: {key} must be a list of field names")
    names = tuple(v.strip() for v in items if v.strip())
    bad = [n for n in names if not _NAME_RE.match(n)]
    if bad:
        raise DeclarationError(f"{where}: {key} has invalid names {bad}")
    return names


TRIGGER_FIELDS = ("entitySet", "api", "entity", "queue", "changeTypes", "expand", "select", "watch",
                  "typePrefix", "numberField", "draft")


def parse_trigger(setting: str, index: int, raw: Any) -> WatchedEntitySet:
    """One declaration of a TRIGGERS list."""
    where = f"{setting}[{index}]"
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where} must be an object with entitySet and queue")
    unknown = sorted(set(raw) - set(TRIGGER_FIELDS))
    if unknown:
        raise DeclarationError(f"{where}: unknown field(s) {unknown}; known: {', '.join(TRIGGER_FIELDS)}")
    entity_set = raw.get("entitySet")
    if not isinstance(entity_set, str) or not _NAME_RE.match(entity_set):
        raise DeclarationError(f"{where}: entitySet must be an entity set name such as customers")
    where = f"{setting}[{index}] ({entity_set})"
    api = raw.get("api", STANDARD_API)
    if api != STANDARD_API and (not isinstance(api, str) or not _API_RE.match(api)):
        raise DeclarationError(f"{where}: api must be v2.0 or publisher/group/version (e.g. "
                               f"contoso/shop/v1.0), not {api!r}")
    queue = raw.get("queue")
    if not isinstance(queue, str) or not _QUEUE_RE.match(queue):
        raise DeclarationError(f"{where}: queue must be a storage queue name (3-63 of a-z, 0-9, single "
                               f"hyphens), not {queue!r}")
    entity = raw.get("entity", singular(entity_set))
    if not isinstance(entity, str) or not _NAME_RE.match(entity):
        raise DeclarationError(f"{where}: entity must be a name such as customer")
    prefix = raw.get("typePrefix", "bc")
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise DeclarationError(f"{where}: typePrefix must be lower-case words joined by dots, e.g. bc")
    number_field = raw.get("numberField", "number")
    if not isinstance(number_field, str) or (number_field and not _NAME_RE.match(number_field)):
        raise DeclarationError(f"{where}: numberField must be a field name or empty")
    draft = raw.get("draft")
    if draft is not None and not (isinstance(draft, dict) and set(draft) == {"field", "value"}
                                  and isinstance(draft["field"], str) and _NAME_RE.match(draft["field"])
                                  and isinstance(draft["value"], str)):
        raise DeclarationError(f"{where}: draft must be {{\"field\": <field name>, \"value\": <text>}}, "
                               "e.g. {\"field\": \"status\", \"value\": \"Draft\"}")
    allowed = (*(DRAFTED_CHANGE_TYPES if draft is not None else CHANGE_TYPES),
               *(EVENT_VERBS.get(entity_set, ()) if api == STANDARD_API else ()))
    changes = raw.get("changeTypes", "created")
    if not isinstance(changes, str | list):
        raise DeclarationError(f"{where}: changeTypes must be a list of {','.join(allowed)}")
    changes = parse_changes(f"{where}: changeTypes", changes, allowed)
    if not changes:
        raise DeclarationError(f"{where}: changeTypes must name at least one of {','.join(CHANGE_TYPES)}")
    expand = _names(where, "expand", raw.get("expand", []))
    select = _names(where, "select", raw.get("select", []))
    watch = _names(where, "watch", raw.get("watch", []))
    if select:  # what the connector itself needs is always read
        needed = ("id", "lastModifiedDateTime", *((number_field,) if number_field else ()), *watch,
                  *((draft["field"],) if draft is not None else ()))
        select = select + tuple(n for n in dict.fromkeys(needed) if n not in select)
    return WatchedEntitySet(entity_set=entity_set, queue=queue, entity=entity, api=api, changes=changes,
                            expand=expand, select=select, watch=watch, type_prefix=prefix,
                            number_field=number_field,
                            draft=(draft["field"], draft["value"]) if draft is not None else None)


def parse_triggers(setting: str, text: str,
                   seed: tuple[WatchedEntitySet, ...]) -> tuple[WatchedEntitySet, ...]:
    """The seed triggers with the declared ones: a declaration of a seed trigger's entity set replaces
    it; two declarations of one entity set are an error."""
    declared: list[WatchedEntitySet] = []
    if text.strip():
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise DeclarationError(f"{setting} is not valid JSON ({exc})") from None
        if not isinstance(raw, list):
            raise DeclarationError(f"{setting} must be a JSON list of trigger declarations")
        declared = [parse_trigger(setting, n, item) for n, item in enumerate(raw)]
    keys = [t.key for t in declared]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise DeclarationError(f"{setting}: {', '.join(twice)} declared more than once")
    by_key = {t.key: t for t in seed} | {t.key: t for t in declared}
    return tuple(by_key.values())


@dataclass(frozen=True)
class Command:
    """A declared command (`COMMANDS` setting): a `bc-commands` message whose `type` is `name`
    becomes one entity of `entity_set` (deep insert with its `lines` navigation), exactly once per
    value of `key_field` (once per message without one: `purchaseOrders` has no field for a key) —
    or, as an `upsert`, creates the entity the key does not find and updates the one it finds (master
    data: customers by `number` or `email`)."""

    name: str
    entity_set: str
    key_field: str
    lines: str = ""
    api: str = STANDARD_API
    upsert: bool = False


# The seed's action, as a command: what `sales-orders` messages create (their own queue and contract).
SALES_ORDERS = Command("salesOrder", "salesOrders", "externalDocumentNumber", "salesOrderLines")
COMMAND_FIELDS = ("name", "entitySet", "key", "lines", "api", "mode")
COMMAND_MODES = ("create", "upsert")


def parse_command(setting: str, index: int, raw: Any) -> Command:
    """One declaration of a COMMANDS list."""
    where = f"{setting}[{index}]"
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where} must be an object with name, entitySet and key")
    unknown = sorted(set(raw) - set(COMMAND_FIELDS))
    if unknown:
        raise DeclarationError(f"{where}: unknown field(s) {unknown}; known: {', '.join(COMMAND_FIELDS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DeclarationError(f"{where}: name must be a command name such as salesQuote (the "
                               "messages' type)")
    where = f"{setting}[{index}] ({name})"
    values = {}
    for field_name in ("entitySet", "key", "lines"):
        value = raw.get(field_name, None if field_name == "entitySet" else "")
        if not isinstance(value, str) or (value or field_name == "entitySet") and not _NAME_RE.match(value):
            raise DeclarationError(f"{where}: {field_name} must be a field or entity set name")
        values[field_name] = value
    api = raw.get("api", STANDARD_API)
    if api != STANDARD_API and (not isinstance(api, str) or not _API_RE.match(api)):
        raise DeclarationError(f"{where}: api must be v2.0 or publisher/group/version, not {api!r}")
    mode = raw.get("mode", "create")
    if mode not in COMMAND_MODES:
        raise DeclarationError(f"{where}: mode must be create or upsert, not {mode!r}")
    if mode == "upsert" and values["lines"]:
        raise DeclarationError(f"{where}: an upsert has no lines (master data)")
    if mode == "upsert" and not values["key"]:
        raise DeclarationError(f"{where}: key must name the field an upsert finds the entity by")
    return Command(name=name, entity_set=values["entitySet"], key_field=values["key"],
                   lines=values["lines"], api=api, upsert=mode == "upsert")


def parse_commands(setting: str, text: str) -> tuple[Command, ...]:
    """The declared commands; two of one name are an error (`salesOrder` is the `sales-orders` queue's)."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DeclarationError(f"{setting} is not valid JSON ({exc})") from None
    if not isinstance(raw, list):
        raise DeclarationError(f"{setting} must be a JSON list of command declarations")
    commands = [parse_command(setting, n, item) for n, item in enumerate(raw)]
    names = [c.name for c in commands]
    taken = sorted({n for n in names if names.count(n) > 1 or n == SALES_ORDERS.name})
    if taken:
        raise DeclarationError(f"{setting}: {', '.join(taken)} declared more than once (salesOrder is "
                               "the sales-orders queue's)")
    return tuple(commands)
