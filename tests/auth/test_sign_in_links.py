"""Sign-in without the master key in a URL (issue 20; issue 27 row 1): an admin call with the key in a
header mints a one-time, five-minute, signed link for one connection; the status page (function key)
mints one for its Sign in button, so the button works where the host enforces keys (Azure, and the
local host with LOCAL_HOST_REQUIRE_KEYS); the old `?code=` login still works."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connector.auth.signin import SignInRejected
from connector.auth.signin_links import mint_link, open_ticket, signer
from connector.settings import load_settings
from connector.signing import Signer
from tests.auth.browser import authorize, post_callback
from tests.conftest import TEST_ENCRYPTION_KEY

KEYS = {"LOCAL_HOST_REQUIRE_KEYS": "true", "LOCAL_HOST_FUNCTION_KEY": "function-key",
        "LOCAL_HOST_MASTER_KEY": "master-key"}
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def ticket_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["ticket"][0]


# ---- pure: tickets ------------------------------------------------------------------------------

@pytest.fixture
def settings() -> Any:
    return load_settings({"TOKEN_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY, "BC_TENANT": "t", "BC_CLIENT_ID": "c",
                          "BC_CLIENT_SECRET": "s",
                          "PUBLIC_BASE_URL": "https://app.example", "BC_GRANT_TYPE": "authorization_code"})


def test_a_minted_link_names_its_connection_expires_in_minutes_and_carries_no_key(settings) -> None:
    link = mint_link(settings, "default", NOW)
    assert link.url.startswith("https://app.example/api/auth/login?ticket=")
    assert "code=" not in link.url and TEST_ENCRYPTION_KEY not in link.url
    assert link.expires_at - NOW == timedelta(minutes=5)
    ticket = open_ticket(signer(settings), ticket_of(link.url), NOW + timedelta(minutes=4))
    assert ticket.connection == "default" and len(ticket.nonce) >= 22


def test_an_expired_forged_or_foreign_ticket_is_refused(settings) -> None:
    ticket = ticket_of(mint_link(settings, "default", NOW).url)
    body, _, signature = ticket.partition(".")
    with pytest.raises(SignInRejected) as late:
        open_ticket(signer(settings), ticket, NOW + timedelta(minutes=5))
    assert late.value.status == 410
    other_purpose = Signer([TEST_ENCRYPTION_KEY], "internal queue").sign(body.encode())
    tampered_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    for forged in (f"{body}.{other_purpose}", f"{tampered_body}.{signature}", body, "", "." * 600,
                   f"{body}.{signature}\u00e9"):
        with pytest.raises(SignInRejected) as refused:
            open_ticket(signer(settings), forged, NOW)
        assert refused.value.status == 403
    other_key = Signer(["another key"], "sign-in link")
    with pytest.raises(SignInRejected):
        open_ticket(other_key, ticket, NOW)


# ---- the local host with keys enforced ------------------------------------------------------------

def test_an_admin_call_with_the_key_in_a_header_mints_a_link_that_signs_in_once(
        code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host(**KEYS)
    assert requests.get(f"{host.url}/api/connections/default/login", allow_redirects=False,
                        timeout=30).status_code == 401  # what Azure answers the bare login URL
    mint = f"{host.url}/api/connections/default/login-link"
    assert requests.post(mint, timeout=30).status_code == 401
    assert requests.post(mint, headers={"x-functions-key": "function-key"}, timeout=30).status_code == 401
    minted = requests.post(mint, headers={"x-functions-key": "master-key"}, timeout=30)
    assert minted.status_code == 200 and minted.headers["Cache-Control"] == "no-store"
    link = minted.json()
    assert link["connection"] == "default" and link["url"].startswith(f"{host.url}/api/auth/login?ticket=")
    assert "master-key" not in link["url"]

    started = requests.get(link["url"], allow_redirects=False, timeout=30)  # no key: the ticket is it
    assert started.status_code == 302, started.text
    page = post_callback(authorize(emulator, started.headers["Location"]))
    assert page.status_code == 200 and "admin@lmints.io" in page.text

    again = requests.get(link["url"], allow_redirects=False, timeout=30)
    assert again.status_code == 410 and "already used" in again.text
    assert requests.get(f"{host.url}/api/auth/login?ticket=x.y", timeout=30).status_code == 403
    unknown = requests.post(f"{host.url}/api/connections/nope/login-link",
                            headers={"x-functions-key": "master-key"}, timeout=30)
    assert unknown.status_code == 404


def test_the_status_pages_sign_in_button_works_with_keys_enforced(
        code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host(**KEYS)
    page = requests.get(f"{host.url}/api/status", headers={"Accept": "text/html",
                                                           "x-functions-key": "function-key"}, timeout=30)
    assert page.status_code == 200
    [href] = [unescape(h) for h in re.findall(r'<a class="button" href="([^"]+)">Sign in</a>', page.text)]
    assert href.startswith(f"{host.url}/api/auth/login?ticket=") and "code=" not in href

    started = requests.get(href, allow_redirects=False, timeout=30)  # a browser: no key of its own
    assert started.status_code == 302, started.text
    assert post_callback(authorize(emulator, started.headers["Location"])).status_code == 200
    status = requests.get(f"{host.url}/api/status?code=function-key", timeout=30).json()
    assert status["connections"][0]["token"]["state"] == "ok"


def test_the_old_login_link_with_the_master_key_still_works(code_flow_host: Callable[..., Any]) -> None:
    host = code_flow_host(**KEYS)
    old = requests.get(f"{host.url}/api/connections/default/login?code=master-key", allow_redirects=False,
                       timeout=30)
    assert old.status_code == 302
