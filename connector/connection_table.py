"""Connections declared in storage: the table `bcconnectiondefs`, one row per connection, read live.

A row (PartitionKey `connection`, RowKey the connection's name) holds per-connection settings under
their app-setting names (`BC_TENANT`, `BC_CLIENT_ID`, `PULL_ITEM_VARIANTS`, ...); an unset one falls
back to the plain app setting, exactly as `NAME__X` app settings do, and the row is validated by the
same reader (`settings.table_connection`). A secret (`BC_CLIENT_SECRET`, `BC_EXTRA_CLIENT_SECRETS`) is
a Key Vault reference, resolved with the app's identity (`keyvault.py`); a plaintext one makes the row
invalid. Two columns are the connector's own: `State` (`removing`: `connections remove` asked for
it) and `Invalid` (the app's verdict on the row, empty when valid).

`LiveConnections` is the mapping `Settings.connections` holds in the runtime: the app-setting
connections (BC_CONNECTIONS; a row with one of their names is invalid: app settings win) plus the
valid rows, re-read every CONNECTIONS_REFRESH_SECONDS and at once for a name it has not loaded (a
sign-in, a message or a webhook for a connection added a moment ago). A connection whose row is gone
or marked `removing` is handed to `on_removed` (the runtime deletes its BC subscriptions, then a
`removing` row); asking for it afterwards says it is no longer configured.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from connector.keyvault import BadReference, SecretUnavailable, is_reference
from connector.settings import (
    CONNECTION_SECRETS,
    TABLE_CONNECTION_DEFS,
    ConnectionSettings,
    Settings,
    SettingsError,
    UnknownConnection,
    check_connection_name,
    refuse_example_key,
    table_connection,
)
from connector.storage import Storage, delete_if_match, submit_upserts

log = logging.getLogger(__name__)

PARTITION = "connection"
STATE, INVALID = "State", "Invalid"  # the connector's own columns
REMOVING = "removing"
_META = frozenset({"PartitionKey", "RowKey", "etag", STATE, INVALID})
MISS_SECONDS = 2.0  # a name not in the table is looked up again at most this often
REREAD_SECONDS = 30.0  # a refused connection's secrets are read again at most this often
RETRIES = 2  # storage retries of a read a lookup may wait for (the SDK's default waits minutes)
READ_SECONDS = 10.0  # and how long each try may take
REMOVED = "is no longer configured (removed from the connection table)"


# ---- rows ----------------------------------------------------------------------------------------

def row_settings(entity: Mapping[str, Any]) -> dict[str, str]:
    """The settings a row holds (its own columns left out), as text."""
    return {k: str(v) for k, v in entity.items() if k not in _META and v is not None}


def secret_references(name: str, values: Mapping[str, str]) -> list[str]:
    """The Key Vault references of a row's secret settings; SettingsError for a plaintext secret."""
    refs = []
    for key in sorted(CONNECTION_SECRETS & set(values)):
        items = [v.strip() for v in values[key].split(",")] if key == "BC_EXTRA_CLIENT_SECRETS" else [
            values[key].strip()]
        for item in items:
            if item and not is_reference(item):
                raise SettingsError(
                    f"connection {name!r}: {key} holds a plaintext secret, which a connection row must "
                    "not: store the secret in Key Vault and put its reference here, "
                    "@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>)")
            if item:
                refs.append(item)
    return refs


def with_secrets(values: Mapping[str, str], resolve: Callable[[str], str]) -> dict[str, str]:
    """The row's settings with each Key Vault reference replaced by its secret."""
    out = dict(values)
    for key in CONNECTION_SECRETS & set(values):
        items = [v.strip() for v in values[key].split(",")]
        out[key] = ",".join(resolve(i) if is_reference(i) else i for i in items)
    return out


def put_connection(storage: Storage, name: str, values: Mapping[str, str]) -> None:
    """Create or replace the row of `name` (a secret must be a Key Vault reference)."""
    check_connection_name(name, "connection name")
    secret_references(name, values)
    storage.table(TABLE_CONNECTION_DEFS).upsert_entity(
        {"PartitionKey": PARTITION, "RowKey": name, **values}, mode=UpdateMode.REPLACE)


def put_connections(storage: Storage, rows: Mapping[str, Mapping[str, str]]) -> int:
    """Create or replace many rows at once (100 per transaction): e.g. `bench scale`'s 1,000
    connections. The number written."""
    entities = []
    for name, values in rows.items():
        check_connection_name(name, "connection name")
        secret_references(name, values)
        entities.append({"PartitionKey": PARTITION, "RowKey": name, **values})
    table = storage.table(TABLE_CONNECTION_DEFS)
    for start in range(0, len(entities), 100):
        submit_upserts(table, entities[start:start + 100])
    return len(entities)


def mark_removing(storage: Storage, name: str) -> bool:
    """Ask the app to remove a connection (it deletes the BC subscriptions, then the row); False if
    there is no such row."""
    try:
        storage.table(TABLE_CONNECTION_DEFS).update_entity(
            {"PartitionKey": PARTITION, "RowKey": name, STATE: REMOVING}, mode=UpdateMode.MERGE)
    except ResourceNotFoundError:
        return False
    return True


def list_rows(storage: Storage, retry_total: int | None = None) -> list[dict[str, Any]]:
    """Every row (with `etag`), ordered by name (`retry_total`: fewer retries for a lookup's sake)."""
    table = storage.table(TABLE_CONNECTION_DEFS, retry_total=retry_total)
    query = "PartitionKey eq @pk"
    rows = (table.query_entities(query, parameters={"pk": PARTITION}) if retry_total is None else
            table.query_entities(query, parameters={"pk": PARTITION}, retry_total=retry_total,
                                 connection_timeout=READ_SECONDS, read_timeout=READ_SECONDS))
    return [dict(e, etag=e.metadata["etag"]) for e in rows]


# ---- the live catalogue ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Row:
    """What the catalogue made of one row: its settings (text), the connection or why not."""

    values: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]  # the resolved secrets (compared only: a rotation makes a new connection)
    conn: ConnectionSettings | None
    error: str
    removing: bool
    etag: str
    noted: str  # the row's `Invalid` column as read


class LiveConnections(Mapping[str, ConnectionSettings]):
    """App-setting connections plus the table's, refreshed in the background of lookups; thread-safe.

    `settings`: the app settings (their connections are `fixed`); `resolve`: a Key Vault reference →
    its secret (None: references cannot be resolved here); `on_removed(conn)`: called (outside any
    lock) with the name, the connection (None: its row was never valid) and the ETag of a `removing`
    row (empty: the row is gone) for a connection that left the table or is marked `removing`."""

    def __init__(self, settings: Settings, storage: Storage, *, resolve: Callable[[str], str] | None = None,
                 forget: Callable[[list[str]], None] | None = None,
                 on_removed: Callable[[str, ConnectionSettings | None, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._fixed = dict(settings.connections)
        self._storage = storage
        self._resolve = resolve
        self._forget = forget
        self._on_removed = on_removed
        self._clock = clock
        self._interval = settings.connections_refresh_seconds
        self._rows: dict[str, _Row] = {}
        self._view: dict[str, ConnectionSettings] = dict(self._fixed)
        self._removed: set[str] = set()
        self._misses: dict[str, float] = {}
        self._rereads: dict[str, float] = {}
        self._due = 0.0  # the first lookup loads the table
        self._loaded = False
        self._refreshing = False  # a background refresh is queued or running
        self._lock = threading.Lock()  # one refresh at a time
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="connection-rows")  # rows parsed, secrets read
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="connection-refresh")
        self.refreshes = 0

    # -- Mapping --
    def __getitem__(self, name: str) -> ConnectionSettings:
        fixed = self._fixed.get(name)
        if fixed is not None:  # an app-setting connection never waits for storage
            return fixed
        view = self._current()
        conn = view.get(name)
        if conn is not None:
            return conn
        return self._miss(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    # -- what the CLI and the status page show --
    @property
    def errors(self) -> dict[str, str]:
        """Invalid rows: name → why."""
        self._current()
        return {n: r.error for n, r in self._rows.items() if r.error and not r.removing}

    # -- loading --
    def _current(self) -> dict[str, ConnectionSettings]:
        if self._clock() >= self._due:
            if not self._loaded:
                with self._lock:  # everyone waits for the first load
                    if not self._loaded:
                        self._refresh_locked()
            elif not self._refreshing:  # later: read in the background, lookups go on meanwhile
                self._refreshing = True
                try:
                    self._refresher.submit(self._background_refresh)
                except RuntimeError:  # closed
                    self._refreshing = False
        return self._view

    def _background_refresh(self) -> None:
        try:
            with self._lock:
                if self._clock() >= self._due:
                    self._refresh_locked()
        finally:
            self._refreshing = False

    def refresh(self) -> None:
        """Read the table now (tests, the CLI)."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        try:
            entities = list_rows(self._storage, retry_total=RETRIES)
        except Exception as exc:  # noqa: BLE001 - the app-setting connections must go on working
            log.error("connection table: not read (%s); the connections loaded before stay", exc)
            self._due = self._clock() + min(self._interval, 5.0)
            self._loaded = True
            return
        names = [str(e["RowKey"]) for e in entities]
        parsed = dict(zip(names, self._pool.map(self._parse, entities, [self._rows.get(n) for n in names]),
                          strict=True))
        self._install(parsed)
        self._due = self._clock() + self._interval
        self._loaded = True
        self.refreshes += 1

    def _install(self, rows: dict[str, _Row]) -> None:
        """Make `rows` the table's state: the new view, removals announced, verdicts written back."""
        old_rows = self._rows
        gone = [(n, r) for n, r in old_rows.items()
                if r.conn is not None and not r.removing and (n not in rows or rows[n].removing)]
        view = dict(self._fixed)
        for name, row in rows.items():
            if row.conn is not None and not row.removing and name not in self._fixed:
                view[name] = row.conn
        self._rows = rows
        self._view = view
        self._removed |= {n for n, r in rows.items() if r.removing} | {n for n, _ in gone}
        self._removed -= set(view)
        self._misses.clear()
        for name, row in rows.items():
            before = old_rows.get(name)
            if row.error and (before is None or before.error != row.error):
                log.error("connection table: row %r is invalid: %s", name, row.error)
        self._note_verdicts(rows)
        if self._on_removed is None:
            return
        for name, row in rows.items():
            if row.removing:
                self._on_removed(name, row.conn, row.etag)
        for name, row in gone:
            if name not in rows:
                self._on_removed(name, row.conn, "")  # deleted by hand: the subscriptions still go

    def _note_verdicts(self, rows: dict[str, _Row]) -> None:
        table = None
        for name, row in rows.items():
            if row.removing or row.noted == row.error:
                continue
            try:
                table = table or self._storage.table(TABLE_CONNECTION_DEFS)
                table.update_entity({"PartitionKey": PARTITION, "RowKey": name, INVALID: row.error},
                                    mode=UpdateMode.MERGE, etag=row.etag,
                                    match_condition=_if_not_modified())
            except AzureError:  # changed meanwhile (read again next time) or storage trouble
                continue

    def _parse(self, entity: Mapping[str, Any], previous: _Row | None) -> _Row:
        name = str(entity["RowKey"])
        values = row_settings(entity)
        key = tuple(sorted(values.items()))
        removing = str(entity.get(STATE, "")) == REMOVING
        etag, noted = str(entity.get("etag", "")), str(entity.get(INVALID, "") or "")
        try:
            if name in self._fixed:
                raise SettingsError(f"connection {name!r} is declared in BC_CONNECTIONS too: the app "
                                    "settings win; remove this row or the name from BC_CONNECTIONS")
            refs = secret_references(name, values)
            if refs and self._resolve is None:
                raise SettingsError(f"connection {name!r}: its Key Vault references cannot be read here")
            resolve = self._resolve or (lambda ref: ref)
            try:
                resolved = with_secrets(values, resolve)
            except SecretUnavailable as exc:
                if previous is not None and previous.values == key and previous.conn is not None:
                    log.warning("connection %s: %s; keeping the secret read before", name, exc)
                    return dataclasses.replace(previous, removing=removing, etag=etag, noted=noted)
                raise
            secrets = tuple(resolved[k] for k in sorted(CONNECTION_SECRETS & set(values)))
            if previous is not None and previous.conn is not None and (previous.values, previous.secrets) == (
                    key, secrets):
                return dataclasses.replace(previous, removing=removing, etag=etag, noted=noted)
            conn = table_connection(self._settings.values, name, resolved)
            refuse_example_key(dataclasses.replace(self._settings, connections={name: conn}))
            return _Row(key, secrets, conn, "", removing, etag, noted)
        except (SettingsError, BadReference, SecretUnavailable) as exc:
            return _Row(key, (), None, str(exc), removing, etag, noted)

    def _miss(self, name: str) -> ConnectionSettings:
        """A name this process has not loaded: read its row now (at most every MISS_SECONDS)."""
        now = self._clock()
        row = self._rows.get(name)
        if (row is None or row.conn is None or row.removing) and now >= self._misses.get(name, 0) and \
                _valid_name(name):
            self._misses[name] = now + MISS_SECONDS
            row = self._read_row(name) or row
        if row is not None and row.conn is not None and not row.removing and name not in self._fixed:
            return row.conn
        known = tuple(self._view)
        if name in self._removed:
            raise UnknownConnection(name, known, REMOVED)
        if row is not None and row.error:
            raise UnknownConnection(name, known, f"is in the connection table but invalid: {row.error}")
        raise UnknownConnection(name, known)

    def _read_row(self, name: str) -> _Row | None:
        try:
            table = self._storage.table(TABLE_CONNECTION_DEFS, retry_total=RETRIES)
            entity = table.get_entity(PARTITION, name, retry_total=RETRIES, connection_timeout=READ_SECONDS,
                                      read_timeout=READ_SECONDS)
        except ResourceNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a lookup that cannot read says "unknown"
            log.warning("connection table: row %r not read (%s)", name, exc)
            return None
        row = self._parse(dict(entity, etag=entity.metadata["etag"]), self._rows.get(name))
        with self._lock:
            rows = dict(self._rows)
            rows[name] = row
            if row.conn is not None and not row.removing and name not in self._fixed:
                self._rows = rows
                self._view = {**self._view, name: row.conn}
                self._removed.discard(name)  # added again
            elif row.error:
                self._rows = rows
        return row

    def reread(self, name: str) -> bool:
        """Read a connection's row again with its secrets fresh from Key Vault (Entra refused the
        cached ones: a rotation); True when the connection changed."""
        row = self._rows.get(name)
        now = self._clock()
        if row is None or name in self._fixed or now < self._rereads.get(name, 0.0):
            return False
        self._rereads[name] = now + REREAD_SECONDS
        if self._forget is not None:
            self._forget([v for k, v in row.values if k in CONNECTION_SECRETS])
        new = self._read_row(name)
        return new is not None and new.conn is not None and new.conn is not row.conn

    def close(self) -> None:
        self._refresher.shutdown(wait=False)
        self._pool.shutdown(wait=False)


def _valid_name(name: object) -> bool:
    """Only a valid connection name is looked up in the table (never free text from a message)."""
    if not isinstance(name, str):
        return False
    try:
        check_connection_name(name)
    except SettingsError:
        return False
    return True


def _if_not_modified() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def removal_done(storage: Storage, name: str, etag: str) -> bool:
    """Delete a `removing` row once its connection is cleaned up (unless it changed meanwhile)."""
    return delete_if_match(storage.table(TABLE_CONNECTION_DEFS), PARTITION, name, etag)
