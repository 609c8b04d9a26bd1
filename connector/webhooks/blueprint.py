"""Webhook triggers: the BC receiver (`GET|POST webhooks/bc`), the `bc-notifications` processor, the
subscription renewal timer, the sweep timer, and `POST|DELETE connections/{connection}/subscriptions`.
The core is imported inside the functions: the host's indexing (cold start) must not wait for it.
"""
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import azure.functions as func

from connector.errors import ConnectorError, route_answer
from connector.settings import QUEUE_NOTIFICATIONS
from connector.telemetry import invocation

if TYPE_CHECKING:
    from connector.webhooks.service import WebhooksService

bp = func.Blueprint()


def _json(body: dict, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.route(route="webhooks/bc", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@invocation
def bc_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Handshake (token echoed, 200) or notifications (202 once queued; 503 if storage fails)."""
    from connector.runtime import get_runtime
    from connector.webhooks import receiver

    reply = receiver.receive_request(req.params, req.headers, req.get_body,
                                     lambda: get_runtime().webhook_context)
    return func.HttpResponse(reply.body, status_code=reply.status, mimetype=reply.mimetype,
                             headers=dict(reply.headers))


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE_NOTIFICATIONS, connection="AzureWebJobsStorage")
@invocation
def process_bc_notifications(msg: func.QueueMessage) -> None:
    """Announce what a batch of notifications created; raises only to have the host retry."""
    from connector.runtime import get_runtime
    from connector.storage import message_text

    get_runtime().webhooks.process_notifications(message_text(msg.get_body()), owner=msg.id or "")


@bp.timer_trigger(schedule="%SUBSCRIPTION_RENEWAL_SCHEDULE%", arg_name="timer")
@invocation
def renew_subscriptions(timer: func.TimerRequest) -> None:
    """Create, renew and recreate the webhook subscriptions of every connection."""
    from connector.health.checks import check_all
    from connector.runtime import get_runtime

    runtime = get_runtime()
    try:
        runtime.environments.check_all()  # a restore or copy first: it re-subscribes or stops the connection
        if runtime.fanout.enabled:
            runtime.fanout.enqueue("renewal")
        else:
            runtime.webhooks.reconcile_all()
    finally:
        check_all(runtime.settings, runtime.storage, runtime.health, runtime.health.now())


@bp.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer")
@invocation
def sweep_created(timer: func.TimerRequest) -> None:
    """Announce created entities the webhooks missed."""
    from connector.runtime import get_runtime

    runtime = get_runtime()
    if runtime.fanout.enabled:
        runtime.fanout.enqueue("sweep")
    else:
        runtime.webhooks.sweep_all()


def _subscription_call(req: func.HttpRequest,
                       call: Callable[["WebhooksService", str], dict]) -> func.HttpResponse:
    """Our admin route (never BC's receiver, so 4xx/5xx are fine): each failure as a JSON error."""
    from connector.runtime import get_runtime

    try:
        return _json(call(get_runtime().webhooks, req.route_params.get("connection", "")), 200)
    except ConnectorError as exc:
        return _json(*route_answer(exc))


@bp.route(route="connections/{connection}/subscriptions", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
@invocation
def reconcile_subscriptions_now(req: func.HttpRequest) -> func.HttpResponse:
    """200 with {"created", "renewed", "recreated", "unchanged", "unsupported", "failed", ...}."""
    return _subscription_call(req, lambda webhooks, conn: webhooks.reconcile(conn).as_dict())


@bp.route(route="connections/{connection}/subscriptions", methods=["DELETE"],
          auth_level=func.AuthLevel.ADMIN)  # re-binding or unhooking BC takes the master key
@invocation
def delete_subscriptions_now(req: func.HttpRequest) -> func.HttpResponse:
    """200 with {"deleted": [entity sets]}: the connection's subscriptions are gone from BC."""
    return _subscription_call(req, lambda webhooks, conn: {"deleted": webhooks.delete_subscriptions(conn)})
