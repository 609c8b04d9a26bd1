"""The status service: what `GET /api/status` shows, worked out fresh on each call.

Built once by the runtime from the settings, storage, the token service, the health events and the
activity recorder; the blueprint calls `get_runtime().status.report(now)`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.auth.signin_links import page_link
from connector.auth.tokens import TokenService
from connector.health.checks import check_all
from connector.health.events import HealthEvents
from connector.ops.activity import ActivityRecorder
from connector.ops.status import read_status
from connector.settings import Settings
from connector.storage import Storage


class StatusService:
    """The status report of every connection, with the checks a status call runs first."""

    def __init__(self, settings: Settings, storage: Storage, tokens: TokenService, health: HealthEvents,
                 activity: ActivityRecorder):
        self._settings = settings
        self._storage = storage
        self._tokens = tokens
        self._health = health
        self._activity = activity

    def report(self, now: datetime) -> dict[str, Any]:
        """Verify the tokens (a changed client secret shows now, not when the cached token expires),
        run the periodic checks, flush this instance's counts, then read the report."""
        self._tokens.verify_all()
        check_all(self._settings, self._storage, self._health, now)
        self._activity.flush()
        return read_status(self._settings, self._storage, now, login_link=page_link(self._settings, now))
