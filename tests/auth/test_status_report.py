"""Pure parts of /api/status: token state, what a subscription/cursor row shows, login URL."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.ops.status import connection_report, cursor_view, subscription_view, token_state
from connector.settings import load_settings

ENV = {"BC_TENANT": "lmints.io", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"}
CODE = load_settings({**ENV, "BC_GRANT_TYPE": "authorization_code"}).connection("default")
S2S = load_settings({**ENV, "BC_GRANT_TYPE": "client_credentials"}).connection("default")


@pytest.mark.parametrize(("conn", "has_tokens", "saved", "expected"), [
    (CODE, False, "", "not-signed-in"),
    (CODE, False, "ok", "not-signed-in"),
    (CODE, False, "refresh-failed", "refresh-failed"),
    (CODE, True, "ok", "ok"),
    (CODE, True, "", "ok"),
    (S2S, False, "", "ok"),
    (S2S, True, "refresh-failed", "refresh-failed"),
    (S2S, False, "credentials-refused", "credentials-refused"),
])
def test_token_state(conn, has_tokens: bool, saved: str, expected: str) -> None:
    assert token_state(conn, has_tokens, saved) == expected


@pytest.mark.parametrize("saved", ["ok", "credentials-refused"])
def test_a_connection_switched_to_sign_in_is_not_signed_in_whatever_client_credentials_recorded(saved):
    # the client-credentials token cache is still stored (has_tokens), its state row says `saved`
    assert token_state(CODE, True, saved, "client_credentials") == "not-signed-in"
    assert token_state(S2S, True, "refresh-failed", "authorization_code") == "ok"


def test_subscription_shows_its_state_but_never_client_state_material() -> None:
    row = {"PartitionKey": "default", "RowKey": "c1:items", "resource": "companies(c1)/items",
           "subscription_id": "abc", "expires_at": "2026-11-28T12:00:00Z", "status": "active",
           "last_error": "", "client_state_nonce": "n0nce", "client_state": "s3cret"}
    view = subscription_view(row)
    assert view == {"resource": "companies(c1)/items", "entity_set": "", "subscription_id": "abc",
                    "expires_at": "2026-11-28T12:00:00Z", "status": "active", "last_error": "",
                    "removed_reason": "", "removed_at": ""}


def test_cursor_shows_whether_a_paged_read_is_under_way() -> None:
    when = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert cursor_view({"RowKey": "items:c1", "cursor": "2026-11-25T11:00:00Z", "updated_at": when,
                        "next_link": "https://bc/items?$skiptoken=x"}) == {
        "name": "items:c1", "cursor": "2026-11-25T11:00:00Z", "updated_at": when.isoformat(),
        "next_link": True}
    assert cursor_view({"RowKey": "items:c1"})["next_link"] is False


def test_not_signed_in_connection_shows_its_login_url() -> None:
    report = connection_report(CODE, public_login_url="https://app/api/connections/default/login",
                               has_tokens=False, state_row=None, subscriptions=[], cursors=[])
    assert report["token"] == {"state": "not-signed-in", "signed_in_at": None, "signed_in_as": "",
                               "login_url": "https://app/api/connections/default/login",
                               "fix": "sign in at https://app/api/connections/default/login"}
    assert report["companies"] == [] and report["company_id"] == ""


def test_refresh_failed_connection_shows_the_error_and_login_url() -> None:
    row = {"token_state": "refresh-failed", "token_error": "invalid_grant (AADSTS50173)",
           "company_id": "c1", "companies": '[{"id": "c1", "name": "A", "displayName": "A"}]'}
    report = connection_report(CODE, public_login_url="u", has_tokens=False, state_row=row,
                               subscriptions=[], cursors=[])
    assert report["token"]["state"] == "refresh-failed"
    assert report["token"]["error"] == "invalid_grant (AADSTS50173)"
    assert report["token"]["login_url"] == "u"
    assert report["company_id"] == "c1" and report["companies"][0]["id"] == "c1"


def test_client_credentials_connection_has_no_login_url() -> None:
    report = connection_report(S2S, public_login_url="u", has_tokens=False, state_row=None,
                               subscriptions=[], cursors=[])
    assert report["token"] == {"state": "ok"}
    assert report["grant_type"] == "client_credentials"
