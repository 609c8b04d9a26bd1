"""The emulator's state on disk, so a restarted emulator behaves like BC that stayed up (dev tooling).

One JSON file, replaced atomically (temp file + rename): BC data with row versions and number series,
webhook subscriptions with their pending notifications, business-event subscriptions (their pending
deliveries are not kept), Entra's signing key and refresh tokens, and the clock's offset. Each part
gives and takes its own (`snapshot()`/`restore()`); `StateSaver` writes the whole before a write
request is answered while a save is cheap, at once for subscription changes, in the background for
dispatcher activity and large states, and at stop, and puts it back before the emulator serves.
Logs (requests, deliveries) and faults are not kept.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG = logging.getLogger("devtools.emulator.state")
FORMAT = 1
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})


class StateError(RuntimeError):
    """The state file cannot be read or restored (the message says which file and how to start over)."""


# ---- the file ------------------------------------------------------------------------------------


class StateSaver:
    """Keeps `path` current with what `snapshot()` returns (the emulator's parts each give theirs:
    `Emulator.snapshot_state`); `restore(state)` puts a saved state back, `fingerprint()` gives cheap
    signs of changes made without a request (the webhook dispatcher's).

    A write request is saved before it is answered while a save takes at most `sync_budget` seconds;
    a subscription change always is (so even a SIGKILL keeps it). Otherwise, and for what the webhook
    dispatcher changes on its own, a background thread saves every `interval` seconds when needed.
    """

    def __init__(self, path: Path, *, snapshot: Callable[[], dict[str, Any]],
                 restore: Callable[[dict[str, Any]], None], fingerprint: Callable[[], tuple[int, ...]],
                 sync_budget: float = 0.05, interval: float = 1.0) -> None:
        self.path = Path(path)
        self._snapshot = snapshot
        self._restore = restore
        self._fingerprint = fingerprint
        self.sync_budget = sync_budget
        self.interval = interval
        self.last_cost = 0.0  # seconds the last save took
        self._save_lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple[int, ...] = ()

    def load(self) -> bool:
        """Restore the saved state if the file exists (True), else write the fresh state (False)."""
        if not self.path.exists():
            self.save()
            return False
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("format") != FORMAT:
                raise ValueError(f"unknown format {state.get('format')!r} (this emulator writes {FORMAT})")
            self._restore(state)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"cannot restore the emulator state from {self.path}: {type(exc).__name__}: {exc}. "
                "The file is left as it is; `make reset` wipes the emulator and Azurite state together."
            ) from exc
        self._seen = self._fingerprint()
        return True

    def save(self) -> None:
        """Write the current state: a temp file beside the target, then an atomic rename."""
        with self._save_lock:
            started = time.perf_counter()
            self._dirty.clear()
            self._seen = self._fingerprint()
            text = json.dumps({"format": FORMAT} | self._snapshot(), separators=(",", ":"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
            self.last_cost = time.perf_counter() - started

    def after_write(self, path: str) -> None:
        """A write request was handled: save now, or mark the state for the background save. A failed
        save is logged and retried in the background; the request still gets its answer (its write
        is done)."""
        if "subscriptions" in path or self.last_cost <= self.sync_budget:
            self._save_or_log()
        else:
            self._dirty.set()

    def _save_or_log(self) -> None:
        try:
            self.save()
        except Exception:
            LOG.exception("could not save the emulator state to %s; retrying in the background", self.path)
            self._dirty.set()

    def start(self) -> None:
        """Start the background saver."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="bc-emulator-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background saver and save a last time (once: a stopped emulator saves nothing)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.save()

    def _loop(self) -> None:
        while not self._stopping.wait(max(self.interval, 10 * self.last_cost)):
            if self._dirty.is_set() or self._fingerprint() != self._seen:
                self._save_or_log()
