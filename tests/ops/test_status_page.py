"""The status page's pure parts: content negotiation, expiry wording, escaping, gauges and throughput."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.ops.status import status_readings, throughput
from connector.ops.status_page import render_status_page, time_left, wants_html

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize("accept, html", [
    (BROWSER, True),
    ("text/html", True),
    (None, False),
    ("", False),
    ("*/*", False),  # curl, requests: JSON stays the default
    ("application/json", False),
    ("application/json, text/html;q=0.5", False),
    ("text/html;q=0.9, application/json;q=0.4", True),
    ("text/html;q=0", False),
])
def test_html_only_when_the_client_prefers_it(accept, html):
    assert wants_html(accept) is html


@pytest.mark.parametrize("delta, shown", [
    (timedelta(days=2, hours=5, minutes=3), "2 d 5 h"),
    (timedelta(hours=3, minutes=20), "3 h 20 min"),
    (timedelta(minutes=40, seconds=5), "40 min"),
    (timedelta(seconds=-1), "expired"),
])
def test_subscription_expiry_reads_as_time_left(delta, shown):
    assert time_left((NOW + delta).isoformat(), NOW) == shown


def test_unreadable_expiry_is_a_dash():
    assert time_left("", NOW) == "—" and time_left("soon", NOW) == "—"


def _report(**conn):
    base = {"name": "default", "grant_type": "authorization_code", "tenant": "t", "environment": "production",
            "token": {"state": "ok"}, "company_id": "c1", "companies": [], "subscriptions": [], "cursors": [],
            "throughput_24h": {"orders": {}, "events": {}}}
    return {"generated_at": "2026-11-29T12:00:00Z", "connections": [base | conn],
            "dead_letters": {"sales-orders-poison": 0, "bc-notifications-poison": 3}}


def test_every_value_is_escaped_and_no_script_is_sent():
    page = render_status_page(_report(name="x", tenant='"><img src=x onerror=alert(1)>',
                                      token={"state": "refresh-failed", "error": "<b>refused</b>",
                                             "login_url": 'https://a/login?x="y"&z=1'}), NOW)
    assert "<img" not in page and "<b>refused" not in page and "<script" not in page
    assert "&lt;b&gt;refused&lt;/b&gt;" in page
    assert 'href="https://a/login?x=&quot;y&quot;&amp;z=1"' in page


def test_poison_queues_with_messages_show_the_replay_command():
    page = render_status_page(_report(), NOW)
    assert "make replay-poison QUEUE=bc-notifications" in page
    assert "make replay-poison QUEUE=sales-orders" not in page  # nothing to replay


def test_throughput_counts_orders_and_announcements_per_connection():
    # Partition keys as the tables hold them: table_key() quotes the `|` separators.
    orders = [{"PartitionKey": "default%7Cc1", "state": "created"},
              {"PartitionKey": "default%7Cc1", "state": "created"},
              {"PartitionKey": "emea%7Cc2", "state": "duplicate"}]
    announced = [{"PartitionKey": "default%7Cc1%7Citems"}, {"PartitionKey": "default%7Cc1%7CsalesInvoices"},
                 {"PartitionKey": "default%7Cc2%7Citems"}]
    assert throughput(orders, announced) == {
        "default": {"orders": {"created": 2}, "events": {"items": 2, "salesInvoices": 1}},
        "emea": {"orders": {"duplicate": 1}, "events": {}},
    }


def test_gauges_from_the_report():
    report = _report(subscriptions=[{"status": "active"}, {"status": "active"}, {"status": "failed"}],
                     cursors=[{"name": "items:c1", "updated_at": "2026-11-29T11:50:00Z"},
                              {"name": "sweep:items:c1", "updated_at": "2026-11-29T11:00:00Z"},
                              {"name": "sweep:salesInvoices:c1", "updated_at": "2026-11-29T11:30:00Z"}])
    readings = status_readings(report, NOW)
    assert readings["bc_connector.subscriptions"] == [(2.0, {"connection": "default", "state": "active"}),
                                                      (1.0, {"connection": "default", "state": "failed"})]
    assert readings["bc_connector.seconds_since_pull"] == [(600.0, {"connection": "default"})]
    assert readings["bc_connector.seconds_since_sweep"] == [(1800.0, {"connection": "default"})]
    poison = readings["bc_connector.poison_depth"]
    assert (3.0, {"connection": "all", "queue": "bc-notifications-poison"}) in poison


def test_no_cursor_yet_means_no_since_gauge():
    readings = status_readings(_report(), NOW)
    assert readings["bc_connector.seconds_since_pull"] == [] == readings["bc_connector.seconds_since_sweep"]
