"""Schedule Pull Items: the timer (`%ITEM_PULL_SCHEDULE%`) and `POST connections/{connection}/pulls/items`.

The route runs the pull inline rather than enqueueing it: a run is time-bounded (below Azure's
230 s HTTP limit) and resumable, so the caller gets what was done (items emitted, finished or not)
in the 202, and the lease answers "already running" when the timer or another instance is pulling.
"""
import json
import logging

import azure.functions as func

from connector.bc_errors import BCError, TokenUnavailable
from connector.companies import CompanyNotFound
from connector.item_pull import PullInterrupted, pull_all, pull_on_request
from connector.runtime import get_runtime
from connector.settings import UnknownConnection

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _json(body: dict, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.timer_trigger(schedule="%ITEM_PULL_SCHEDULE%", arg_name="timer")
def scheduled_item_pull(timer: func.TimerRequest) -> None:
    """Pull items of every configured connection (each run resumes where the last one stopped)."""
    for result in pull_all(get_runtime()):
        log.info("item pull: %s", result.as_dict())


@bp.route(route="connections/{connection}/pulls/items", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
def pull_items_now(req: func.HttpRequest) -> func.HttpResponse:
    """202 with {"status": "started" | "already-running", "emitted", "finished", ...}."""
    connection = req.route_params.get("connection", "")
    try:
        result = pull_on_request(get_runtime(), connection)
    except (UnknownConnection, CompanyNotFound) as exc:
        return _json({"error": {"code": type(exc).__name__, "message": str(exc)}}, 404)
    except TokenUnavailable as exc:
        return _json({"error": {"code": exc.state, "message": str(exc)}}, 409)
    except PullInterrupted as exc:
        return _json({"error": {"code": "PullInterrupted", "message": str(exc)}}, 409)
    except BCError as exc:
        return _json({"error": exc.as_dict()}, 502)
    status = "already-running" if result.status == "already-running" else "started"
    return _json({**result.as_dict(), "status": status}, 202)
