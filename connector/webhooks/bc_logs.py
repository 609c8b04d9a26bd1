"""Why BC dropped a subscription or failed a notification, from BC's own webhook activity log.

`webhookLogs` is BC's API page 5461 "API Webhook Logs" (BCApps
`src/Layers/W1/BaseApp/System/API/Webhooks/APIWebhookLogs.Page.al`: publisher `microsoft`, group
`runtime`, no APIVersion so `beta`, source table "Activity Log" filtered to context `APIWEBHOOK`,
per company, newest first): `id`, `time`, `status`, `message` (the title, e.g. `Delete expired
subscription.`) and `details` (the long text, naming the subscription id or the notification URL).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from connector.bc.client import BCClient
from connector.bc.errors import BCError
from connector.bc.keys import checked_guid

log = logging.getLogger(__name__)

MAX_ENTRIES = 1000  # the newest entries are enough to explain what just happened
FAILED_NOTIFICATION = "sending notification failed"


def read_webhook_logs(bc: BCClient, company_id: str) -> list[dict[str, Any]] | None:
    """The newest webhook log entries of a company; None when BC does not offer them (an older
    version, or no permission on the Activity Log)."""
    company = checked_guid(company_id, "companyId")
    url = f"{bc.environment_root}/api/microsoft/runtime/beta/companies({company})/webhookLogs"
    try:
        return list(islice(bc.iter_entities(url), MAX_ENTRIES))
    except BCError as exc:
        if exc.retryable:
            raise
        log.warning("webhookLogs unavailable for company %s: %s", company_id, exc)
        return None


def _plain_id(value: str) -> str:
    return value.strip("{}").replace("-", "").lower()


def removal_reason(logs: Iterable[Mapping[str, Any]], subscription_id: str) -> dict[str, Any] | None:
    """BC's newest entry that names the subscription and deleted it (pure)."""
    wanted = _plain_id(subscription_id)
    for entry in logs:
        details = _plain_id(str(entry.get("details", "")))
        if wanted and wanted in details and "delete" in str(entry.get("message", "")).lower():
            return {name: entry.get(name, "") for name in ("id", "time", "status", "message", "details")}
    return None


def failed_notifications(logs: Iterable[Mapping[str, Any]], url: str) -> list[dict[str, Any]]:
    """BC's entries of notifications to `url` that failed, newest first (pure)."""
    return [{name: e.get(name, "") for name in ("id", "time", "status", "message", "details")}
            for e in logs if FAILED_NOTIFICATION in str(e.get("message", "")).lower()
            and url in str(e.get("details", ""))]


def describe(entry: Mapping[str, Any] | None) -> str:
    """BC's reason in words: its message, and the details when they add something."""
    if not entry:
        return "BC's webhook log names no reason (it may have been deleted by a user or a copy)"
    message = str(entry.get("message", "")).strip()
    details = str(entry.get("details", "")).strip()
    return f"{message} ({details})" if details and details != message else message
