"""Health events: `bc.connector.*` CloudEvents on `bc-connector-health`, each once per occurrence.

Any feature reports what an operator must act on or know through `HealthEvents.emit(kind, ...)`:
the event names the connection and company, says what happened in words (`summary`) and what to do
(`fix`). "Once per occurrence": the caller names the occurrence (a subscription id, a restore's
operation id, a day); the event id is stable over (type, connection, company, occurrence) and a row
in `bchealth` claims it, so the same occurrence seen by N instances or N runs is one event. The rows
also feed the status page's "last health events".
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError

from connector.bc.timestamps import iso, utc_now
from connector.events import event_id
from connector.settings import QUEUE_HEALTH, TABLE_HEALTH
from connector.storage import Storage

log = logging.getLogger(__name__)

EVENT_PREFIX = "bc.connector."


@dataclass(frozen=True)
class HealthKind:
    """One kind of health event: its type, how bad it is, and the default advice."""

    type: str
    severity: str  # "action" (a person must act) or "info" (worth knowing)
    fix: str = ""


SIGN_IN_NEEDED = HealthKind("bc.connector.signin.needed", "action",
                            "sign in again at the connection's login link")
TOKEN_FAILING = HealthKind("bc.connector.token.failing", "action",
                           "check the app registration's credentials (secret or federated credential)")
SUBSCRIPTION_RECREATED = HealthKind("bc.connector.subscription.recreated", "info",
                                    "none needed: re-created; the sweep recovers what was missed")
SUBSCRIPTION_FAILING = HealthKind("bc.connector.subscription.failing", "action",
                                  "make the notification URL reachable from BC over public HTTPS")
GAP_FILLED = HealthKind("bc.connector.gap.filled", "info",
                        "none needed: the sweep emitted what webhooks missed")
ENVIRONMENT_CHANGED = HealthKind("bc.connector.environment.changed", "info")
ENVIRONMENT_COPIED = HealthKind("bc.connector.environment.copied", "action",
                                "confirm the connection may act on the copied data "
                                "(POST connections/{connection}/environment/confirm)")
ENVIRONMENT_RESTORED = HealthKind("bc.connector.environment.restored", "action",
                                  "check the vanished orders reported after this event")
ORDER_VANISHED = HealthKind("bc.connector.order.vanished", "action",
                            "the order is no longer in BC after a restore; send it again if it is still "
                            "wanted (the connector never re-creates it by itself)")
BUDGET_EXHAUSTED = HealthKind("bc.connector.budget.exhausted", "action",
                              "BC throttled this principal for a sustained time: spread load over more "
                              "principals or lower the schedules' frequency")
POISON_GROWING = HealthKind("bc.connector.poison.growing", "action",
                            "read the poison queue (python -m connector peek <queue>-poison), fix the "
                            "cause, then make replay-poison QUEUE=<queue>")
SECRET_EXPIRING = HealthKind("bc.connector.secret.expiring", "action",
                             "add a new client secret to the app registration and update "
                             "BC_CLIENT_SECRET (or switch to a federated credential: no secret at all)")
KINDS: tuple[HealthKind, ...] = (
    SIGN_IN_NEEDED, TOKEN_FAILING, SUBSCRIPTION_RECREATED, SUBSCRIPTION_FAILING, GAP_FILLED,
    ENVIRONMENT_CHANGED, ENVIRONMENT_COPIED, ENVIRONMENT_RESTORED, ORDER_VANISHED, BUDGET_EXHAUSTED,
    POISON_GROWING, SECRET_EXPIRING,
)
RECENT_WINDOW = timedelta(days=7)


def health_data_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each health event type's `data` (published in `schemas/`): what every
    health event carries; the details each kind adds are optional."""
    text = {"type": "string"}
    return {kind.type: {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": kind.type, "type": "object",
        "description": f"A connection health event ({kind.severity}): what happened and what to do.",
        "required": ["connection", "companyId", "severity", "summary", "fix"],
        "properties": {"connection": text, "companyId": text, "severity": {"enum": ["action", "info"]},
                       "summary": text, "fix": text},
    } for kind in KINDS}


class EventSink(Protocol):
    def publish(self, queue_name: str, events: Any) -> int: ...


def health_event(kind: HealthKind, *, connection: str, company_id: str, occurrence: str, summary: str,
                 now: datetime, fix: str = "", details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CloudEvent (pure): stable id per occurrence, `data` with the words and the details."""
    return {
        "specversion": "1.0",
        "id": event_id(kind.type, connection, company_id, occurrence),
        "source": f"bc-connector/{connection}/{company_id or '-'}",
        "type": kind.type,
        "time": iso(now),
        "subject": occurrence,
        "datacontenttype": "application/json",
        "data": {"connection": connection, "companyId": company_id, "severity": kind.severity,
                 "summary": summary, "fix": fix or kind.fix, **dict(details or {})},
    }


class HealthEvents:
    """Publishes health events once per occurrence and lists the recent ones."""

    def __init__(self, storage: Storage, sink: EventSink, clock: Any = utc_now):
        self._storage = storage
        self._sink = sink
        self._clock = clock

    def emit(self, kind: HealthKind, *, connection: str, company_id: str = "", occurrence: str,
             summary: str, fix: str = "", details: Mapping[str, Any] | None = None) -> bool:
        """Queue the event unless this occurrence was reported already; True when queued now.
        Never raises for a storage or queue failure: reporting must not break the work it reports on
        (the failure is logged; the next sighting of the occurrence tries again)."""
        now = self._clock()
        event = health_event(kind, connection=connection, company_id=company_id, occurrence=occurrence,
                             summary=summary, fix=fix, details=details, now=now)
        table = self._storage.table(TABLE_HEALTH)
        row = {"PartitionKey": connection, "RowKey": event["id"], "type": kind.type,
               "severity": kind.severity, "company_id": company_id, "occurrence": occurrence,
               "summary": summary, "fix": event["data"]["fix"], "time": iso(now)}
        try:
            table.create_entity(row)
        except ResourceExistsError:
            return False
        except Exception as exc:  # noqa: BLE001 - see docstring
            log.warning("health %s: %s not recorded: %s", connection, kind.type, exc)
            return False
        try:
            self._sink.publish(QUEUE_HEALTH, [event])
        except Exception as exc:  # noqa: BLE001 - see docstring; the claim goes so a later sighting retries
            log.warning("health %s: %s not queued: %s", connection, kind.type, exc)
            try:
                table.delete_entity(connection, event["id"])
            except Exception:  # noqa: BLE001
                pass
            return False
        log.warning("health %s: %s — %s", connection, kind.type, summary)
        return True

    def now(self) -> datetime:
        return self._clock()

    def recent(self, connection: str, limit: int = 10) -> list[dict[str, Any]]:
        """The connection's latest health events (newest first), from the last 7 days."""
        return recent_health(self._storage, connection, self._clock(), limit)


def recent_health(storage: Storage, connection: str, now: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """A connection's latest health events (newest first) from the last 7 days, from `bchealth`."""
    rows = storage.table(TABLE_HEALTH).query_entities(
        "PartitionKey eq @pk and time ge @since",
        parameters={"pk": connection, "since": iso(now - RECENT_WINDOW)})
    return latest_health(rows, limit)


def latest_health(rows: Iterable[Mapping[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """The newest `limit` of some `bchealth` rows, as shown."""
    fields = ("type", "severity", "company_id", "occurrence", "summary", "fix", "time")
    found = [{name: row.get(name, "") for name in fields} for row in rows]
    return sorted(found, key=lambda r: r["time"], reverse=True)[:limit]
