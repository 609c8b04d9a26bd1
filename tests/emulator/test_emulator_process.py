"""The emulator in a process of its own (`devtools/emulator/process.py`, what the orders bench runs
BC in): it serves the same API over HTTPS, and the parent reads and clears its request log."""
from __future__ import annotations

import os

import msal
import pytest
import requests

from devtools.emulator import EmulatorConfig
from devtools.emulator.config import ClientApp
from devtools.emulator.process import EmulatorProcess

TENANT = "lmints.io"
CLIENT = ClientApp("0f9c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "process-secret", TENANT)


def test_the_emulator_process_serves_bc_and_hands_its_request_log_to_the_parent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # msal's session would trust only it
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with EmulatorProcess(EmulatorConfig(clients=[CLIENT])) as emu:
        assert emu.pid != os.getpid()
        app = msal.ConfidentialClientApplication(
            CLIENT.client_id, client_credential=CLIENT.client_secret,
            authority=f"{emu.url}/{TENANT}", instance_discovery=False, verify=emu.ca_bundle)
        token = app.acquire_token_for_client(["https://api.businesscentral.dynamics.com/.default"])
        assert "access_token" in token, token
        resp = requests.get(f"{emu.url}/v2.0/{TENANT}/production/api/v2.0/companies", timeout=30,
                            headers={"Authorization": f"Bearer {token['access_token']}"},
                            verify=emu.ca_bundle)
        assert resp.status_code == 200 and resp.json()["value"]
        [logged] = [r for r in emu.requests if r.path.endswith("/companies")]
        assert (logged.method, logged.status) == ("GET", 200) and logged.answered >= logged.arrived > 0
        emu.clear_requests()
        assert emu.requests == []
    assert not emu._process.is_alive()  # stopped with the block
