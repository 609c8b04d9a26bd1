"""The status report and page flag a subscription that notifies another URL than this deployment's
(issue 27, row 3) until a subscription run recreates it."""
from datetime import UTC, datetime

from connector.ops.status import connection_report
from connector.ops.status_page import render_status_page
from connector.settings import load_settings

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
CURRENT = "http://127.0.0.1:7072/api/webhooks/bc?connection=default"


def report(url: str) -> dict:
    conn = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                          "BC_GRANT_TYPE": "client_credentials"}).connection("default")
    row = {"resource": "companies(c1)/items", "subscription_id": "s1", "expires_at": "2026-12-07T12:00:00Z",
           "status": "active", "last_error": "", "notification_url": url}
    return connection_report(conn, public_login_url="u", has_tokens=True, state_row=None, subscriptions=[row],
                             cursors=[], notification_urls=[CURRENT])


def test_a_subscription_for_another_url_is_flagged_in_the_report_and_on_the_page():
    old = report("http://127.0.0.1:7071/api/webhooks/bc?connection=default")
    [sub] = old["subscriptions"]
    assert sub["url_current"] is False and sub["notification_url"].startswith("http://127.0.0.1:7071/")
    page = render_status_page({"connections": [old], "dead_letters": {}}, NOW)
    assert 'data-url-mismatch="1"' in page and "127.0.0.1:7071" in page


def test_a_subscription_for_this_url_is_not_flagged():
    current = report(CURRENT)
    assert current["subscriptions"][0]["url_current"] is True
    assert "data-url-mismatch" not in render_status_page({"connections": [current], "dead_letters": {}}, NOW)
