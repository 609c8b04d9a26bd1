"""What a BC tenant can watch and serve, asked of BC's runtime API (`microsoft/runtime/beta`):
`webhookSupportedResources` (page 5460: `v2.0/items`, `contoso/shop/v1.0/webOrders`, …) and
`apiRoutes` (page 5462: `v2.0`, `contoso/shop/v1.0`, …); and a ready trigger declaration for one of
them (`python -m connector entities`, docs/entities.md)."""
from __future__ import annotations

import logging
import re
from typing import Any

from connector.bc.client import BCClient
from connector.bc.errors import BCError
from connector.bc.keys import checked_guid
from connector.declarations import STANDARD_API, singular

log = logging.getLogger(__name__)


def runtime_api(bc: BCClient, company_id: str, entity_set: str) -> str:
    """A company's entity set of BC's `microsoft/runtime/beta` API."""
    company = checked_guid(company_id, "companyId")
    return f"{bc.environment_root}/api/microsoft/runtime/beta/companies({company})/{entity_set}"


def supported_resources(bc: BCClient, company_id: str) -> set[str] | None:
    """The resources BC can watch in this company (`v2.0/items`, `contoso/shop/v1.0/webOrders`);
    None when BC cannot say (a retryable failure raises)."""
    try:
        rows = list(bc.iter_entities(runtime_api(bc, company_id, "webhookSupportedResources")))
    except BCError as exc:
        if exc.retryable:
            raise
        log.warning("webhookSupportedResources unavailable (%s)", exc)
        return None
    return {str(r.get("resource", "")) for r in rows}


def api_routes(bc: BCClient, company_id: str) -> list[str]:
    """Every API route installed in the tenant (`v2.0`, `contoso/shop/v1.0`, …)."""
    return [str(r.get("route", "")) for r in bc.iter_entities(runtime_api(bc, company_id, "apiRoutes"))]


def split_resource(resource: str) -> tuple[str, str]:
    """(api route, entity set) of a `webhookSupportedResources` value."""
    api, _, entity_set = resource.rpartition("/")
    return api or STANDARD_API, entity_set


def declaration(api: str, entity_set: str) -> dict[str, Any]:
    """A ready `TRIGGERS` element for an entity set: its queue named after it (`bc-<entity-set>` in
    kebab case, the publisher's name first for a custom API), created changes only."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", entity_set).lower()
    owner = "bc" if api == STANDARD_API else api.split("/", 1)[0].lower()
    queue = re.sub(r"[^a-z0-9-]+", "-", f"{owner}-{words}").strip("-")[:63]
    declared: dict[str, Any] = {"entitySet": entity_set, "queue": queue, "changeTypes": ["created"]}
    if api != STANDARD_API:
        declared = {"api": api, **declared}
    if entity_set.endswith("LedgerEntries"):  # ledger entries are numbered by `entryNumber`
        declared["numberField"] = "entryNumber"
    declared["entity"] = singular(entity_set)
    return declared
