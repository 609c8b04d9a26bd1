"""In-memory data of the BC API emulator (dev tooling, never deployed).

Per tenant GUID and environment: companies, each with ordered entity sets (insertion order, so paging by
position is cheap), a parent index for child sets (variants by item, lines by document), a key index
(`number`/`code`) and number series. Every write bumps a global row version (the ETag) and reports the
change to a listener (the webhook engine).
"""

from __future__ import annotations

import base64
import bisect
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from devtools.emulator.bc_schema import COMPANY, COMPANY_SETS, EntityType
from devtools.emulator.clock import Clock
from devtools.emulator.odata import EMPTY_GUID, format_datetime

HISTORY_LIMIT = 200_000  # writes kept for point-in-time restores (older ones cannot be undone)
Written = tuple[datetime, tuple[str, str], Callable[[], None]]  # when, (tenant, environment), its undo
ChangeListener = Callable[["Company", str, str, str, str], None]  # company, set, id, changeType, at


@dataclass(slots=True)
class Row:
    """One stored entity: insertion position, API field values and row version."""

    seq: int
    data: dict[str, Any]
    version: int

    @property
    def id(self) -> str:
        """The entity's GUID key."""
        return self.data["id"]

    @property
    def etag(self) -> str:
        """A weak ETag that changes on every write, shaped like BC's."""
        token = base64.b64encode(f"'{len(str(self.version))};{self.version}{self.seq};00;'".encode()).decode()
        return f'W/"{token}"'


class EntitySet:
    """The rows of one entity set in one company, ordered by insertion, with indexes."""

    def __init__(self, etype: EntityType) -> None:
        self.etype = etype
        self.rows: dict[str, Row] = {}
        self.order: list[Row] = []
        self.key_field = next((k for k in ("number", "code") if k in etype.fields), None)
        self.by_key: dict[str, Row] = {}
        self.by_parent: dict[str, list[Row]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, entity_id: str) -> Row | None:
        """The row with this id (case-insensitive), or None."""
        return self.rows.get(entity_id.lower())

    def by_number(self, key: str) -> Row | None:
        """The row whose `number`/`code` is `key` (case-insensitive), or None."""
        return self.by_key.get(key.upper())

    def children(self, parent_id: str) -> list[Row]:
        """Rows whose parent field is `parent_id`, in insertion order."""
        return self.by_parent.get(parent_id.lower(), [])

    def iter_from(self, after_seq: int) -> Iterator[Row]:
        """Rows inserted after position `after_seq`, in order."""
        start = bisect.bisect_right(self.order, after_seq, key=lambda r: r.seq)
        return itertools.islice(self.order, start, None)

    def add(self, row: Row) -> None:
        """Index a new row (appended at the end of the order)."""
        self.rows[row.id] = row
        self.order.append(row)
        if self.key_field and row.data[self.key_field]:
            self.by_key[row.data[self.key_field].upper()] = row
        if self.etype.parent_field:
            self.by_parent.setdefault(row.data[self.etype.parent_field], []).append(row)

    def restore(self, row: Row) -> None:
        """Put a removed row back at its original position."""
        self.add(row)
        self.order.pop()
        bisect.insort(self.order, row, key=lambda r: r.seq)
        if self.etype.parent_field:
            siblings = self.by_parent[row.data[self.etype.parent_field]]
            siblings.pop()
            bisect.insort(siblings, row, key=lambda r: r.seq)

    def remove(self, row: Row) -> None:
        """Drop a row from every index."""
        del self.rows[row.id]
        del self.order[bisect.bisect_left(self.order, row.seq, key=lambda r: r.seq)]
        if self.key_field and self.by_key.get(row.data[self.key_field].upper()) is row:
            del self.by_key[row.data[self.key_field].upper()]
        if self.etype.parent_field:
            self.by_parent[row.data[self.etype.parent_field]].remove(row)

    def reindex(self, row: Row, old: dict[str, Any]) -> None:
        """Update the key and parent indexes after `row.data` changed from `old`."""
        if self.key_field and old[self.key_field] != row.data[self.key_field]:
            self.by_key.pop(old[self.key_field].upper(), None)
            self.by_key[row.data[self.key_field].upper()] = row
        parent = self.etype.parent_field
        if parent and old[parent] != row.data[parent]:
            self.by_parent[old[parent]].remove(row)
            siblings = self.by_parent.setdefault(row.data[parent], [])
            bisect.insort(siblings, row, key=lambda r: r.seq)


@dataclass
class Company:
    """One BC company with its entity sets and number series."""

    tenant: str
    environment: str
    id: str
    name: str
    lcy_code: str = "GBP"
    vat_percent: float = 20.0
    row: Row = field(kw_only=True)  # the company entity itself (`GET companies(id)`)
    sets: dict[str, EntitySet] = field(default_factory=dict)
    series: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sets = {name: EntitySet(etype) for name, etype in COMPANY_SETS.items()}


@dataclass
class Environment:
    """A BC environment of a tenant: its companies by id (in creation order)."""

    tenant: str
    name: str
    companies: dict[str, Company] = field(default_factory=dict)

    def company(self, key: str) -> Company | None:
        """A company by id or by name."""
        found = self.companies.get(key.lower())
        return found or next((c for c in self.companies.values() if c.name == key), None)


class Store:
    """All tenants' data, guarded by one re-entrant lock (`store.lock`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.environments: dict[tuple[str, str], Environment] = {}
        self.listener: ChangeListener | None = None
        self._seq = itertools.count(1)
        self._version = itertools.count(1)
        self._tx: tuple[list[Callable[[], None]], list[tuple[Any, ...]]] | None = None
        # Committed writes with their undo, newest last, for a point-in-time restore (`rewind`):
        # (emulator time, (tenant, environment), undo); the oldest fall off past HISTORY_LIMIT.
        self.history: deque[Written] = deque(maxlen=HISTORY_LIMIT)
        self._tx_history: list[Written] = []
        self._after_commit: list[Callable[[], None]] = []

    # ---- structure -------------------------------------------------------------------------------

    def environment(self, tenant: str, name: str) -> Environment:
        """The environment, created empty on first use."""
        key = (tenant.lower(), name.lower())
        if key not in self.environments:
            self.environments[key] = Environment(key[0], key[1])
        return self.environments[key]

    def find_environment(self, tenant: str, name: str) -> Environment | None:
        """The environment if it exists."""
        return self.environments.get((tenant.lower(), name.lower()))

    def add_company(
        self,
        tenant: str,
        env: str,
        name: str,
        company_id: str | None = None,
        *,
        lcy_code: str = "GBP",
        vat_percent: float = 20.0,
    ) -> Company:
        """Create a company in an environment."""
        with self.lock:
            company_id = (company_id or str(uuid.uuid4())).lower()
            now = self.now()
            data = COMPANY.blank() | {
                "id": company_id,
                "systemVersion": "29.0.46432.0",
                "timestamp": next(self._version),
                "name": name,
                "displayName": name,
                "systemCreatedAt": now,
                "systemModifiedAt": now,
            }
            company = Company(tenant.lower(), env.lower(), company_id, name, lcy_code, vat_percent,
                              row=Row(next(self._seq), data, next(self._version)))
            self.environment(tenant, env).companies[company_id] = company
            return company

    def company(self, tenant: str, env: str, company: str) -> Company:
        """A company by id or name; KeyError if unknown."""
        found = self.find_environment(tenant, env)
        result = found.company(company) if found else None
        if result is None:
            raise KeyError(company)
        return result

    # ---- rows ------------------------------------------------------------------------------------

    def next_number(self, company: Company, prefix: str, start: int, width: int = 0) -> str:
        """The next number of the company's series `prefix` (e.g. `S-ORD101001`); rolled back with
        the transaction."""
        value = company.series.get(prefix, start)
        company.series[prefix] = value + 1
        self._undo(lambda: company.series.__setitem__(prefix, value))
        return f"{prefix}{value:0{width}d}"

    def now(self) -> str:
        """The emulator clock's time in BC format."""
        return format_datetime(self.clock.now())

    def insert(self, company: Company, set_name: str, data: dict[str, Any], *, at: str | None = None) -> Row:
        """Store a new entity (its `id` assigned if blank) and report `created`."""
        entity_set = company.sets[set_name]
        if data.get("id") in (None, "", EMPTY_GUID):
            data["id"] = str(uuid.uuid4())
        data["id"] = data["id"].lower()
        at = at or self.now()
        if "lastModifiedDateTime" in data:
            data["lastModifiedDateTime"] = at
        row = Row(next(self._seq), data, next(self._version))
        entity_set.add(row)
        self._undo(lambda: entity_set.remove(row))
        self._journal(company, lambda: entity_set.remove(row) if entity_set.get(row.id) is row else None)
        self._report(company, set_name, row.id, "created", at)
        return row

    def modify(
        self, company: Company, set_name: str, row: Row, changes: dict[str, Any], *, report: bool = True
    ) -> None:
        """Apply `changes` to `row`: new version and timestamp, indexes, an `updated` change."""
        old, old_version = dict(row.data), row.version
        at = self.now()
        row.data.update(changes)
        row.version = next(self._version)
        if "lastModifiedDateTime" in row.data:
            row.data["lastModifiedDateTime"] = at
        entity_set = company.sets[set_name]
        entity_set.reindex(row, old)

        def undo() -> None:
            new = dict(row.data)
            row.data.clear()
            row.data.update(old)
            row.version = old_version
            entity_set.reindex(row, new)

        self._undo(undo)
        self._journal(company, undo)
        if report:
            self._report(company, set_name, row.id, "updated", at)

    def delete(self, company: Company, set_name: str, row: Row) -> None:
        """Remove `row` and report `deleted`."""
        entity_set = company.sets[set_name]
        entity_set.remove(row)
        self._undo(lambda: entity_set.restore(row))
        self._journal(company, lambda: entity_set.restore(row))
        self._report(company, set_name, row.id, "deleted", self.now())

    # ---- transactions ----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing writes: on an exception every insert/modify/delete is undone and no change
        is reported; otherwise the changes are reported at the end. Holds the lock."""
        with self.lock:
            if self._tx is not None:  # nested: part of the outer transaction
                yield
                return
            self._tx = ([], [])
            self._tx_history = []
            try:
                yield
            except BaseException:
                undo, _ = self._tx
                self._tx = None
                self._tx_history = []
                for step in reversed(undo):
                    step()
                raise
            _, changes = self._tx
            self._tx = None
            self.history.extend(self._tx_history)
            self._tx_history = []
            for change in changes:
                self._report(*change)
            after, self._after_commit = self._after_commit, []
            for step in after:
                step()

    def after_commit(self, step: Callable[[], None]) -> None:
        """Run `step` once the current transaction commits (at once outside one); a rolled-back
        transaction drops it, as BC drops the business events a failed posting raised."""
        if self._tx is None:
            step()
            return
        self._after_commit.append(step)
        self._undo(lambda: self._after_commit.remove(step) if step in self._after_commit else None)

    def _journal(self, company: Company, step: Callable[[], None]) -> None:
        entry = (self.clock.now(), (company.tenant, company.environment), step)
        (self._tx_history if self._tx is not None else self.history).append(entry)

    def rewind(self, tenant: str, environment: str, point_in_time: datetime) -> int:
        """A point-in-time restore of one environment: undo its writes after `point_in_time`,
        newest first (no change is reported: a restore sends no webhooks). How many were undone."""
        key = (tenant.lower(), environment.lower())
        with self.lock:
            kept: deque[Written] = deque(maxlen=HISTORY_LIMIT)
            undone = 0
            for at, where, step in reversed(self.history):
                if where == key and at > point_in_time:
                    step()
                    undone += 1
                else:
                    kept.appendleft((at, where, step))
            self.history = kept
            return undone

    def _undo(self, step: Callable[[], None]) -> None:
        if self._tx is not None:
            self._tx[0].append(step)

    # ---- saved state (devtools/emulator/state.py keeps it on disk) -----------------------------
    def snapshot(self) -> dict[str, Any]:
        """Environments, companies with their rows and number series, the position and version
        counters, as plain JSON data (take it under `lock`; rows are copied)."""
        def row(r: Row) -> list[Any]:
            return [r.seq, r.version, dict(r.data)]

        simple = [f.name for f in fields(Company) if f.name not in ("row", "sets", "series")]
        return {
            # next() leaves a gap of one: harmless, positions and versions only need to grow
            "next_seq": next(self._seq),
            "next_version": next(self._version),
            "environments": [[env.tenant, env.name] for env in self.environments.values()],
            "companies": [
                {name: getattr(company, name) for name in simple}
                | {"row": row(company.row), "series": dict(company.series),
                   "sets": {name: [row(r) for r in rows.order]
                            for name, rows in company.sets.items() if rows}}
                for env in self.environments.values()
                for company in env.companies.values()
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the data with `state` (from `snapshot`); sets this emulator no longer has, and
        fields its entity types no longer have, are dropped."""
        with self.lock:
            self.history.clear()  # the writes it records were to the data being replaced
            self.environments.clear()
            for tenant, name in state["environments"]:
                self.environment(tenant, name)
            for saved in state["companies"]:
                seq, version, data = saved["row"]
                company = Company(**{k: v for k, v in saved.items() if k not in ("row", "sets", "series")},
                                  row=Row(seq, data, version))
                company.series = dict(saved["series"])
                for set_name, rows in saved["sets"].items():
                    entity_set = company.sets.get(set_name)
                    if entity_set is None:  # a set this emulator no longer has
                        continue
                    blank = entity_set.etype.blank()
                    for seq, version, data in sorted(rows, key=lambda r: r[0]):
                        known = {k: v for k, v in data.items() if k in blank}
                        entity_set.add(Row(seq, blank | known, version))
                self.environment(company.tenant, company.environment).companies[company.id] = company
            self._seq = itertools.count(int(state["next_seq"]))
            self._version = itertools.count(int(state["next_version"]))

    def _report(self, company: Company, set_name: str, entity_id: str, change: str, at: str) -> None:
        if self._tx is not None:
            self._tx[1].append((company, set_name, entity_id, change, at))
        elif self.listener is not None:
            self.listener(company, set_name, entity_id, change, at)
