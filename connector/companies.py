"""Company discovery (`GET .../companies`) and resolution of a company given by id or name.

The chosen company of a connection is saved in the `bcconnections` table (row `state`) at sign-in;
a company named in a message or in `BC_COMPANY` wins over it.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any

from connector.bc_client import BCClient
from connector.settings import TABLE_CONNECTIONS
from connector.storage import Storage, read_entity

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
CACHE_SECONDS = 600.0

_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_cache_lock = threading.Lock()


class CompanyNotFound(LookupError):
    """The company named does not exist in the connection's environment."""


def list_companies(bc: BCClient, *, fresh: bool = False) -> list[dict[str, Any]]:
    """The environment's companies (id, name, displayName), cached for a few minutes."""
    key = bc.base_url
    with _cache_lock:
        hit = _cache.get(key)
    if hit and not fresh and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    companies = [
        {"id": c["id"], "name": c.get("name", ""), "displayName": c.get("displayName", "")}
        for c in bc.iter_entities("companies")
    ]
    with _cache_lock:
        _cache[key] = (time.monotonic(), companies)
    return companies


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


def saved_company_id(storage: Storage, connection: str) -> str:
    row = read_entity(storage.table(TABLE_CONNECTIONS), connection, "state")
    return str(row[0].get("company_id", "")) if row else ""


def resolve_company_id(bc: BCClient, storage: Storage, connection: str, configured: str,
                       wanted: str | None = None) -> str:
    """Company id for a call: `wanted` (id or name) > `configured` (BC_COMPANY) > the company saved
    at sign-in > the first company of the environment."""
    choice = (wanted or configured or "").strip()
    if choice and GUID_RE.match(choice) and not wanted:
        return choice.lower()
    if not choice:
        saved = saved_company_id(storage, connection)
        if saved:
            return saved
    companies = list_companies(bc)
    if not choice:
        if not companies:
            raise CompanyNotFound("the environment has no companies")
        return companies[0]["id"]
    return match_company(companies, choice)["id"]
