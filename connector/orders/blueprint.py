"""Queue triggers of Send Created Sales Order (`sales-orders` → BC → `sales-order-results`) and of
the declared commands (`bc-commands` → BC → `bc-command-results`); the core imported on first use
(cold start)."""
import azure.functions as func

from connector.settings import QUEUE_COMMANDS, QUEUE_SALES_ORDERS
from connector.telemetry import invocation

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE_SALES_ORDERS, connection="AzureWebJobsStorage")
@invocation
def send_created_sales_order(msg: func.QueueMessage) -> None:
    """One order message → one BC order and one result; raises only to have the host retry."""
    from connector.orders.send import OrderDelivery
    from connector.runtime import get_runtime
    from connector.storage import message_text

    runtime = get_runtime()
    delivery = OrderDelivery(text=message_text(msg.get_body()), message_id=msg.id or "",
                             dequeue_count=msg.dequeue_count or 1,
                             max_dequeue_count=runtime.max_dequeue_count)
    runtime.orders.send_sales_order(delivery)


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE_COMMANDS, connection="AzureWebJobsStorage")
@invocation
def send_declared_command(msg: func.QueueMessage) -> None:
    """One `bc-commands` message → one BC entity (created, or upserted) and one result."""
    from connector.orders.send import OrderDelivery
    from connector.runtime import get_runtime
    from connector.storage import message_text

    runtime = get_runtime()
    delivery = OrderDelivery(text=message_text(msg.get_body()), message_id=msg.id or "",
                             dequeue_count=msg.dequeue_count or 1,
                             max_dequeue_count=runtime.max_dequeue_count, queue=QUEUE_COMMANDS)
    runtime.orders.send_command(delivery)
