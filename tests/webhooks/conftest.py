"""Fixtures of the webhook tests: the real app in the local host, subscribed to the emulator."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.webhooks.scenario import QUIET_TIMERS, EmulatedBC, OutQueues


@dataclass
class Scenario:
    host: Any
    emulator: Any
    bc: EmulatedBC
    queues: OutQueues
    company_id: str

    def notification_url_of(self, connection: str) -> str:
        """Where BC notifies a connection: the receiver, the connection named in the query."""
        return f"{self.host.url}/api/webhooks/bc?connection={connection}"

    @property
    def notification_url(self) -> str:
        return self.notification_url_of("default")

    def subscribe(self, expected_status: int = 200) -> dict[str, Any]:
        """`POST /api/connections/default/subscriptions` and its JSON summary."""
        r = requests.post(f"{self.host.url}/api/connections/default/subscriptions", timeout=60)
        assert r.status_code == expected_status, r.text
        return r.json()

    def post(self, body: Any, raw: bytes | None = None) -> requests.Response:
        """POST a notification body to the receiver as BC would."""
        if raw is None:
            return requests.post(self.notification_url, json=body, timeout=30)
        return requests.post(self.notification_url, data=raw, timeout=30,
                             headers={"Content-Type": "application/json"})


@pytest.fixture
def scenario(local_host: Callable[..., Any], emulator: Any, azurite: Any) -> Callable[..., Scenario]:
    """Factory: start the app (timers quiet) against `emulator` or another emulator given as `bc`."""
    from connector.runtime import get_runtime

    def start(bc: Any = None, **overrides: str) -> Scenario:
        emu = bc or emulator
        if bc is not None:
            overrides = {"BC_API_HOST": emu.url, "ENTRA_AUTHORITY_HOST": emu.url,
                         "TLS_CA_BUNDLE": emu.ca_bundle, **overrides}
        host = local_host(**(QUIET_TIMERS | overrides))
        company_id = get_runtime().company_id()
        queues = OutQueues(azurite.connection_string)
        bc_ = EmulatedBC(emu, company_id)
        if bc is None:  # the module's emulator: an earlier test's host may have had this port
            bc_.forget_url(f"{host.url}/api/webhooks/bc")
        return Scenario(host, emu, bc_, queues, company_id)

    return start
