"""Authorization-code sign-in end to end: the local host serving the real app, the Entra/BC emulator,
a stand-in browser that follows the redirects. Every rejected callback leaves storage as it was."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from connector.auth.crypto import TokenCipher
from connector.bc.errors import TokenUnavailable
from connector.runtime import get_runtime
from connector.settings import TABLE_AUTH_FLOWS, TABLE_CONNECTIONS, TABLE_TOKENS
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID, SANDBOX_COMPANY_ID
from tests.auth.browser import (
    PAST_TOKEN_LIFETIME,
    QUIET_TIMERS,
    authorize,
    post_callback,
    sign_in,
    start_login,
    stored_cache,
    table_rows,
)
from tests.conftest import TEST_ENCRYPTION_KEY


def status_of(host: Any, connection: str = "default") -> dict[str, Any]:
    report = requests.get(f"{host.url}/api/status", timeout=30).json()
    return next(c for c in report["connections"] if c["name"] == connection)


def test_sign_in_stores_tokens_lists_companies_and_makes_bc_usable(
        code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host()
    result = sign_in(host, emulator)
    assert result.page.status_code == 200, result.page.text
    assert result.page.headers["Content-Type"].startswith("text/html")
    assert "default" in result.page.text and "admin@lmints.io" in result.page.text
    assert "CRONUS UK Ltd." in result.page.text and "CRONUS USA, Inc." in result.page.text

    companies = get_runtime().bc().get("companies")["value"]
    assert {c["id"] for c in companies} == {CRONUS_UK_ID, CRONUS_USA_ID}
    status = status_of(host)
    assert status["token"]["state"] == "ok" and "login_url" not in status["token"]
    assert status["token"]["signed_in_as"] == "admin@lmints.io"
    assert status["company_id"] == CRONUS_UK_ID
    assert {c["name"] for c in status["companies"]} == {"CRONUS UK Ltd.", "CRONUS USA, Inc."}
    assert get_runtime().company_id() == CRONUS_UK_ID


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_authorize_request_carries_state_pkce_and_asks_for_a_refresh_token(
        code_flow_host: Callable[..., Any], azurite: Any) -> None:
    host = code_flow_host()
    query = parse_qs(urlsplit(start_login(host)).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert "offline_access" in query["scope"][0].split()
    assert "https://api.businesscentral.dynamics.com/.default" in query["scope"][0].split()
    assert query["redirect_uri"] == [f"{host.url}/api/auth/callback"]
    assert query["response_mode"] == ["form_post"]  # the code never travels in a URL

    rows = table_rows(azurite.connection_string)
    assert TABLE_CONNECTIONS not in rows and TABLE_TOKENS not in rows
    [row] = rows[TABLE_AUTH_FLOWS]
    assert row["PartitionKey"] == query["state"][0]
    assert set(row) - {"Timestamp", "etag"} == {"PartitionKey", "RowKey", "sealed"}  # nothing in plaintext
    sealed = json.loads(TokenCipher([TEST_ENCRYPTION_KEY]).open(row["sealed"], f"flow:{row['PartitionKey']}"))
    assert sealed["connection"] == "default" and sealed["expires_at"]
    flow = sealed["flow"]
    assert pkce_challenge(flow["code_verifier"]) == query["code_challenge"][0]
    assert flow["code_verifier"] not in str(row) and flow["nonce"] not in str(row)


def test_sign_in_chooses_the_configured_company(code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host(BC_COMPANY="CRONUS USA, Inc.")
    result = sign_in(host, emulator)
    assert result.page.status_code == 200
    assert f"<code>{CRONUS_USA_ID}</code> (chosen)" in result.page.text
    assert status_of(host)["company_id"] == CRONUS_USA_ID


def test_two_connections_keep_separate_tokens_and_companies(
        code_flow_host: Callable[..., Any], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    host = code_flow_host(BC_CONNECTIONS="default,emea", EMEA__BC_ENVIRONMENT="sandbox")
    assert sign_in(host, emulator, "default").page.status_code == 200
    monkeypatch.setattr(emulator.entra, "signin_user", "sales@lmints.io")
    emea_page = sign_in(host, emulator, "emea").page
    assert emea_page.status_code == 200 and "emea" in emea_page.text

    runtime = get_runtime()
    assert {c["id"] for c in runtime.bc("default").get("companies")["value"]} == {CRONUS_UK_ID, CRONUS_USA_ID}
    assert [c["id"] for c in runtime.bc("emea").get("companies")["value"]] == [SANDBOX_COMPANY_ID]
    default_rt = stored_cache(runtime.storage, "default")["RefreshToken"]
    emea_rt = stored_cache(runtime.storage, "emea")["RefreshToken"]
    assert {e["secret"] for e in default_rt.values()}.isdisjoint(e["secret"] for e in emea_rt.values())
    assert status_of(host, "default")["token"]["signed_in_as"] == "admin@lmints.io"
    emea = status_of(host, "emea")
    assert (emea["environment"], emea["company_id"], emea["token"]["signed_in_as"]) == (
        "sandbox", SANDBOX_COMPANY_ID, "sales@lmints.io")

    emulator.entra.revoke_refresh_tokens(user="sales@lmints.io")
    emulator.clock.advance(PAST_TOKEN_LIFETIME)
    assert len(runtime.bc("default").get("companies")["value"]) == 2
    with pytest.raises(TokenUnavailable) as caught:
        runtime.bc("emea").get("companies")
    assert caught.value.state == "refresh-failed"
    assert status_of(host, "default")["token"]["state"] == "ok"
    assert status_of(host, "emea")["token"]["state"] == "refresh-failed"


# ---- rejected callbacks --------------------------------------------------------------------------

def callback(host: Any, **params: str) -> requests.Response:
    return requests.get(f"{host.url}/api/auth/callback?{urlencode(params)}", timeout=60)


def test_unknown_state_is_rejected_and_changes_nothing(code_flow_host: Callable[..., Any], azurite: Any,
                                                        emulator: Any) -> None:
    host = code_flow_host()
    start_login(host)
    before = table_rows(azurite.connection_string)
    resp = callback(host, state="made-up", code="made-up")
    assert resp.status_code == 400 and "unknown or was already completed" in resp.text
    assert table_rows(azurite.connection_string) == before


def test_replayed_callback_is_rejected_and_changes_nothing(code_flow_host: Callable[..., Any], azurite: Any,
                                                           emulator: Any) -> None:
    host = code_flow_host()
    first = sign_in(host, emulator)
    assert first.page.status_code == 200
    before = table_rows(azurite.connection_string)
    replay = requests.get(first.callback_url, timeout=60)
    assert replay.status_code == 400 and "already completed" in replay.text
    assert table_rows(azurite.connection_string) == before


def test_concurrent_callbacks_with_one_state_redeem_it_once(code_flow_host: Callable[..., Any],
                                                            emulator: Any) -> None:
    host = code_flow_host()
    callback_url = authorize(emulator, start_login(host))
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(lambda _: requests.get(callback_url, timeout=60).status_code, range(4)))
    assert statuses == [200, 400, 400, 400]


def test_expired_sign_in_is_rejected_and_stores_no_tokens(code_flow_host: Callable[..., Any], azurite: Any,
                                                          emulator: Any) -> None:
    host = code_flow_host(AUTH_FLOW_TTL_SECONDS="1")
    callback_url = authorize(emulator, start_login(host))
    time.sleep(1.5)
    before = table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,))
    resp = requests.get(callback_url, timeout=60)
    assert resp.status_code == 400 and "expired" in resp.text
    assert table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,)) == before
    assert TABLE_TOKENS not in before and status_of(host)["token"]["state"] == "not-signed-in"


def test_denied_consent_is_rejected_naming_the_error_escaped(
        code_flow_host: Callable[..., Any], azurite: Any, emulator: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = code_flow_host()
    monkeypatch.setattr(emulator.entra, "deny_consent", "Admin said <b>no</b>")
    callback_url = authorize(emulator, start_login(host))
    before = table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,))
    resp = requests.get(callback_url, timeout=60)
    assert resp.status_code == 400
    assert "access_denied" in resp.text and "Admin said &lt;b&gt;no&lt;/b&gt;" in resp.text
    assert "<b>no</b>" not in resp.text
    assert table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,)) == before


def test_callback_without_code_is_rejected_and_changes_nothing(code_flow_host: Callable[..., Any],
                                                               azurite: Any) -> None:
    host = code_flow_host()
    state = parse_qs(urlsplit(start_login(host)).query)["state"][0]
    before = table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,))
    resp = callback(host, state=state)
    assert resp.status_code == 400 and "no authorization code" in resp.text
    assert table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,)) == before


def test_code_redeemed_with_a_wrong_verifier_is_rejected(code_flow_host: Callable[..., Any], azurite: Any,
                                                         emulator: Any) -> None:
    """A code obtained for another sign-in (another PKCE challenge) does not redeem this one."""
    host = code_flow_host()
    stolen = parse_qs(urlsplit(authorize(emulator, start_login(host))).query)["code"][0]
    state = parse_qs(urlsplit(start_login(host)).query)["state"][0]
    before = table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,))
    resp = callback(host, state=state, code=stolen)
    assert resp.status_code == 400 and "invalid_grant" in resp.text
    assert table_rows(azurite.connection_string, skip=(TABLE_AUTH_FLOWS,)) == before


# ---- login route -----------------------------------------------------------------------------------

def test_login_is_refused_for_client_credentials_and_unknown_connections(
        local_host: Callable[..., Any]) -> None:
    host = local_host(**QUIET_TIMERS)
    s2s = requests.get(f"{host.url}/api/connections/default/login", allow_redirects=False, timeout=30)
    assert s2s.status_code == 400 and "client credentials" in s2s.text
    unknown = requests.get(f"{host.url}/api/connections/nope/login", allow_redirects=False, timeout=30)
    assert unknown.status_code == 404 and "unknown connection" in unknown.text


def test_login_without_encryption_key_explains_the_missing_setting(
        code_flow_host: Callable[..., Any]) -> None:
    host = code_flow_host(TOKEN_ENCRYPTION_KEY="")
    resp = requests.get(f"{host.url}/api/connections/default/login", allow_redirects=False, timeout=30)
    assert resp.status_code == 500 and "TOKEN_ENCRYPTION_KEY is not set" in resp.text
    assert "TOKEN_ENCRYPTION_KEY is not set" in status_of(host)["token"]["error"]


def test_login_needs_the_master_key_and_the_callback_does_not(code_flow_host: Callable[..., Any],
                                                               emulator: Any) -> None:
    host = code_flow_host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="fn-key",
                          LOCAL_HOST_MASTER_KEY="master-key")
    login = f"{host.url}/api/connections/default/login"
    assert requests.get(login, allow_redirects=False, timeout=30).status_code == 401
    function_keyed = requests.get(login, params={"code": "fn-key"}, allow_redirects=False, timeout=30)
    assert function_keyed.status_code == 401  # a function key cannot re-bind the connection
    keyed = requests.get(login, params={"code": "master-key"}, allow_redirects=False, timeout=30)
    assert keyed.status_code == 302
    page = requests.get(authorize(emulator, keyed.headers["Location"]), timeout=60)
    assert page.status_code == 200


def test_entra_answers_by_form_post_and_the_old_get_callback_still_works(
        code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host()
    page = requests.get(start_login(host), verify=emulator.ca_bundle, allow_redirects=False, timeout=30)
    assert page.status_code == 200 and 'method="POST"' in page.text and "/api/auth/callback" in page.text
    assert post_callback(authorize(emulator, start_login(host))).status_code == 200
    assert requests.get(authorize(emulator, start_login(host)), timeout=60).status_code == 200
