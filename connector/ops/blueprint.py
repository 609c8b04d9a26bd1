"""Operator routes: `GET /api/health` (liveness, no BC or storage call) and `GET /api/status`.

Like every blueprint, it imports the core inside the functions: the host's indexing (cold start) must
not wait for the storage, BC and crypto libraries.
"""
import json

import azure.functions as func

from connector.telemetry import invocation

bp = func.Blueprint()

_NO_STORE = {"Cache-Control": "no-store", "Vary": "Accept"}


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@invocation
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"status": "ok"}), mimetype="application/json")


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@invocation
def status(req: func.HttpRequest) -> func.HttpResponse:
    """JSON for tools; an HTML page when the client prefers `text/html` (a browser)."""
    from connector.bc.timestamps import utc_now
    from connector.ops.paging import requested_page
    from connector.ops.status_page import page_headers, render_status_page, wants_html
    from connector.runtime import get_runtime

    now = utc_now()
    report = get_runtime().status.report(now, requested_page(req.params.get("page")))
    if wants_html(req.headers.get("Accept")):
        keep = {"code": req.params["code"]} if req.params.get("code") else {}  # the function key
        return func.HttpResponse(render_status_page(report, now, keep), mimetype="text/html",
                                 charset="utf-8",
                                 headers=_NO_STORE | page_headers())
    return func.HttpResponse(json.dumps(report, indent=2), mimetype="application/json", headers=_NO_STORE)
