"""What the orders folder needs from the rest of the connector, named: the runtime builds one
`OrderContext` and hands it to the `OrdersService` (connector/orders/service.py)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from connector.bc.client import BCClient
from connector.bc.lookups import KeyLookups
from connector.orders.variants import ItemVariants
from connector.settings import Settings
from connector.storage import Storage
from connector.table_batches import TableBatches
from connector.telemetry import Telemetry


@dataclass(frozen=True)
class OrderContext:
    """The collaborators of sending orders and commands: settings, storage (claims, payload blobs,
    the one send path for results and copies), telemetry, the batched key look-ups, the claim writes
    sent together (`table_batches`), the item variant cache, a connection's BC client
    (`bc(connection)`) and company (`company_id(connection, wanted)`)."""

    settings: Settings
    storage: Storage
    telemetry: Telemetry
    key_lookups: KeyLookups
    table_batches: TableBatches
    item_variants: ItemVariants
    bc: Callable[[str], BCClient]
    company_id: Callable[[str, str | None], str]
