"""The emulator's https server: Entra ID + BC API v2.0 + admin on one port (dev tooling).

`Emulator(EmulatorConfig(...)).start()` serves on ``https://127.0.0.1:<port>`` from a thread,
with a throw-away certificate whose CA is at `ca_bundle`.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .admin import AdminApp
from .clock import Clock
from .config import EmulatorConfig
from .entra import Entra
from .keyvault import KeyVault
from .limits import ARRIVED, Faults, LimitsMiddleware, LoggedRequest, RequestLog
from .state import WRITE_METHODS, StateSaver
from .tls import make_tls_files

BCFactory = Callable[[EmulatorConfig, Clock, Callable[[str], dict]], Any]


def default_bc_factory(config: EmulatorConfig, clock: Clock,
                       validate_token: Callable[[str], dict]) -> Any:
    """The BC API v2.0 emulator (`bc_api.BCApi`), imported lazily."""
    from .bc_api import BCApi

    return BCApi(config, clock, validate_token)


class _KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 with keep-alive and no per-request log lines.

    werkzeug's own handler always answers ``Connection: close``. This one reads the whole request
    body before calling the app (so an unread body cannot desynchronise the connection), buffers
    the response and sends it with a Content-Length, keeping the connection open.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    _arrived = 0.0  # when the current request's line came in (parse_request)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def parse_request(self) -> bool:
        self._arrived = time.monotonic()  # the request line is in: BC's response time starts here
        return super().parse_request()

    def run_wsgi(self) -> None:
        arrived = self._arrived  # parse_request ran just before
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        if environ.pop("wsgi.input_terminated", False):  # chunked request body
            body = environ["wsgi.input"].read()
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        else:
            body = self.rfile.read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[ARRIVED] = arrived
        response: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            response[:] = [status, headers]
            return chunks.append

        try:
            iterable = self.server.app(environ, start_response)
            try:
                chunks.extend(iterable)
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
        except (TimeoutError, ConnectionError) as exc:
            self.connection_dropped(exc, environ)
            self.close_connection = True
            return
        except Exception:
            self.log_error("Error on request %s %s:\n%s", self.command, self.path,
                           traceback.format_exc())
            response[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks = [b"Internal Server Error"]
        self._send(response[0], response[1], b"".join(chunks))

    def _send(self, status: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response_only(code, reason)
        names = {k.lower() for k, _ in headers}
        keep_length = self.command == "HEAD" and "content-length" in names
        for key, value in headers:
            if key.lower() in ("connection", "transfer-encoding") or (
                    key.lower() == "content-length" and not keep_length):
                continue
            self.send_header(key, value)
        if "server" not in names:
            self.send_header("Server", self.version_string())
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if not keep_length and code >= 200 and code not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(payload)


class Emulator:
    """Entra ID + BC API v2.0 emulator on one https port.

    `bc_factory(config, clock, validate_token)` builds the BC WSGI app (default: `BCApi`);
    None serves no BC API (``/v2.0/...`` answers 404).
    """

    def __init__(self, config: EmulatorConfig | None = None, *,
                 bc_factory: BCFactory | None = default_bc_factory) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Clock()
        self.entra = Entra(self.config, self.clock)
        self.faults = Faults(self.config.latency_seconds)
        self._log = RequestLog()
        self.bc = bc_factory(self.config, self.clock, self.entra.validate_token) if bc_factory else None
        self._limits = (LimitsMiddleware(self.bc, self.config, self.clock, self.entra.validate_token,
                                         self.faults, self._log) if self.bc is not None else None)
        self.keyvault = KeyVault(self.clock, lambda: self.entra.public_key, self._vault_authority)
        self._admin = AdminApp(self)
        self.state = (StateSaver(Path(self.config.state_file), snapshot=self.snapshot_state,
                                 restore=self.restore_state, fingerprint=self._state_fingerprint)
                      if self.config.state_file else None)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: str | None = None
        self.url = ""
        self.ca_bundle = ""

    # ---- saved state: each part gives and takes its own (devtools/emulator/state.py) -----------
    def snapshot_state(self) -> dict[str, Any]:
        """Everything a restart must keep, as plain JSON data (BC's data and webhooks consistent:
        taken under the store's lock)."""
        state: dict[str, Any] = {"saved_at": datetime.now(UTC).isoformat(),
                                 "clock_offset_seconds": self._clock_offset()}
        if self.bc is not None:
            with self.bc.store.lock:
                state["store"] = self.bc.store.snapshot()
                state["webhooks"] = self.bc.webhooks.snapshot()
            events = getattr(self.bc, "business_events", None)
            if events is not None:  # BC keeps its External Event Subscription rows too
                state["business_events"] = events.snapshot()
        state["entra"] = self.entra.snapshot()
        state["keyvault"] = self.keyvault.snapshot()
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        """Replace the emulator's state with `state` (from `snapshot_state`); call before it serves."""
        self.clock.advance(float(state["clock_offset_seconds"]) - self._clock_offset())
        if self.bc is not None and "store" in state:
            self.bc.store.restore(state["store"])
            self.bc.webhooks.restore(state["webhooks"])
            events = getattr(self.bc, "business_events", None)
            if events is not None and "business_events" in state:
                events.restore(state["business_events"])
        self.entra.restore(state["entra"])
        self.keyvault.restore(state.get("keyvault", {}))

    def _vault_authority(self, request: Any) -> str:
        """The authority a Key Vault challenge names: this emulator's Entra, the first tenant."""
        return f"{request.host_url.rstrip('/')}/{next(iter(self.config.tenants.values()))}"

    def _clock_offset(self) -> float:
        return (self.clock.now() - datetime.now(UTC)).total_seconds()

    def _state_fingerprint(self) -> tuple[int, ...]:
        """Cheap signs of what changes without a request (deliveries, expiries, subscriptions)."""
        if self.bc is None:
            return ()
        events = getattr(self.bc, "business_events", None)
        return (*self.bc.webhooks.fingerprint(), len(events.subscriptions) if events is not None else 0)

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self.faults.rearm()
        if self.state is not None:
            self.state.load()
        self._tmp = tempfile.mkdtemp(prefix="bc-emulator-")
        tls = make_tls_files(Path(self._tmp))
        self.ca_bundle = str(tls.ca_cert)
        self._server = make_server(self.config.host, self.config.port, self, threaded=True,
                                   request_handler=_KeepAliveHandler,
                                   ssl_context=tls.server_context())
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.url = f"https://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bc-emulator", daemon=True)
        self._thread.start()
        if self.bc is not None and hasattr(self.bc, "business_events"):
            self.bc.business_events.base_url = self.url  # the origin of a payload's `Url`
        if self.bc is not None and hasattr(self.bc, "start"):
            self.bc.start()
        if self.state is not None:
            self.state.start()
        return self

    def stop(self) -> None:
        """Stop serving, end pending fault holds, save the state (if kept) and remove the temporary
        certificate files."""
        self.faults.release()
        if self.bc is not None and hasattr(self.bc, "stop"):
            self.bc.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.state is not None:
            self.state.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- URLs ----------------------------------------------------------------------------
    def authority(self, tenant: str) -> str:
        """The msal authority of a tenant (use with ``instance_discovery=False``)."""
        return f"{self.url}/{tenant}"

    def bc_base(self, tenant: str, environment: str) -> str:
        """The BC API v2.0 base URL of an environment."""
        return f"{self.url}/v2.0/{tenant}/{environment}/api/v2.0"

    # ---- request log ---------------------------------------------------------------------
    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of the logged BC API requests, oldest first."""
        return self._log.entries()

    def clear_requests(self) -> None:
        """Empty the BC request log."""
        self._log.clear()

    def in_flight(self) -> dict[str, int]:
        """BC requests now processing and queued (all principals)."""
        return self._limits.in_flight() if self._limits else {"processing": 0, "queued": 0}

    # ---- WSGI dispatch -------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = self._route(environ, start_response)
        if self.state is None or environ.get("REQUEST_METHOD") not in WRITE_METHODS:
            return answer
        try:
            body = list(answer)  # the write is complete once the answer is
        finally:
            if hasattr(answer, "close"):
                answer.close()
        self.state.after_write(environ.get("PATH_INFO", ""))  # on disk before the client hears back
        return body

    def _route(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self._admin(environ, start_response)
        if path.startswith("/admin/") and self.bc is not None and hasattr(self.bc, "admin_center"):
            return self.bc.admin_center(environ, start_response)  # the Admin Center API
        if path.startswith("/keyvault/"):  # Key Vault's secrets endpoint, vault by vault
            return self.keyvault(environ, start_response)
        if path == "/msi/token":  # the local Function App's managed identity (App Service style)
            return self.entra.managed_identity(environ, start_response)
        if path.startswith("/v2.0/"):
            if self._limits is None:
                body = json.dumps({"error": {"code": "BadRequest_ResourceNotFound",
                                             "message": "No BC API emulator is running."}})
                start_response("404 Not Found", [("Content-Type", "application/json"),
                                                 ("Content-Length", str(len(body)))])
                return [body.encode()]
            return self._limits(environ, start_response)
        return self.entra(environ, start_response)
