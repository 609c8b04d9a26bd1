"""Helpers shared by `python -m devtools.localhost` and `devtools.run` (dev tooling, not deployed)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import MutableMapping
from pathlib import Path


def settings_file(root: Path, explicit: Path | None = None) -> Path | None:
    """`explicit`, else `local.settings.json`, else `local.settings.example.json` (None if none exists)."""
    if explicit is not None:
        return explicit
    for name in ("local.settings.json", "local.settings.example.json"):
        if (root / name).is_file():
            return root / name
    return None


def load_settings(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put the file's `Values` into `environ` (default os.environ) without overriding; return the Values."""
    environ = os.environ if environ is None else environ
    raw = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    values = {key: str(value) for key, value in raw.items()}
    for key, value in values.items():
        environ.setdefault(key, value)
    return values


def configure_logging() -> None:
    """INFO for the host's one-line-per-invocation log; the Azure SDK's HTTP chatter only from WARNING."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_signal() -> threading.Event:
    """An event set by SIGINT (Ctrl-C) or SIGTERM; call from the main thread."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
