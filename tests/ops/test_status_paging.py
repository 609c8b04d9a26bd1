"""/api/status with many connections: PAGE_SIZE at a time, a summary row per connection first, and
links to the other pages that keep the function key."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from connector.ops.paging import PAGE_SIZE, page_of, requested_page
from connector.ops.status_page import render_status_page

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
