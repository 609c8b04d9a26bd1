"""The emulator's state on disk, so a restarted emulator behaves like BC that stayed up (dev tooling).

One JSON file, replaced atomically (temp file + rename): BC data with row versions and number series,
webhook subscriptions with their pending notifications, Entra's signing key and refresh tokens, and
the clock's offset. `StateSaver` writes it before a write request is answered while a save is cheap,
at once for subscription changes, in the background for dispatcher activity and large states, and
at stop; `restore` puts it back before the emulator serves. Logs (requests, deliveries) and faults
are not kept.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from devtools.emulator.store import Company, Row, Store
from devtools.emulator.webhooks import Notification, Outbox, Subscription, WebhookEngine

if TYPE_CHECKING:
    from devtools.emulator.server import Emulator

LOG = logging.getLogger("devtools.emulator.state")
FORMAT = 1
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})


class StateError(RuntimeError):
    """The state file cannot be read or restored (the message says which file and how to start over)."""


# ---- snapshot ------------------------------------------------------------------------------------


def snapshot(emulator: Emulator) -> dict[str, Any]:
    """Everything a restart must keep, as plain JSON data (consistent: taken under the locks)."""
    bc = emulator.bc
    state: dict[str, Any] = {"format": FORMAT, "saved_at": datetime.now(UTC).isoformat(),
                             "clock_offset_seconds": _clock_offset(emulator)}
    if bc is not None:
        with bc.store.lock, bc.webhooks._lock:
            state["store"] = _store_state(bc.store)
            state["webhooks"] = _webhook_state(bc.webhooks)
        if hasattr(bc, "business_events"):
            with bc.business_events._lock:
                state["business_events"] = [asdict(sub) for sub in bc.business_events.subscriptions.values()]
    state["entra"] = _entra_state(emulator)
    return state


def _clock_offset(emulator: Emulator) -> float:
    return (emulator.clock.now() - datetime.now(UTC)).total_seconds()


def _row(row: Row) -> list[Any]:
    return [row.seq, row.version, dict(row.data)]  # a copy: it is dumped after the locks are let go


def _store_state(store: Store) -> dict[str, Any]:
    simple = [f.name for f in fields(Company) if f.name not in ("row", "sets", "series")]
    return {
        # next() leaves a gap of one: harmless, positions and versions only need to grow
        "next_seq": next(store._seq),
        "next_version": next(store._version),
        "environments": [[env.tenant, env.name] for env in store.environments.values()],
        "companies": [
            {name: getattr(company, name) for name in simple}
            | {"row": _row(company.row) if company.row else None, "series": dict(company.series),
               "sets": {name: [_row(r) for r in rows.order] for name, rows in company.sets.items() if rows}}
            for env in store.environments.values()
            for company in env.companies.values()
        ],
    }


def _webhook_state(engine: WebhookEngine) -> dict[str, Any]:
    now = time.monotonic()
    return {
        "supported": sorted(engine.supported),
        "subscriptions": [
            asdict(sub) | {"expiration": sub.expiration.isoformat()} for sub in engine.subscriptions.values()
        ],
        "journal": [[sub.id, entity_id, change, at] for sub, entity_id, change, at in engine._journal],
        "outboxes": [
            {"url": box.url, "attempt": box.attempt, "due_in": max(0.0, box.due - now),
             "items": [asdict(note) for note in box.items]}
            for box in engine._outboxes.values() if box.items
        ],
    }


def _entra_state(emulator: Emulator) -> dict[str, Any]:
    entra = emulator.entra
    pem = entra.signing_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    with entra._lock:
        tokens = {token: asdict(rt) | {"scopes": sorted(rt.scopes)}
                  for token, rt in entra._refresh_tokens.items()}
    return {"signing_key": pem.decode(), "refresh_tokens": tokens}


# ---- restore -------------------------------------------------------------------------------------


def restore(emulator: Emulator, state: dict[str, Any]) -> None:
    """Replace the emulator's state with `state` (from `snapshot`); call before it serves."""
    if state.get("format") != FORMAT:
        raise ValueError(f"unknown format {state.get('format')!r} (this emulator writes {FORMAT})")
    emulator.clock.advance(float(state["clock_offset_seconds"]) - _clock_offset(emulator))
    if emulator.bc is not None and "store" in state:
        _restore_store(emulator.bc.store, state["store"])
        _restore_webhooks(emulator.bc.webhooks, state["webhooks"])
    if emulator.bc is not None and hasattr(emulator.bc, "business_events"):
        from devtools.emulator.business_events import EventSubscription

        engine = emulator.bc.business_events
        with engine._lock:  # pending notifications are not kept (BC's queue would retry them)
            engine.subscriptions = {saved["id"]: EventSubscription(**saved)
                                    for saved in state.get("business_events", [])}
    _restore_entra(emulator, state["entra"])


def _restore_store(store: Store, state: dict[str, Any]) -> None:
    with store.lock:
        store.environments.clear()
        for tenant, name in state["environments"]:
            store.environment(tenant, name)
        for saved in state["companies"]:
            company = Company(**{k: v for k, v in saved.items() if k not in ("row", "sets", "series")})
            company.series = dict(saved["series"])
            if saved["row"] is not None:
                seq, version, data = saved["row"]
                company.row = Row(seq, data, version)
            for set_name, rows in saved["sets"].items():
                entity_set = company.sets.get(set_name)
                if entity_set is None:  # a set this emulator no longer has
                    continue
                blank = entity_set.etype.blank()
                for seq, version, data in sorted(rows, key=lambda r: r[0]):
                    known = {k: v for k, v in data.items() if k in blank}
                    entity_set.add(Row(seq, blank | known, version))
            store.environment(company.tenant, company.environment).companies[company.id] = company
        store._seq = itertools.count(int(state["next_seq"]))
        store._version = itertools.count(int(state["next_version"]))


def _restore_webhooks(engine: WebhookEngine, state: dict[str, Any]) -> None:
    now = time.monotonic()
    with engine._lock:
        engine.supported = set(state["supported"])
        engine.subscriptions = {
            saved["id"]: Subscription(**saved | {"expiration": datetime.fromisoformat(saved["expiration"])})
            for saved in state["subscriptions"]
        }
        engine._reindex()
        engine._journal = [(engine.subscriptions[sub_id], entity_id, change, at)
                           for sub_id, entity_id, change, at in state["journal"]
                           if sub_id in engine.subscriptions]
        engine._first_pending = now if engine._journal else None  # the debounce starts again
        # Held back at least one debounce, so the receiver can come up again first (`make run`
        # starts its host after the emulator, then flushes).
        grace = engine.config.webhook_debounce_seconds
        engine._outboxes = {
            box["url"]: Outbox(box["url"], [Notification(**note) for note in box["items"]],
                               int(box["attempt"]), now + max(float(box["due_in"]), grace))
            for box in state["outboxes"]
        }


def _restore_entra(emulator: Emulator, state: dict[str, Any]) -> None:
    from devtools.emulator.entra import _RefreshToken

    entra = emulator.entra
    entra.use_signing_key(serialization.load_pem_private_key(state["signing_key"].encode(), password=None))
    with entra._lock:
        entra._refresh_tokens = {
            token: _RefreshToken(**saved | {"scopes": frozenset(saved["scopes"])})
            for token, saved in state["refresh_tokens"].items()
        }


# ---- the file ------------------------------------------------------------------------------------


class StateSaver:
    """Keeps `path` current for one emulator.

    A write request is saved before it is answered while a save takes at most `sync_budget` seconds;
    a subscription change always is (so even a SIGKILL keeps it). Otherwise, and for what the webhook
    dispatcher changes on its own, a background thread saves every `interval` seconds when needed.
    """

    def __init__(self, emulator: Emulator, path: Path, *, sync_budget: float = 0.05,
                 interval: float = 1.0) -> None:
        self.emulator = emulator
        self.path = Path(path)
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
            restore(self.emulator, json.loads(self.path.read_text(encoding="utf-8")))
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
            text = json.dumps(snapshot(self.emulator), separators=(",", ":"))
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

    def _fingerprint(self) -> tuple[int, ...]:
        """Cheap signs of what the dispatcher changes without a request (deliveries, expiries)."""
        bc = self.emulator.bc
        if bc is None:
            return ()
        engine = bc.webhooks
        events = getattr(bc, "business_events", None)
        return (len(engine.deliveries), len(engine.subscriptions), len(engine._journal),
                *((len(events.subscriptions), sum(s.version for s in events.subscriptions.values()))
                  if events is not None else ()))
