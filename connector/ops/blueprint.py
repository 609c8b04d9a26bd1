"""Operator routes: `GET /api/health` (liveness, no BC or storage call) and `GET /api/status`."""
import json

import azure.functions as func

from connector.ops.status import read_status
from connector.runtime import get_runtime

bp = func.Blueprint()

_NO_STORE = {"Cache-Control": "no-store"}


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"status": "ok"}), mimetype="application/json")


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    report = read_status(runtime.settings, runtime.storage)
    return func.HttpResponse(json.dumps(report, indent=2), mimetype="application/json", headers=_NO_STORE)
