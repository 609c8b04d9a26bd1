"""The connector's own health checks: a client secret close to expiry, a growing poison queue."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

from connector.health.checks import check_poison, check_secrets, poison_bucket, secret_warning
from connector.settings import QUEUE_HEALTH, load_settings

ENV = {"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"}


def _queued(runtime: Any) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in runtime.storage.queue(QUEUE_HEALTH).peek_messages(max_messages=32)]


def test_a_secret_is_warned_about_from_30_days_before_it_expires() -> None:
    conn = load_settings({**ENV, "BC_CLIENT_SECRET_EXPIRES": "2027-01-31"}).connection("default")
    assert secret_warning(conn, date(2026, 12, 31)) == ""
    assert "in 30 days" in secret_warning(conn, date(2027, 1, 1))
    assert "expired on 2027-01-31" in secret_warning(conn, date(2027, 2, 1))
    federated = load_settings({**ENV, "BC_CLIENT_SECRET_EXPIRES": "2027-01-31",
                               "BC_CLIENT_CREDENTIAL": "managed-identity"}).connection("default")
    assert secret_warning(federated, date(2027, 2, 1)) == ""  # no secret in use


def test_poison_growth_is_news_at_each_power_of_two() -> None:
    assert [poison_bucket(n) for n in (0, 1, 2, 3, 4, 7, 8, 100)] == [0, 1, 2, 2, 4, 4, 8, 64]


def test_an_expiring_secret_and_a_growing_poison_queue_are_one_event_each(connector_env: Any) -> None:
    from connector.runtime import get_runtime

    soon = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    connector_env(BC_CLIENT_SECRET_EXPIRES=soon)
    runtime = get_runtime()
    now = datetime.now(UTC)
    for _ in range(2):
        check_secrets(runtime.settings, runtime.health, now)
        check_poison({"sales-orders-poison": 3}, runtime.health, now)
    check_poison({"sales-orders-poison": 5}, runtime.health, now)  # past 4: news
    types = sorted(e["type"] for e in _queued(runtime))
    assert types == ["bc.connector.poison.growing", "bc.connector.poison.growing",
                     "bc.connector.secret.expiring"]


def test_the_status_page_warns_about_a_secret_expiring_soon(local_host: Any) -> None:
    soon = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    host = local_host(BC_CLIENT_SECRET_EXPIRES=soon)
    page = requests.get(f"{host.url}/api/status", headers={"Accept": "text/html"}, timeout=30).text
    assert f"the client secret expires on {soon}" in page
    events = [m for m in requests.get(f"{host.url}/api/status", timeout=30).json()["connections"][0][
        "health_events"] if m["type"] == "bc.connector.secret.expiring"]
    assert len(events) == 1
