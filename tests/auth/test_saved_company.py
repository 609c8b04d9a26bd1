"""A connection's saved company is read from `bcconnections` at most every SAVED_SECONDS per instance
(one table read per order was a tenth of the order path's CPU); this instance's own discovery is seen
at once, another instance's once the cache is older than that."""
from __future__ import annotations

from typing import Any

from azure.data.tables import UpdateMode

from connector.bc.companies import SAVED_SECONDS, Companies
from connector.settings import TABLE_CONNECTIONS, StorageSettings
from connector.storage import Storage

FIRST = "11111111-1111-1111-1111-111111111111"
SECOND = "22222222-2222-2222-2222-222222222222"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _BC:
    """The part of the BC client `discover` uses: the companies of the environment."""

    base_url = "https://bc.example/v2.0/t/production/api/v2.0"

    def __init__(self, companies: list[dict[str, Any]]) -> None:
        self.companies = companies

    def iter_entities(self, path: str) -> list[dict[str, Any]]:
        assert path == "companies"
        return self.companies


def _save(storage: Storage, company_id: str) -> None:
    """Another instance's sign-in: the state row changes under this one."""
    storage.table(TABLE_CONNECTIONS).upsert_entity(
        {"PartitionKey": "default", "RowKey": "state", "company_id": company_id}, mode=UpdateMode.MERGE)


def test_the_saved_company_is_cached_briefly_and_own_discovery_shows_at_once(azurite: Any) -> None:
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    storage = Storage(StorageSettings(azurite.connection_string))
    clock = _Clock()
    companies = Companies(storage, clock=clock)
    bc: Any = _BC([{"id": SECOND, "name": "B", "displayName": "B"}])
    _save(storage, FIRST)
    assert companies.resolve_id(bc, "default", "") == FIRST
    _save(storage, SECOND)
    clock.now += SAVED_SECONDS / 2
    assert companies.resolve_id(bc, "default", "") == FIRST  # cached: no table read per call
    clock.now += SAVED_SECONDS / 2
    assert companies.resolve_id(bc, "default", "") == SECOND  # another instance's change, in time
    bc.companies = [{"id": FIRST, "name": "A", "displayName": "A"}]
    companies.discover(bc, "default", "")  # this instance's sign-in
    assert companies.resolve_id(bc, "default", "") == FIRST
