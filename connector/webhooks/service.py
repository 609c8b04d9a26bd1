"""The change-trigger service: BC's webhook notifications in, `bc.<entity>.<change>` events out, the
sweep that catches what webhooks missed, and the subscriptions that keep notifications coming.

Built once by the runtime from a `WebhookContext` (its collaborators, named); the blueprint calls
`get_runtime().webhooks.<method>(...)`. The receiver takes a way to get the context rather than the
context: a handshake is answered before anything is built.
"""
from __future__ import annotations

from connector.webhooks import processor, subscriptions, sweep
from connector.webhooks.context import WebhookContext
from connector.webhooks.subscriptions import ReconcileSummary
from connector.webhooks.sweep import SweepResult
from connector.webhooks.triggers import EmitCount


class WebhooksService:
    """Notifications, the sweep and the subscriptions of every connection."""

    def __init__(self, context: WebhookContext):
        self.context = context

    def process_notifications(self, text: str, owner: str) -> EmitCount:
        """Announce what one `bc-notifications` message's batch changed (`owner`: its message id)."""
        return processor.process_batch(self.context, processor.read_message(self.context, text, owner))

    def sweep_all(self) -> list[SweepResult]:
        """Announce, for every connection, the created entities the webhooks missed."""
        return sweep.sweep_all(self.context)

    def sweep(self, connection: str) -> list[SweepResult]:
        """Sweep one connection (a fanned-out unit, `connector/fanout`)."""
        return sweep.sweep(self.context, connection)

    def reconcile_unless_busy(self, connection: str) -> ReconcileSummary | None:
        """One connection's renewal run (a fanned-out unit); None while another run holds it."""
        return subscriptions.reconcile_unless_busy(self.context, connection)

    def reconcile(self, connection: str) -> ReconcileSummary:
        """Create, renew or recreate one connection's subscriptions now."""
        return subscriptions.reconcile(self.context, connection)

    def reconcile_all(self) -> list[ReconcileSummary]:
        """The renewal run: every connection's subscriptions."""
        return subscriptions.reconcile_all(self.context)

    def delete_subscriptions(self, connection: str) -> list[str]:
        """Remove one connection's subscriptions from BC; the entity sets unhooked."""
        return subscriptions.delete_subscriptions(self.context, connection)
