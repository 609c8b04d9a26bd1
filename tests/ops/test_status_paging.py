"""/api/status with many connections: PAGE_SIZE at a time, a summary row per connection first, and
links to the other pages that keep the function key."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from connector.ops.paging import PAGE_SIZE, page_of, requested_page
from connector.ops.status_page import render_status_page
from tests.waiting import wait_until

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def test_pages_are_clamped_and_say_where_they_stand():
    names = [f"c{n:04d}" for n in range(1, 1001)]
    shown, paging = page_of(names, 3)
    assert shown == names[100:150] and paging == {"page": 3, "pages": 20, "perPage": PAGE_SIZE,
                                                  "connections": 1000, "first": 101, "last": 150}
    assert page_of(names, 99)[1]["page"] == 20 and page_of(names, None)[0] == names[:50]
    assert [requested_page(t) for t in ("2", "0", "x", None)] == [2, None, None, None]


def test_the_page_summarises_its_connections_and_links_on_with_the_key():
    conns = [{"name": f"c{n:04d}", "tenant": "t.example", "environment": "production",
              "token": {"state": "ok"}, "subscriptions": [{"status": "active"}] * 3} for n in range(51, 101)]
    _, paging = page_of([f"c{n:04d}" for n in range(1, 1001)], 2)
    page = render_status_page({"generated_at": "2026-12-05T12:00:00Z", "connections": conns,
                               "dead_letters": {}, "paging": paging}, NOW, {"code": "k&y"})
    assert "Connections 51–100 of 1,000 · page 2 of 20" in page
    assert 'href="?code=k%26y&amp;page=1"' in page and 'href="?code=k%26y&amp;page=3"' in page
    assert page.count('<a href="#c-c0') == 50 and "3 active" in page


def test_the_route_pages_many_connections(local_host: Callable[..., Any]):
    names = [f"c{n:03d}" for n in range(1, PAGE_SIZE + 11)]  # every one on the default company
    host = local_host(BC_CONNECTIONS=",".join(names))
    report = requests.get(f"{host.url}/api/status?page=2", timeout=120).json()
    assert report["paging"]["page"] == 2 and report["paging"]["connections"] == PAGE_SIZE + 10
    assert [c["name"] for c in report["connections"]] == names[PAGE_SIZE:]
    first = requests.get(f"{host.url}/api/status", timeout=120).json()
    assert [c["name"] for c in first["connections"]] == names[:PAGE_SIZE]


def test_the_gauges_read_two_tables_whole_not_a_partition_per_connection(
        connector_env: Callable[..., Any], monkeypatch: Any):
    from connector.bc.timestamps import iso
    from connector.ops.status import gauge_report, read_status, status_readings
    from connector.runtime import get_runtime
    from connector.settings import TABLE_CONNECTION_DEFS, TABLE_CURSORS, TABLE_SUBSCRIPTIONS

    names = [f"c{n:03d}" for n in range(1, 13)]
    connector_env(BC_CONNECTIONS=",".join(names))
    runtime = get_runtime()
    subscriptions = runtime.storage.table(TABLE_SUBSCRIPTIONS)
    cursors = runtime.storage.table(TABLE_CURSORS)
    for n, name in enumerate(names):
        for trigger in ("items", "salesShipments", "salesInvoices")[: n % 4]:
            subscriptions.upsert_entity({"PartitionKey": name, "RowKey": f"x:{trigger}",
                                         "status": ("active", "failed")[n % 2]})
        cursors.upsert_entity({"PartitionKey": name, "RowKey": "items:x", "cursor": iso(NOW),
                               "updated_at": f"2026-12-05T11:{n:02d}:00Z"})
    cursors.upsert_entity({"PartitionKey": "gone", "RowKey": "items:x", "updated_at": "2026-12-05T11:00:00Z"})
    calls = []
    real_table = runtime.storage.table
    with monkeypatch.context() as patch:
        patch.setattr(runtime.storage, "table",
                      lambda name, **kw: calls.append(name) or real_table(name, **kw))
        readings = status_readings(gauge_report(runtime.settings, runtime.storage, NOW), NOW)
    # whatever the number of connections (and the connection table, read live by the runtime)
    assert sorted(c for c in calls if c != TABLE_CONNECTION_DEFS) == [TABLE_CURSORS, TABLE_SUBSCRIPTIONS]
    full = read_status(runtime.settings, runtime.storage, NOW, throughput=False)
    assert readings == status_readings(full, NOW)
    assert ({"connection": "c004", "state": "failed"}, 3.0) in [
        (a, v) for v, a in readings["bc_connector.subscriptions"]]
    assert len(readings["bc_connector.seconds_since_pull"]) == len(names)  # not the unconfigured "gone"


def test_a_page_of_many_connections_renders_while_its_tokens_are_verified_in_the_background(
        connector_env: Callable[..., Any]):
    import threading

    from connector.ops.service import StatusService
    from connector.runtime import get_runtime

    names = [f"c{n:03d}" for n in range(1, PAGE_SIZE + 11)]
    connector_env(BC_CONNECTIONS=",".join(names))
    runtime = get_runtime()
    release, verified = threading.Event(), []

    class SlowEntra:
        def verify(self, name: str) -> None:
            release.wait(60)
            verified.append(name)

    slow: Any = SlowEntra()
    status = StatusService(runtime.settings, runtime.storage, slow, runtime.health, runtime.activity)
    report = status.report(NOW, 2)  # not held by the verifications
    assert [c["name"] for c in report["connections"]] == names[PAGE_SIZE:] and verified == []
    status.report(NOW, 2)  # asked again while they wait: not queued twice
    release.set()
    wait_until(lambda: len(verified) >= 10, timeout=30, what="the page's verifications")
    assert sorted(verified) == names[PAGE_SIZE:]
