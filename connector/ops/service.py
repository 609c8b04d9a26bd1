"""The status service: what `GET /api/status` shows, worked out fresh on each call.

Built once by the runtime from the settings, storage, the token service, the health events and the
activity recorder; the blueprint calls `get_runtime().status.report(now)`.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from connector.auth.signin_links import page_link
from connector.auth.tokens import TokenService
from connector.bc.errors import BCError, TokenUnavailable
from connector.health.checks import check_all
from connector.health.events import HealthEvents
from connector.ops.activity import ActivityRecorder
from connector.ops.paging import PAGE_SIZE, page_of
from connector.ops.status import STATUS_READERS, in_parallel, read_status
from connector.settings import Settings
from connector.storage import Storage

log = logging.getLogger(__name__)


class StatusService:
    """The status report of every connection, with the checks a status call runs first."""

    def __init__(self, settings: Settings, storage: Storage, tokens: TokenService, health: HealthEvents,
                 activity: ActivityRecorder):
        self._settings = settings
        self._storage = storage
        self._tokens = tokens
        self._health = health
        self._activity = activity
        self._verifier = ThreadPoolExecutor(STATUS_READERS, thread_name_prefix="status-verify")
        self._verifying: set[str] = set()
        self._lock = threading.Lock()

    def report(self, now: datetime, page: int | None = None) -> dict[str, Any]:
        """Verify the tokens (a changed client secret shows now, not when the cached token expires),
        run the periodic checks, flush this instance's counts, then read the report. With more than
        PAGE_SIZE connections (or a `page` asked for), one page of them (`paging` says which), and
        the page's tokens verified in the background: the page shows what is recorded and its next
        refresh the verdicts (50 forced token requests held a page's first paint for seconds)."""
        names = list(self._settings.connections)
        paging = None
        if page is not None or len(names) > PAGE_SIZE:  # pages in name order: a page is a key range
            names, paging = page_of(sorted(names), page)
        principals = [p.name for n in names for p in self._settings.connections[n].principals]
        if paging is None:
            in_parallel(self._verify, principals)  # Entra, at most once a minute per principal
        else:
            self._verify_later(principals)
        check_all(self._settings, self._storage, self._health, now)
        self._activity.flush(set(names))  # the page's counts current
        report = read_status(self._settings, self._storage, now, login_link=page_link(self._settings, now),
                             names=names)
        if paging is not None:
            report["paging"] = paging
        return report

    def _verify_later(self, principals: list[str]) -> None:
        """`_verify` each principal on the background pool, unless already waiting there."""
        with self._lock:
            due = [p for p in principals if p not in self._verifying]
            self._verifying.update(due)
        for principal in due:
            self._verifier.submit(self._verify, principal, done=True)

    def _verify(self, principal: str, done: bool = False) -> None:
        try:
            self._tokens.verify(principal)
        except (TokenUnavailable, BCError) as exc:
            log.warning("tokens %s: credentials check failed: %s", principal, exc)
        finally:
            if done:
                with self._lock:
                    self._verifying.discard(principal)
