"""What BC's two push channels share in the emulator (dev tooling, never deployed): a dispatcher thread that
sleeps until the next delivery is due or it is woken, and the JSON POST of one notification. Webhooks
(`webhooks.py`) and business events (`business_events.py`) each decide what is due and how to settle it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests


class Dispatcher:
    """A daemon thread named `name`: waits `next_wait()` seconds (or until `wake()`), then `run()`s, until
    `stop()`."""

    def __init__(self, name: str, next_wait: Callable[[], float], run: Callable[[], None]) -> None:
        self.name = name
        self._next_wait = next_wait
        self._run = run
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Look again now (something was queued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._next_wait())
            self._wake.clear()
            if not self._stopping.is_set():
                self._run()


def post_json(url: str, body: Any, timeout: float,
              headers: Mapping[str, str] | None = None) -> tuple[int | None, str | None]:
    """POST `body` as JSON to `url` as BC does (no proxy from the environment, no redirects followed):
    (status, None), or (None, the error) when no answer came."""
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(url, data=json.dumps(body).encode(), allow_redirects=False,
                                    headers={"Content-Type": "application/json", **(headers or {})},
                                    timeout=timeout)
        return response.status_code, None
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
