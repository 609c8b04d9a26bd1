"""A notificationUrl for tests: a real local HTTP server that answers BC's handshake and records the
notifications the emulator sends."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Receiver:
    """A notificationUrl: echoes validation tokens (unless told otherwise), records notifications,
    answers them with queued statuses (default 200)."""

    def __init__(self) -> None:
        self.handshake: Callable[[str], Response] = lambda token: Response(token, content_type="text/plain")
        self.statuses: list[int] = []
        self.default_status = 200
        self.notifications: list[dict[str, Any]] = []
        self.handshakes: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        token = request.args.get("validationToken")
        if token is not None:
            self.handshakes.append(request.method)
            return self.handshake(token)(environ, start_response)
        with self.arrived:
            self.notifications.append(json.loads(request.get_data()))
            self.headers.append(dict(request.headers))
            self.arrived.notify_all()
        status = self.statuses.pop(0) if self.statuses else self.default_status
        return Response("", status=status)(environ, start_response)

    def wait(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until `count` notification POSTs arrived; returns them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.notifications) >= count, timeout)
        assert len(self.notifications) >= count, self.notifications
        return self.notifications

    def element(self, resource_part: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first notification element whose resource contains `resource_part` (waits for it)."""
        def found() -> dict[str, Any] | None:
            return next((e for body in self.notifications for e in body["value"]
                         if resource_part in e["resource"]), None)

        with self.arrived:
            self.arrived.wait_for(found, timeout)
            element = found()
        assert element, self.notifications
        return element

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
