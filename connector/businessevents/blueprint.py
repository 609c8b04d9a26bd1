"""Business events: the receiver (`POST webhooks/bc/events`). Their subscriptions are kept by the
webhook renewal run; their notifications are processed by the `bc-notifications` processor.
The core is imported inside the function: the host's indexing (cold start) must not wait for it.
"""
import azure.functions as func

from connector.telemetry import invocation

bp = func.Blueprint()


@bp.route(route="webhooks/bc/events", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@invocation
def bc_business_event(req: func.HttpRequest) -> func.HttpResponse:
    """202 once queued (503 if storage fails); never a 4xx, whatever the body."""
    from connector.businessevents import receiver
    from connector.runtime import get_runtime

    reply = receiver.receive_request(req.params, req.headers, req.get_body,
                                     lambda: get_runtime().webhook_context)
    return func.HttpResponse(reply.body, status_code=reply.status, mimetype=reply.mimetype,
                             headers=dict(reply.headers))
