"""Company discovery (`GET .../companies`) and resolution of a company given by id or name.

The chosen company of a connection and the companies discovered are saved in the `bcconnections`
table (row `state`: `company_id`, `companies` as JSON, `discovered_at`) at sign-in, or on first use
for a client-credentials connection; `/api/status` shows them without calling BC. A company named
in a message or in `BC_COMPANY` wins over the saved one.
"""
from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode

from connector.bc.client import BCClient
from connector.bc.keys import GUID_RE
from connector.errors import ConnectorError
from connector.settings import TABLE_CONNECTIONS
from connector.storage import Storage, read_entity

CACHE_SECONDS = 600.0  # the environment's company list
SAVED_SECONDS = 30.0  # a connection's saved company (another instance's sign-in shows after this)

class CompanyNotFound(ConnectorError, LookupError):
    """The company named does not exist in the connection's environment (a route answers 409)."""

    retryable = False
    http_status = 409


def match_company(companies: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """The company whose id, name or displayName equals `wanted` (case-insensitive for names)."""
    for c in companies:
        if c["id"].lower() == wanted.lower():
            return c
    for c in companies:
        if wanted.casefold() in (c["name"].casefold(), c["displayName"].casefold()):
            return c
    names = ", ".join(c["name"] for c in companies) or "none"
    raise CompanyNotFound(f"company {wanted!r} not found (available: {names})")


def choose_company(companies: list[dict[str, Any]], configured: str) -> dict[str, Any] | None:
    """The company a connection works in: `configured` (BC_COMPANY, id or name) if set, else the
    first one; None when the environment has none. Raises CompanyNotFound for an unknown name."""
    if configured:
        return match_company(companies, configured)
    return companies[0] if companies else None


def saved_company_id(storage: Storage, connection: str) -> str:
    row = read_entity(storage.table(TABLE_CONNECTIONS), connection, "state")
    return str(row[0].get("company_id", "")) if row else ""


class Companies:
    """Company discovery and resolution for every connection; the environment's company list is
    cached per BC environment for `ttl` seconds, a connection's saved company for `saved_ttl`
    (one object per runtime)."""

    def __init__(self, storage: Storage, *, ttl: float = CACHE_SECONDS, saved_ttl: float = SAVED_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._storage = storage
        self._ttl = ttl
        self._saved_ttl = saved_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._saved: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def list(self, bc: BCClient, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The environment's companies (id, name, displayName)."""
        return self._cached(self._cache, bc.base_url, self._ttl, lambda: [
            {"id": c["id"], "name": c.get("name", ""), "displayName": c.get("displayName", "")}
            for c in bc.iter_entities("companies")
        ], fresh=fresh)

    def saved_id(self, connection: str) -> str:
        """The company saved for `connection` ("" if none yet), read at most every `saved_ttl`."""
        return self._cached(self._saved, connection, self._saved_ttl,
                            lambda: saved_company_id(self._storage, connection))

    def _cached(self, cache: dict[str, tuple[float, Any]], key: str, ttl: float,
                load: Callable[[], Any], *, fresh: bool = False) -> Any:
        """`cache[key]` while younger than `ttl` (and not `fresh`), else `load()`, remembered."""
        with self._lock:
            hit = cache.get(key)
        if hit and not fresh and self._clock() - hit[0] < ttl:
            return hit[1]
        value = load()
        with self._lock:
            cache[key] = (self._clock(), value)
        return value

    def discover(self, bc: BCClient, connection: str,
                 configured: str) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
        """List the environment's companies afresh, choose one (see `choose_company`) and save both in
        the connection's `state` row. Returns (companies, chosen); chosen is None when the environment
        has no companies or `configured` names none of them."""
        companies = self.list(bc, fresh=True)
        try:
            chosen = choose_company(companies, configured)
        except CompanyNotFound:
            chosen = None
        self._storage.table(TABLE_CONNECTIONS).upsert_entity({
            "PartitionKey": connection,
            "RowKey": "state",
            "company_id": chosen["id"] if chosen else "",
            "companies": json.dumps(companies, separators=(",", ":")),
            "discovered_at": datetime.now(UTC),
        }, mode=UpdateMode.MERGE)
        with self._lock:
            self._saved[connection] = (self._clock(), chosen["id"] if chosen else "")
        return companies, chosen

    def resolve_id(self, bc: BCClient, connection: str, configured: str, wanted: str | None = None) -> str:
        """Company id for a call: `wanted` (id or name) > `configured` (BC_COMPANY) > the company saved
        at sign-in > the first company of the environment."""
        choice = (wanted or configured or "").strip()
        if choice and GUID_RE.match(choice) and not wanted:
            return choice.lower()
        if not choice:
            saved = self.saved_id(connection)
            if saved:
                return saved
            chosen = self.discover(bc, connection, "")[1]
            if chosen is None:
                raise CompanyNotFound("the environment has no companies")
            return str(chosen["id"])
        return match_company(self.list(bc), choice)["id"]
