"""Connection health routes: `POST connections/{connection}/environment/check` (read BC's Admin
Center operations log now and act on what changed) and `.../environment/confirm` (a person confirms
the connection may act on its environment after a copy: the pause is lifted)."""
import json

import azure.functions as func

from connector.telemetry import invocation

bp = func.Blueprint()


def _json(body: dict, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.route(route="connections/{connection}/environment/check", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
@invocation
def check_environment_now(req: func.HttpRequest) -> func.HttpResponse:
    """200 with the operations acted on (copy, restore, rename, update)."""
    from connector.errors import ConnectorError, route_answer
    from connector.runtime import get_runtime
    from connector.settings import UnknownConnection

    runtime = get_runtime()
    try:
        conn = runtime.settings.connection(req.route_params.get("connection", ""))
    except UnknownConnection as exc:
        return _json({"error": {"code": "UnknownConnection", "message": str(exc)}}, 404)
    if not conn.admin_center:
        return _json({"error": {"code": "AdminCenterOff", "message": f"connection {conn.name!r} does not "
                                "watch its environment", "fix": "set BC_ADMIN_CENTER=true (needs "
                                "AdminCenter.ReadWrite.All, which can also delete environments)"}}, 409)
    try:
        handled = runtime.environments.check(conn.name)
    except ConnectorError as exc:
        return _json(*route_answer(exc))
    return _json({"connection": conn.name, "handled": [{"id": o.get("id"), "type": o.get("type")}
                                                       for o in handled]})


@bp.route(route="connections/{connection}/environment/confirm", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
@invocation
def confirm_environment(req: func.HttpRequest) -> func.HttpResponse:
    """A person confirms the connection may act on its (copied) environment: the pause is lifted."""
    from connector.runtime import get_runtime
    from connector.settings import UnknownConnection

    runtime = get_runtime()
    try:
        conn = runtime.settings.connection(req.route_params.get("connection", ""))
    except UnknownConnection as exc:
        return _json({"error": {"code": "UnknownConnection", "message": str(exc)}}, 404)
    return _json({"connection": conn.name, "resumed": runtime.environments.resume(conn.name)})
