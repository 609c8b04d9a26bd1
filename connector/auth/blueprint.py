"""Sign-in routes: `GET connections/{connection}/login` (admin key), `POST connections/{c}/login-link`
(admin key in a header: a one-time link) and `GET auth/login?ticket=` (that link), `POST auth/callback`
(Entra's form_post; GET kept for links already issued). The core, msal among it, is imported inside
the functions (cold start)."""
from urllib.parse import parse_qs

import azure.functions as func

from connector.telemetry import invocation

bp = func.Blueprint()

_NO_STORE = {"Cache-Control": "no-store"}


def _html(page: str, status: int) -> func.HttpResponse:
    from connector.ops.status_page import page_headers

    return func.HttpResponse(page, status_code=status, mimetype="text/html", charset="utf-8",
                             headers=_NO_STORE | page_headers())


# ADMIN: whoever signs in binds the connection to their BC identity, so it takes the master key
@bp.route(route="connections/{connection}/login", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
@invocation
def sign_in_login(req: func.HttpRequest) -> func.HttpResponse:
    from connector.auth.pages import sign_in_failed_page
    from connector.auth.signin import SignInRejected
    from connector.runtime import get_runtime

    try:
        url = get_runtime().sign_in.start(req.route_params.get("connection", ""))
    except SignInRejected as exc:
        return _html(sign_in_failed_page(exc.message), exc.status)
    return func.HttpResponse(status_code=302, headers={"Location": url, **_NO_STORE})


MAX_FORM_BYTES = 16384  # Entra's form_post: code, state, session_state, maybe an error (a few KB)
MAX_FORM_FIELDS = 20


@bp.route(route="connections/{connection}/login-link", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@invocation
def sign_in_link(req: func.HttpRequest) -> func.HttpResponse:
    """A one-time, short-lived sign-in link (send the key in the `x-functions-key` header)."""
    import json

    from connector.bc.timestamps import utc_now
    from connector.runtime import get_runtime
    from connector.settings import UnknownConnection

    try:
        link = get_runtime().sign_in.mint_link(req.route_params.get("connection", ""), utc_now())
    except UnknownConnection as exc:
        return func.HttpResponse(json.dumps({"error": str(exc)}), status_code=404,
                                 mimetype="application/json")
    return func.HttpResponse(json.dumps(link.as_dict()), mimetype="application/json", headers=_NO_STORE)


# ANONYMOUS: the signed, one-time ticket in the link is the credential (connector/auth/signin_links.py)
@bp.route(route="auth/login", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@invocation
def sign_in_with_link(req: func.HttpRequest) -> func.HttpResponse:
    from connector.auth.pages import sign_in_failed_page
    from connector.auth.signin import SignInRejected
    from connector.bc.timestamps import utc_now
    from connector.runtime import get_runtime

    try:
        url = get_runtime().sign_in.start_from_link(req.params.get("ticket", ""), utc_now())
    except SignInRejected as exc:
        return _html(sign_in_failed_page(exc.message), exc.status)
    return func.HttpResponse(status_code=302, headers={"Location": url, **_NO_STORE})


def _callback_params(req: func.HttpRequest) -> dict[str, str]:
    """Entra's answer: the form fields of a `form_post` POST, else the query of a GET. A form larger
    than Entra ever posts is a 400 (`SignInRejected`), never a 500."""
    from connector.auth.signin import SignInRejected

    if req.method.upper() != "POST":
        if len(req.params) > MAX_FORM_FIELDS:
            raise SignInRejected(f"The sign-in answer has more than {MAX_FORM_FIELDS} parameters.")
        return dict(req.params)
    body = req.get_body()
    if len(body) > MAX_FORM_BYTES:
        raise SignInRejected(f"The sign-in answer is larger than {MAX_FORM_BYTES} bytes.", 413)
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more than MAX_FORM_FIELDS fields
        raise SignInRejected(f"The sign-in answer has more than {MAX_FORM_FIELDS} fields.") from None
    return {name: values[0] for name, values in form.items()}


@bp.route(route="auth/callback", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@invocation
def sign_in_callback(req: func.HttpRequest) -> func.HttpResponse:
    from connector.auth.pages import sign_in_failed_page, signed_in_page
    from connector.auth.signin import SignInRejected
    from connector.runtime import get_runtime

    try:
        result = get_runtime().sign_in.complete(_callback_params(req))
    except SignInRejected as exc:
        return _html(sign_in_failed_page(exc.message), exc.status)
    return _html(signed_in_page(result), 200)

