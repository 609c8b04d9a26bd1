"""Schedule Pull Items: the timer (`%ITEM_PULL_SCHEDULE%`), `POST connections/{connection}/pulls/items`
and the `bc-item-pulls` queue trigger that runs what the route asked for.

The route only queues the request and answers 202 at once: a pull may take up to ITEM_PULL_MAX_SECONDS
(beyond Azure's 230 s limit on HTTP responses) and a long first pull goes on in chunks. The core is
imported inside the functions (cold start).
"""
import json
import logging

import azure.functions as func

from connector.bc.timestamps import iso
from connector.errors import route_answer
from connector.settings import QUEUE_ITEM_PULLS, UnknownConnection
from connector.telemetry import invocation

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _json(body: dict, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.timer_trigger(schedule="%ITEM_PULL_SCHEDULE%", arg_name="timer")
@invocation
def scheduled_item_pull(timer: func.TimerRequest) -> None:
    """Pull items of every configured connection (each run resumes where the last one stopped)."""
    from connector.runtime import get_runtime

    runtime = get_runtime()
    if runtime.fanout.enabled:
        runtime.fanout.enqueue("pull")
        return
    for result in runtime.item_pull.pull_all():
        log.info("item pull: %s", result.as_dict())


@bp.route(route="connections/{connection}/pulls/items", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
@invocation
def pull_items_now(req: func.HttpRequest) -> func.HttpResponse:
    """202 {"status": "queued", "connection", "requestedAt"}; 404 for an unknown connection."""
    from connector.runtime import get_runtime

    try:
        request = get_runtime().item_pull.request_pull(req.route_params.get("connection", ""))
    except UnknownConnection as exc:
        return _json(*route_answer(exc))
    return _json({"status": "queued", "connection": request.connection,
                  "requestedAt": iso(request.requestedAt)}, 202)


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE_ITEM_PULLS, connection="AzureWebJobsStorage")
@invocation
def requested_item_pull(msg: func.QueueMessage) -> None:
    """Run a requested pull (or its continuation); raises only to have the host retry."""
    from connector.runtime import get_runtime

    get_runtime().item_pull.handle_pull_request(msg.get_body().decode("utf-8"), msg.id or "")
