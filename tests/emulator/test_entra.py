"""Entra ID emulator: msal 1.39 (unmodified) against it over https, token checks, errors."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests

from devtools.emulator import ClientApp, Emulator, EmulatorConfig
from devtools.emulator.config import BC_RESOURCE
from devtools.emulator.entra import InvalidToken

TENANT = "lmints.io"
TENANT_ID = "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"
CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
SECRET = "emulator-secret"
SCOPES = [f"{BC_RESOURCE}/.default"]
REDIRECT = "http://localhost:7071/api/oauth/callback"
# These tests drive the emulator's query response mode on purpose (the connector uses form_post).
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    config = EmulatorConfig(clients=[
        ClientApp(CLIENT_ID, SECRET, TENANT),
        ClientApp("0d6a1c9e-0000-4000-8000-000000000002", "other-secret", TENANT_ID,
                  redirect_uris=("https://app.example/callback",)),
    ])
    with Emulator(config, bc_factory=None) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _reset(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # requests lets these variables override Session.verify (msal's `verify=`); this machine sets them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    yield
    emu.entra.deny_consent = None
    emu.entra.signin_user = emu.config.signin_user


def make_app(emu: Emulator, secret: str = SECRET, tenant: str = TENANT) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID, client_credential=secret, authority=emu.authority(tenant),
        instance_discovery=False, token_cache=msal.SerializableTokenCache(), verify=emu.ca_bundle,
    )


def authorize(emu: Emulator, auth_uri: str) -> dict[str, str]:
    """The browser step: GET the authorize URL, don't follow the redirect, parse its query."""
    resp = requests.get(auth_uri, allow_redirects=False, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


def sign_in(emu: Emulator, app: msal.ConfidentialClientApplication) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT)
    return app.acquire_token_by_auth_code_flow(flow, authorize(emu, flow["auth_uri"]))


def token_post(emu: Emulator, form: dict[str, str], tenant: str = TENANT) -> requests.Response:
    return requests.post(f"{emu.authority(tenant)}/oauth2/v2.0/token", data=form,
                         verify=emu.ca_bundle, timeout=10)


def raw_code(emu: Emulator, verifier: str = "v" * 43, **extra: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": " ".join([*SCOPES, "openid", "offline_access"]), "state": "s1",
              "code_challenge": challenge.decode(), "code_challenge_method": "S256", **extra}
    resp = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/authorize", params=params,
                        allow_redirects=False, verify=emu.ca_bundle, timeout=10)
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


def code_form(code: str, verifier: str = "v" * 43, **extra: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": SECRET,
            "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "scope": " ".join(SCOPES), **extra}


def aadsts(resp: requests.Response) -> int:
    return resp.json()["error_codes"][0]


@pytest.mark.parametrize("tenant", [TENANT, TENANT_ID])
@pytest.mark.parametrize("prefix", ["/v2.0", ""])
def test_discovery_document_points_at_the_emulator_over_https(emu: Emulator, tenant: str,
                                                             prefix: str) -> None:
    doc = requests.get(f"{emu.url}/{tenant}{prefix}/.well-known/openid-configuration",
                       verify=emu.ca_bundle, timeout=10).json()
    assert doc["issuer"] == f"{emu.url}/{TENANT_ID}/v2.0"
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert doc[key].startswith(f"{emu.url}/{TENANT_ID}/")
    keys = requests.get(doc["jwks_uri"], verify=emu.ca_bundle, timeout=10).json()["keys"]
    assert [k["kid"] for k in keys] == [emu.entra.kid]


def test_unknown_tenant_is_rejected_like_entra(emu: Emulator) -> None:
    resp = requests.get(f"{emu.url}/nosuch.example/v2.0/.well-known/openid-configuration",
                        verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error_description"].startswith("AADSTS90002:")
    with pytest.raises(ValueError):
        make_app(emu, tenant="nosuch.example")


def test_tls_is_required_to_trust_the_emulator_ca(emu: Emulator) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{emu.url}/{TENANT}/discovery/v2.0/keys", verify=True, timeout=10)


def test_msal_code_flow_returns_tokens_bc_accepts(emu: Emulator) -> None:
    app = make_app(emu)
    result = sign_in(emu, app)
    assert "access_token" in result, result
    assert result["refresh_token"] and result["token_type"] == "Bearer"
    # msal checked that the id_token carries the nonce hash it sent to /authorize.
    id_claims = result["id_token_claims"]
    assert id_claims["nonce"] and id_claims["aud"] == CLIENT_ID
    assert id_claims["iss"] == f"{emu.url}/{TENANT_ID}/v2.0"
    assert id_claims["tid"] == TENANT_ID and id_claims["preferred_username"] == "admin@lmints.io"
    header = jwt.get_unverified_header(result["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == emu.entra.kid
    claims = emu.entra.validate_token(result["access_token"])
    assert claims["aud"] == BC_RESOURCE and claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/"
    assert claims["scp"] == "Financials.ReadWrite.All" and claims["appid"] == CLIENT_ID
    assert claims["oid"] == id_claims["oid"] and claims["exp"] - claims["iat"] == 3600
    account = app.get_accounts()[0]
    assert account["username"] == "admin@lmints.io"
    assert account["home_account_id"] == f"{claims['oid']}.{TENANT_ID}"  # from client_info


def test_access_token_expires_on_the_emulator_clock(emu: Emulator) -> None:
    token = sign_in(emu, make_app(emu))["access_token"]
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    emu.clock.freeze()  # exact to the second, however slow the machine
    real = emu.clock.now()
    try:
        emu.clock.set(datetime.fromtimestamp(expires - 1, UTC))
        emu.entra.validate_token(token)
        emu.clock.advance(1)
        with pytest.raises(InvalidToken, match="expired"):
            emu.entra.validate_token(token)
    finally:
        emu.clock.set(real)
        emu.clock.thaw()


def test_refresh_rotates_the_refresh_token_after_the_clock_moves(emu: Emulator) -> None:
    app = make_app(emu)
    first = sign_in(emu, app)
    emu.clock.advance(7200)
    try:
        result = app.acquire_token_silent(SCOPES, app.get_accounts()[0], force_refresh=True)
        assert result["token_source"] == "identity_provider"
        assert result["refresh_token"] != first["refresh_token"]
        emu.entra.validate_token(result["access_token"])  # valid at the advanced time
        with pytest.raises(InvalidToken):
            emu.entra.validate_token(first["access_token"])
        # Like Entra, the previous refresh token stays usable until it is revoked.
        again = app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)
        assert "access_token" in again, again
    finally:
        emu.clock.advance(-7200)


def test_a_restored_cache_can_refresh(emu: Emulator) -> None:
    app = make_app(emu)
    sign_in(emu, app)
    cache = msal.SerializableTokenCache()
    cache.deserialize(app.token_cache.serialize())
    restored = msal.ConfidentialClientApplication(
        CLIENT_ID, client_credential=SECRET, authority=emu.authority(TENANT),
        instance_discovery=False, token_cache=cache, verify=emu.ca_bundle,
    )
    result = restored.acquire_token_silent(SCOPES, restored.get_accounts()[0], force_refresh=True)
    assert result and "access_token" in result, result


@pytest.mark.parametrize("via_admin", [False, True])
def test_revoked_refresh_tokens_get_invalid_grant(emu: Emulator, via_admin: bool) -> None:
    app = make_app(emu)
    sign_in(emu, app)
    if via_admin:
        resp = requests.post(f"{emu.url}/_emulator/entra/revoke", json={"user": "admin@lmints.io"},
                             verify=emu.ca_bundle, timeout=10)
        assert resp.json()["revoked"] >= 1
    else:
        assert emu.entra.revoke_refresh_tokens(client_id=CLIENT_ID) >= 1
    result = app.acquire_token_silent_with_error(SCOPES, app.get_accounts()[0], force_refresh=True)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50173] and "AADSTS50173" in result["error_description"]


def test_refresh_token_expires_after_inactivity(emu: Emulator) -> None:
    refresh_token = sign_in(emu, make_app(emu))["refresh_token"]
    emu.clock.advance(emu.config.refresh_token_lifetime)
    try:
        resp = token_post(emu, {"grant_type": "refresh_token", "client_id": CLIENT_ID,
                                "client_secret": SECRET, "refresh_token": refresh_token,
                                "scope": " ".join(SCOPES)})
    finally:
        emu.clock.advance(-emu.config.refresh_token_lifetime)
    assert resp.status_code == 400 and aadsts(resp) == 700082


def test_client_credentials_gives_an_app_token_without_refresh_token(emu: Emulator) -> None:
    result = make_app(emu).acquire_token_for_client(SCOPES)
    assert "access_token" in result, result
    assert "refresh_token" not in result and "id_token" not in result
    claims = emu.entra.validate_token(result["access_token"])
    assert claims["roles"] == ["API.ReadWrite.All"] and "scp" not in claims
    assert claims["appid"] == CLIENT_ID and claims["idtyp"] == "app"


def test_client_credentials_only_takes_a_default_scope(emu: Emulator) -> None:
    resp = token_post(emu, {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                            "client_secret": SECRET, "scope": f"{BC_RESOURCE}/.default openid"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"


def test_wrong_secret_is_invalid_client_401(emu: Emulator) -> None:
    result = make_app(emu, secret="wrong").acquire_token_for_client(SCOPES)
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    resp = token_post(emu, {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                            "client_secret": "wrong", "scope": SCOPES[0]})
    assert resp.status_code == 401
    body = resp.json()
    assert {"error", "error_description", "error_codes", "timestamp", "trace_id",
            "correlation_id"} <= set(body)


def test_secret_in_basic_auth_is_accepted(emu: Emulator) -> None:
    resp = requests.post(f"{emu.authority(TENANT)}/oauth2/v2.0/token", auth=(CLIENT_ID, SECRET),
                         data={"grant_type": "client_credentials", "scope": SCOPES[0]},
                         verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 200 and resp.json()["expires_in"] == 3600


def test_code_is_single_use(emu: Emulator) -> None:
    code = raw_code(emu)
    first = token_post(emu, code_form(code))
    assert first.status_code == 200, first.text
    replay = token_post(emu, code_form(code))
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert aadsts(replay) == 54005


def test_code_expires(emu: Emulator) -> None:
    code = raw_code(emu)
    emu.clock.advance(emu.config.auth_code_lifetime)
    try:
        resp = token_post(emu, code_form(code))
    finally:
        emu.clock.advance(-emu.config.auth_code_lifetime)
    assert resp.status_code == 400 and aadsts(resp) == 70008


def test_pkce_verifier_must_match_the_challenge(emu: Emulator) -> None:
    resp = token_post(emu, code_form(raw_code(emu), verifier="w" * 43))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert aadsts(resp) == 501481


def test_redirect_uri_must_match_the_authorize_request(emu: Emulator) -> None:
    resp = token_post(emu, code_form(raw_code(emu), redirect_uri="http://localhost:9999/other"))
    assert resp.status_code == 400 and aadsts(resp) == 500112


def test_id_token_carries_the_authorize_nonce(emu: Emulator) -> None:
    body = token_post(emu, code_form(raw_code(emu, nonce="n-123"), client_info="1")).json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "n-123" and claims["aud"] == CLIENT_ID
    assert {"iss", "sub", "oid", "tid", "preferred_username"} <= set(claims)
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": claims["oid"], "utid": TENANT_ID}


def test_client_info_only_when_asked(emu: Emulator) -> None:
    without = token_post(emu, code_form(raw_code(emu))).json()
    with_info = token_post(emu, code_form(raw_code(emu), client_info="1")).json()
    assert "client_info" not in without and "client_info" in with_info


def test_no_refresh_token_without_offline_access(emu: Emulator) -> None:
    code = raw_code(emu, scope=f"{SCOPES[0]} openid")
    body = token_post(emu, code_form(code)).json()
    assert "access_token" in body and "refresh_token" not in body


def test_login_hint_picks_the_user(emu: Emulator) -> None:
    body = token_post(emu, code_form(raw_code(emu, login_hint="buyer@lmints.io"))).json()
    assert emu.entra.validate_token(body["access_token"])["upn"] == "buyer@lmints.io"


def test_unknown_client_gets_an_error_page_not_a_redirect(emu: Emulator) -> None:
    resp = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/authorize", allow_redirects=False,
                        params={"client_id": "00000000-0000-0000-0000-000000000000",
                                "redirect_uri": REDIRECT, "response_type": "code"},
                        verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "AADSTS700016" in resp.text


@pytest.mark.parametrize("client_id, redirect_uri, ok", [
    (CLIENT_ID, "https://anything.example/cb", True),
    (CLIENT_ID, "http://127.0.0.1:5000/cb", True),
    (CLIENT_ID, "http://evil.example/cb", False),
    ("0d6a1c9e-0000-4000-8000-000000000002", "https://app.example/callback", True),
    ("0d6a1c9e-0000-4000-8000-000000000002", "https://app.example/other", False),
])
def test_redirect_uri_is_validated(emu: Emulator, client_id: str, redirect_uri: str, ok: bool) -> None:
    resp = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/authorize", allow_redirects=False,
                        params={"client_id": client_id, "redirect_uri": redirect_uri,
                                "response_type": "code", "scope": SCOPES[0], "state": "x"},
                        verify=emu.ca_bundle, timeout=10)
    if ok:
        assert resp.status_code == 302 and resp.headers["Location"].startswith(redirect_uri)
    else:
        assert resp.status_code == 400 and "AADSTS50011" in resp.text


@pytest.mark.parametrize("params, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "https://graph.microsoft.com/.default"}, "invalid_scope"),
    ({"code_challenge": "abc", "code_challenge_method": "S512"}, "invalid_request"),
])
def test_bad_authorize_requests_redirect_with_an_error(emu: Emulator, params: dict[str, str],
                                                       error: str) -> None:
    query = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code",
             "scope": SCOPES[0], "state": "st", **params}
    resp = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/authorize", params=query,
                        allow_redirects=False, verify=emu.ca_bundle, timeout=10)
    got = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert got["error"] == [error] and got["state"] == ["st"] and "code" not in got


def test_denied_consent_redirects_with_access_denied(emu: Emulator) -> None:
    app = make_app(emu)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT)
    emu.entra.deny_consent = "The user declined."
    reply = authorize(emu, flow["auth_uri"])
    assert reply["error"] == "access_denied" and reply["state"] == flow["state"]
    assert "The user declined." in reply["error_description"]
    assert app.acquire_token_by_auth_code_flow(flow, reply)["error"] == "access_denied"


def test_signin_user_can_be_switched_through_admin(emu: Emulator) -> None:
    resp = requests.post(f"{emu.url}/_emulator/entra/signin", json={"user": "ops@lmints.io"},
                         verify=emu.ca_bundle, timeout=10)
    assert resp.json() == {"user": "ops@lmints.io", "deny": None}
    assert sign_in(emu, make_app(emu))["id_token_claims"]["preferred_username"] == "ops@lmints.io"


def test_form_post_response_mode_renders_an_auto_submit_form(emu: Emulator) -> None:
    resp = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/authorize",
                        params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT,
                                "response_type": "code", "scope": SCOPES[0], "state": "fp",
                                "response_mode": "form_post"},
                        allow_redirects=False, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 200
    assert f'action="{REDIRECT}"' in resp.text and 'name="code"' in resp.text
    assert 'name="state" value="fp"' in resp.text


def test_token_endpoint_error_shapes(emu: Emulator) -> None:
    unsupported = token_post(emu, {"grant_type": "password", "client_id": CLIENT_ID,
                                   "client_secret": SECRET})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    bad_code = token_post(emu, code_form("not-a-code"))
    assert bad_code.json()["error"] == "invalid_grant" and aadsts(bad_code) == 70000
    other_tenant_client = token_post(emu, {"grant_type": "client_credentials",
                                           "client_id": "nope", "client_secret": "x"})
    assert other_tenant_client.json()["error"] == "unauthorized_client"
    get = requests.get(f"{emu.authority(TENANT)}/oauth2/v2.0/token", verify=emu.ca_bundle,
                       timeout=10)
    assert get.status_code == 400


def _forge(emu: Emulator, **overrides: Any) -> str:
    claims = jwt.decode(emu.entra.issue_access_token(CLIENT_ID, TENANT), options={"verify_signature": False})
    claims.update(overrides)
    return emu.entra._sign(claims)


def test_validate_token_rejects_wrong_audience_tenant_and_key(emu: Emulator) -> None:
    with pytest.raises(InvalidToken, match="audience"):
        emu.entra.validate_token(_forge(emu, aud="https://graph.microsoft.com"))
    with pytest.raises(InvalidToken, match="tenant"):
        emu.entra.validate_token(_forge(emu, tid="11111111-1111-1111-1111-111111111111"))
    now = int(emu.clock.timestamp())
    with pytest.raises(InvalidToken, match="not yet valid"):
        emu.entra.validate_token(_forge(emu, nbf=now + 60))
    other = Emulator(bc_factory=None)  # another signing key
    with pytest.raises(InvalidToken):
        emu.entra.validate_token(other.entra.issue_access_token(CLIENT_ID, TENANT))
    with pytest.raises(InvalidToken, match="malformed"):
        emu.entra.validate_token("not.a.jwt")
