"""The connection-health service: BC's Admin Center operations log acted on (restore, copy, rename,
update) and the pause a copy sets lifted by a person.

Built once by the runtime from the change triggers' `WebhookContext` (a restore re-subscribes and
sweeps); the blueprints call `get_runtime().environments.<method>(...)`.
"""
from __future__ import annotations

from typing import Any

from connector.health.environment import EnvironmentWatch, check_environments
from connector.webhooks.context import WebhookContext


class EnvironmentService:
    """The environment watch of every connection with BC_ADMIN_CENTER on."""

    def __init__(self, context: WebhookContext):
        self._context = context

    def check(self, connection: str) -> list[dict[str, Any]]:
        """Read one connection's operations log now and act on what changed; the operations handled."""
        return EnvironmentWatch(self._context, connection).check()

    def check_all(self) -> dict[str, list[dict[str, Any]]]:
        """The renewal run's first step: every watched connection (a failure is logged, not raised)."""
        return check_environments(self._context)

    def resume(self, connection: str) -> bool:
        """A person confirms the connection may act on its (copied) environment: lift the pause."""
        return self._context.pauses.resume(connection)
