"""The `bc-connection-work` queue trigger: one timer unit (pull, sweep or renewal) of one connection.
The core is imported inside the function (cold start)."""
import azure.functions as func

from connector.settings import QUEUE_CONNECTION_WORK
from connector.telemetry import invocation

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE_CONNECTION_WORK, connection="AzureWebJobsStorage")
@invocation
def connection_work(msg: func.QueueMessage) -> None:
    """Run one unit a timer queued; raises only to have the host retry."""
    from connector.runtime import get_runtime
    from connector.storage import message_text

    runtime = get_runtime()
    runtime.fanout.run(message_text(msg.get_body()), msg.id or "", {
        "pull": runtime.item_pull.pull_company,
        "sweep": runtime.webhooks.sweep,
        "renewal": runtime.webhooks.reconcile_unless_busy})
