"""Pure sign-in decisions: callback validation, token error classes, pages, company choice."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connector.auth.pages import sign_in_failed_page, signed_in_page
from connector.auth.signin import SignedIn, callback_problem
from connector.auth.token_store import PendingSignIn
from connector.auth.tokens import compact_cache, describe_token_error, token_failure_kind
from connector.bc.companies import CompanyNotFound, choose_company

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PENDING = PendingSignIn("default", {"state": "s"}, NOW + timedelta(minutes=5))
COMPANIES = [{"id": "c1", "name": "CRONUS UK Ltd.", "displayName": "CRONUS UK"},
             {"id": "c2", "name": "CRONUS USA, Inc.", "displayName": "CRONUS USA"}]


def test_callback_with_valid_state_and_code_is_accepted() -> None:
    assert callback_problem({"state": "s", "code": "c"}, PENDING, NOW) is None


@pytest.mark.parametrize(("params", "pending", "now", "expected"), [
    ({"state": "s", "code": "c"}, None, NOW, "unknown or was already completed"),
    ({"state": "s", "code": "c"}, PENDING, NOW + timedelta(minutes=6), "expired"),
    ({"state": "s", "error": "access_denied", "error_description": "AADSTS65004: declined"}, PENDING, NOW,
     "did not sign you in: access_denied (AADSTS65004: declined)"),
    ({"state": "s"}, PENDING, NOW, "no authorization code"),
])
def test_callback_problems_are_named(params: dict[str, str], pending: PendingSignIn | None, now: datetime,
                                     expected: str) -> None:
    assert expected in (callback_problem(params, pending, now) or "")


@pytest.mark.parametrize(("result", "kind"), [
    ({"error": "invalid_grant", "error_codes": [50173]}, "sign-in"),
    ({"error": "interaction_required"}, "sign-in"),
    (None, "sign-in"),
    ({"error": "temporarily_unavailable"}, "transient"),
    ({"error": "server_error"}, "transient"),
    ({"error": "invalid_client", "error_codes": [7000215]}, "config"),
    ({"error": "unauthorized_client"}, "config"),
])
def test_token_errors_are_classified_by_what_cures_them(result: dict | None, kind: str) -> None:
    assert token_failure_kind(result) == kind


def test_token_error_description_names_code_and_number_only() -> None:
    result = {"error": "invalid_grant", "error_codes": [50173],
              "error_description": "AADSTS50173: grant revoked. Trace ID: x"}
    assert describe_token_error(result) == "invalid_grant (AADSTS50173)"
    assert describe_token_error(None) == "no refresh token in the cache"


def test_compact_cache_keeps_the_content() -> None:
    serialized = json.dumps({"AccessToken": {"k": {"secret": "x"}}}, indent=4)
    assert json.loads(compact_cache(serialized)) == json.loads(serialized)
    assert "\n" not in compact_cache(serialized)
    assert compact_cache("") == ""


def test_pages_escape_every_value() -> None:
    evil = '<script>alert("x")</script>'
    page = signed_in_page(SignedIn(evil, evil, [{"id": evil, "name": evil, "displayName": evil}], evil, evil))
    assert "<script>" not in page and "&lt;script&gt;" in page
    failed = sign_in_failed_page(f"Entra ID did not sign you in: {evil}")
    assert "<script>" not in failed and "&lt;script&gt;" in failed


def test_signed_in_page_names_the_connection_and_marks_the_chosen_company() -> None:
    page = signed_in_page(SignedIn("emea", "admin@lmints.io", COMPANIES, "c2"))
    assert "emea" in page and "admin@lmints.io" in page
    assert "CRONUS USA <code>c2</code> (chosen)" in page
    assert "CRONUS UK <code>c1</code></li>" in page


def test_configured_company_wins_over_the_first_one() -> None:
    assert choose_company(COMPANIES, "")["id"] == "c1"
    assert choose_company(COMPANIES, "cronus usa, inc.")["id"] == "c2"
    assert choose_company(COMPANIES, "C2")["id"] == "c2"
    assert choose_company([], "") is None
    with pytest.raises(CompanyNotFound, match="available: CRONUS UK Ltd., CRONUS USA, Inc."):
        choose_company(COMPANIES, "Fabrikam")
