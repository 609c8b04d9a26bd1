"""The emulator's https server: Entra ID + BC API v2.0 + admin on one port (dev tooling).

`Emulator(EmulatorConfig(...)).start()` serves on ``https://127.0.0.1:<port>`` from a thread,
with a throw-away certificate whose CA is at `ca_bundle`.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .admin import AdminApp
from .clock import Clock
from .config import EmulatorConfig
from .entra import Entra
from .limits import Faults, LimitsMiddleware, LoggedRequest, RequestLog
from .tls import make_tls_files

BCFactory = Callable[[EmulatorConfig, Clock, Callable[[str], dict]], Any]


def default_bc_factory(config: EmulatorConfig, clock: Clock,
                       validate_token: Callable[[str], dict]) -> Any:
    """The BC API v2.0 emulator (`bc_api.BCApi`), imported lazily."""
    from .bc_api import BCApi

    return BCApi(config, clock, validate_token)


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, no per-request log lines."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


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
        self._admin = AdminApp(self)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: str | None = None
        self.url = ""
        self.ca_bundle = ""

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._tmp = tempfile.mkdtemp(prefix="bc-emulator-")
        tls = make_tls_files(Path(self._tmp))
        self.ca_bundle = str(tls.ca_cert)
        self._server = make_server(self.config.host, self.config.port, self, threaded=True,
                                   request_handler=_QuietHandler,
                                   ssl_context=tls.server_context())
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.url = f"https://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="bc-emulator", daemon=True)
        self._thread.start()
        if self.bc is not None and hasattr(self.bc, "start"):
            self.bc.start()
        return self

    def stop(self) -> None:
        """Stop serving, end pending fault holds and remove the temporary certificate files."""
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

    # ---- WSGI dispatch -------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self._admin(environ, start_response)
        if path.startswith("/v2.0/"):
            if self._limits is None:
                body = json.dumps({"error": {"code": "BadRequest_ResourceNotFound",
                                             "message": "No BC API emulator is running."}})
                start_response("404 Not Found", [("Content-Type", "application/json"),
                                                 ("Content-Length", str(len(body)))])
                return [body.encode()]
            return self._limits(environ, start_response)
        return self.entra(environ, start_response)
