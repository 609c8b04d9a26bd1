"""What the connector checks about its own health and reports as `bc.connector.*` events: a client
secret close to its expiry, a poison queue growing, BC's budget exhausted for a sustained time."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from connector.health.events import BUDGET_EXHAUSTED, POISON_GROWING, SECRET_EXPIRING, HealthEvents
from connector.settings import QUEUE_NAMES, ConnectionSettings, Settings
from connector.storage import Storage

SECRET_WARNING_DAYS = 30


def secret_days_left(conn: ConnectionSettings, today: date) -> int | None:
    """Days until the client secret expires (negative: expired); None when not tracked or unused."""
    if conn.client_credential != "secret" or not conn.client_secret_expires:
        return None
    return (date.fromisoformat(conn.client_secret_expires) - today).days


def secret_warning(conn: ConnectionSettings, today: date) -> str:
    """The status page's warning about the client secret ('' when none is due)."""
    days = secret_days_left(conn, today)
    if days is None or days > SECRET_WARNING_DAYS:
        return ""
    if days < 0:
        return f"the client secret expired on {conn.client_secret_expires}"
    return f"the client secret expires on {conn.client_secret_expires} (in {days} days)"


def poison_bucket(depth: int) -> int:
    """The power of two a poison queue's depth has reached (0 when empty): growth past each is news."""
    return 0 if depth <= 0 else 1 << (depth.bit_length() - 1)


def check_secrets(settings: Settings, health: HealthEvents, now: datetime) -> None:
    """One `bc.connector.secret.expiring` per connection and expiry date (and one more once expired)."""
    for conn in settings.connections.values():
        warning = secret_warning(conn, now.date())
        if warning:
            expired = (secret_days_left(conn, now.date()) or 0) < 0
            health.emit(SECRET_EXPIRING, connection=conn.name, company_id=conn.company,
                        occurrence=f"{conn.client_secret_expires}:{'expired' if expired else 'soon'}",
                        summary=warning, details={"expires": conn.client_secret_expires})


def check_poison(depths: Mapping[str, int], health: HealthEvents, now: datetime) -> None:
    """One `bc.connector.poison.growing` per queue, day and power of two its depth reached."""
    for queue, depth in depths.items():
        bucket = poison_bucket(int(depth or 0))
        if bucket:
            health.emit(POISON_GROWING, connection="all", occurrence=f"{queue}:{now.date()}:{bucket}",
                        summary=f"{queue} holds {depth} message(s) that failed for good",
                        details={"queue": queue, "depth": depth})


def budget_exhausted(health: HealthEvents, connection: str, detail: str) -> None:
    """BC kept throttling a request through every retry: one event per connection and hour."""
    hour = health.now().strftime("%Y-%m-%dT%H")
    health.emit(BUDGET_EXHAUSTED, connection=connection, occurrence=hour,
                summary=f"BC's request budget stayed exhausted: {detail}")


def check_all(settings: Settings, storage: Storage, health: HealthEvents, now: datetime) -> None:
    """The periodic checks (the renewal timer and every status call run them): secrets, poison."""
    check_secrets(settings, health, now)
    depths = {q: storage.queue(q).get_queue_properties().approximate_message_count or 0
              for q in QUEUE_NAMES if q.endswith("-poison")}
    check_poison(depths, health, now)
