"""No secret to rotate: the default connection signs in with a client assertion (a token of the
Function App's managed identity, trusted by the app registration as a federated credential)."""
from __future__ import annotations

import pytest
import requests

from devtools.emulator.config import IDENTITY_HEADER


@pytest.fixture
def managed_identity(emulator, monkeypatch):
    """The local Function App's managed identity: App Service's identity endpoint, the emulator's."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{emulator.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)


def test_the_default_connection_signs_in_with_a_client_assertion_instead_of_a_secret(
        managed_identity, local_host, emulator):
    host = local_host(BC_GRANT_TYPE="client_credentials", BC_CLIENT_CREDENTIAL="managed-identity",
                      BC_CLIENT_SECRET="")
    summary = requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60)
    assert summary.status_code == 200, summary.text
    status = requests.get(f"{host.url}/api/status", timeout=30).json()
    assert status["connections"][0]["token"]["state"] == "ok"
    assert any(r.principal for r in emulator.requests)


def test_an_assertion_the_app_does_not_trust_is_credentials_refused_with_the_fix(
        managed_identity, local_host, emulator, monkeypatch):
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")  # the identity endpoint refuses
    host = local_host(BC_GRANT_TYPE="client_credentials", BC_CLIENT_CREDENTIAL="managed-identity",
                      BC_CLIENT_SECRET="")
    refused = requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["state"] == "credentials-refused"
    assert "federated credential" in error["fix"] and "api://AzureADTokenExchange" in error["fix"]
    token = requests.get(f"{host.url}/api/status", timeout=30).json()["connections"][0]["token"]
    assert token["state"] == "credentials-refused" and "managed identity" in token["error"]


def test_a_refused_client_secret_is_credentials_refused_and_the_route_carries_the_fix(local_host):
    host = local_host(BC_GRANT_TYPE="client_credentials", BC_CLIENT_SECRET="wrong-secret")
    refused = requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60)
    assert refused.status_code == 409
    assert refused.json()["error"]["state"] == "credentials-refused"
    assert "BC_CLIENT_SECRET" in refused.json()["error"]["fix"]


def test_a_connection_switched_from_client_credentials_to_sign_in_is_not_signed_in(local_host):
    host = local_host(BC_GRANT_TYPE="client_credentials")
    assert requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60).status_code == 200
    host.stop()
    host = local_host(BC_GRANT_TYPE="authorization_code")  # same storage: the old token cache is there
    token = requests.get(f"{host.url}/api/status", timeout=30).json()["connections"][0]["token"]
    assert token["state"] == "not-signed-in" and token["fix"].startswith("sign in at ")
    refused = requests.post(f"{host.url}/api/connections/default/subscriptions", timeout=60)
    assert refused.status_code == 409 and refused.json()["error"]["state"] == "not-signed-in"
    assert "/api/connections/default/login" in refused.json()["error"]["fix"]
