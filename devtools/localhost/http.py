"""HTTP triggers on a werkzeug server: routing, auth levels, request/response conversion (dev tooling).

Not deployed. Mirrors the Functions host: `/<routePrefix>/<route>`, `{name}` / `{name?}` / `{*rest}`
route parameters, method filtering (404/405), function keys, the request body limit
(FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: 413 before the function runs), and a bare 500 for unhandled errors.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .config import is_true
from .functions import FunctionSpec, Invoker
from .stopping import Deadline, join_within

log = logging.getLogger("devtools.localhost")

FUNCTION_KEY = "LOCAL_HOST_FUNCTION_KEY"
BODY_LIMIT = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"  # the Functions host's own setting (bytes)
DEFAULT_BODY_LIMIT = 104_857_600  # the host's default: 100 MB
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


def route_rules(prefix: str, route: str) -> list[str]:
    """werkzeug rule strings for a Functions route; a trailing `{x?}` also yields the rule without it."""
    segments = [s for s in route.strip("/").split("/") if s]
    rules = []
    while True:
        path = "/".join(_PARAM.sub(_converter, s) for s in segments)
        rules.append("/" + "/".join(p for p in (prefix, path) if p))
        if not segments or not _PARAM.fullmatch(segments[-1]) or not segments[-1].endswith("?}"):
            return rules
        segments = segments[:-1]


def _converter(match: re.Match[str]) -> str:
    catch_all, name, _ = match.groups()
    return f"<path:{name}>" if catch_all else f"<{name}>"


class HttpApp:
    """The WSGI application serving the app's HTTP-triggered functions."""

    def __init__(
        self, specs: list[FunctionSpec], prefix: str, invoker: Invoker, env: Mapping[str, str]
    ) -> None:
        self._specs = {s.name: s for s in specs}
        self._invoker = invoker
        self._env = env
        rules = []
        for spec in specs:
            methods = [m.upper() for m in spec.trigger.get("methods") or []] or None
            for rule in route_rules(prefix, spec.trigger.get("route") or spec.name):
                rules.append(Rule(rule, endpoint=spec.name, methods=methods))
        self._map = Map(rules, strict_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            name, route_params = self._map.bind_to_environ(environ).match()
        except HTTPException as exc:
            return exc.get_response(environ)(environ, start_response)
        spec = self._specs[name]
        if not self._authorized(spec, request):
            return Response("Unauthorized", status=401)(environ, start_response)
        limit = self._body_limit()
        request.max_content_length = limit + 1  # a chunked body is read no further than one byte over
        try:
            if len(request.get_data()) > limit:
                return _too_large()(environ, start_response)
        except RequestEntityTooLarge:  # Content-Length over the limit: not read at all
            return _too_large()(environ, start_response)
        values = {key: str(value) for key, value in route_params.items()}  # the worker passes text
        return self._invoke(spec, request, values)(environ, start_response)

    def _body_limit(self) -> int:
        """FUNCTIONS_REQUEST_BODY_SIZE_LIMIT in bytes, as the Functions host reads it (100 MB unset)."""
        try:
            return int(self._env.get(BODY_LIMIT) or DEFAULT_BODY_LIMIT)
        except ValueError:
            return DEFAULT_BODY_LIMIT

    def _authorized(self, spec: FunctionSpec, request: Request) -> bool:
        level = str(spec.trigger.get("authLevel", "FUNCTION")).upper()
        if level == "ANONYMOUS" or not is_true(self._env.get("LOCAL_HOST_REQUIRE_KEYS")):
            return True
        given = request.args.get("code") or request.headers.get("x-functions-key") or ""
        names = ["LOCAL_HOST_MASTER_KEY"] if level == "ADMIN" else [FUNCTION_KEY, "LOCAL_HOST_MASTER_KEY"]
        keys = [self._env.get(n) for n in names]
        return bool(given) and any(k and hmac.compare_digest(given.encode(), k.encode()) for k in keys)

    def _invoke(self, spec: FunctionSpec, request: Request, route_params: dict[str, str]) -> Response:
        def bind() -> func.HttpRequest:
            return func.HttpRequest(
                method=request.method,
                url=request.url,
                headers=dict(request.headers.items()),
                params=dict(request.args.items()),
                route_params=route_params,
                body=request.get_data(),
            )

        try:
            result = self._invoker.invoke(spec, bind)
        except Exception:  # logged by the invoker; the body never carries the error
            return _internal_error()
        try:
            return to_response(result)
        except TypeError:
            log.exception("%s: unusable HTTP result", spec.name)
            return _internal_error()


def _too_large() -> Response:
    return Response("Request Entity Too Large", status=413, mimetype="text/plain")


def _internal_error() -> Response:
    return Response("Internal Server Error", status=500, mimetype="text/plain")


def to_response(result: object) -> Response:
    """A werkzeug response for what an HTTP function returned (HttpResponse, str or None)."""
    if result is None:
        return Response(status=204)
    if isinstance(result, str):
        return Response(result, status=200, mimetype="text/plain")
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, not func.HttpResponse")
    headers = list(result.headers.items())
    if not any(k.lower() == "content-type" for k, _ in headers):
        mime = result.mimetype
        content_type = f"{mime}; charset={result.charset}" if mime.startswith("text/") else mime
        headers.append(("Content-Type", content_type))
    return Response(result.get_body() or b"", status=result.status_code, headers=headers)


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log: query strings carry function keys (`?code=`)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class HttpServer:
    """A threaded werkzeug server for an `HttpApp` on 127.0.0.1."""

    def __init__(self, app: HttpApp, port: int) -> None:
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="localhost-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: Deadline) -> list[str]:
        """Stop accepting requests (requests in flight are not waited for, their threads are daemons)."""
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only while it runs
            self._server.shutdown()
        self._server.server_close()
        return join_within(self._thread, deadline, "the HTTP server")
