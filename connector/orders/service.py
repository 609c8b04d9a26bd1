"""The orders service: one `sales-orders` delivery (or one `bc-commands` delivery) → BC → one result.

Built once by the runtime from an `OrderContext` (its collaborators, named); the blueprint calls
`get_runtime().orders.<method>(delivery)`. The path of a sales order: `send.py` (parse, claim, POST,
result), `claims.py` (exactly once per key), `payloads.py` (claim-checked blobs), the BC client and the
storage layer; the whole story is docs/sales-orders.md.
"""
from __future__ import annotations

from connector.orders.commands import CommandResult, handle_command
from connector.orders.context import OrderContext
from connector.orders.schema import SalesOrderResult
from connector.orders.send import Deferral, OrderDelivery, handle_delivery


class OrdersService:
    """Send Created Sales Order and the declared commands."""

    def __init__(self, context: OrderContext):
        self._context = context

    def send_sales_order(self, delivery: OrderDelivery) -> SalesOrderResult | Deferral:
        """One `sales-orders` delivery: exactly one result, or a deferral (its copy will answer);
        raises only to have the host retry."""
        return handle_delivery(self._context, delivery)

    def send_command(self, delivery: OrderDelivery) -> CommandResult | Deferral:
        """One `bc-commands` delivery: exactly one result, or a deferral."""
        return handle_command(self._context, delivery)
