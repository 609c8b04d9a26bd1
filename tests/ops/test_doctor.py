"""`python -m connector doctor`: passes against the emulator through the local host, and fails with a
named fix for each deliberate misconfiguration."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from connector.__main__ import main
from connector.ops.doctor import clock_check, emulator_lookalikes, token_claims
from connector.settings import load_settings
from devtools.azurite import free_port
from tests.conftest import connector_values


def doctor(capsys: Any, *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def failed_lines(out: str) -> list[str]:
    lines = out.splitlines()
    return [f"{line} / {lines[i + 1].strip()}" for i, line in enumerate(lines)
            if line.startswith("[FAIL]") and i + 1 < len(lines)]


def test_doctor_passes_against_the_emulator_with_a_real_handshake(local_host: Any, emulator: Any,
                                                                  capsys: Any) -> None:
    local_host()
    code, out = doctor(capsys)
    assert code == 0, out
    assert "all checks passed" in out and "[FAIL]" not in out
    assert "handshake answered; test subscription deleted" in out
    assert "app roles API.ReadWrite.All" in out
    assert not [s for s in emulator.bc.webhooks.subscriptions.values() if "doctor" in s.client_state]


MISCONFIGURED: dict[str, tuple[dict[str, str], str, str]] = {
    # name: (settings, the failing check, words of its fix)
    "wrong secret": ({"BC_CLIENT_SECRET": "not-the-secret"}, "token", "BC_CLIENT_SECRET"),
    "no such environment": ({"BC_ENVIRONMENT": "nosuchenv"}, "companies", "BC_ENVIRONMENT"),
    "no such company": ({"BC_COMPANY": "Nobody Ltd."}, "companies", "set BC_COMPANY"),
    "unreachable notification URL": ({"PUBLIC_BASE_URL": "http://127.0.0.1:{dead}"}, "notification URL",
                                     "PUBLIC_BASE_URL"),
    "emulator settings against Microsoft": ({"BC_API_HOST": "https://api.businesscentral.dynamics.com",
                                             "ENTRA_AUTHORITY_HOST": "https://login.microsoftonline.com"},
                                            "settings", "set the real tenant"),
    "wrong secret of an extra principal": (
        {"BC_EXTRA_CLIENT_IDS": "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60", "BC_EXTRA_CLIENT_SECRETS": "wrong"},
        "token of 5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60", "BC_EXTRA_CLIENT_SECRETS"),
    "bad encryption key": ({"TOKEN_ENCRYPTION_KEY": "not-a-fernet-key"}, "TOKEN_ENCRYPTION_KEY",
                           "Fernet.generate_key"),
    "unresolved Key Vault reference": (
        {"BC_CLIENT_SECRET": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/bc)"},
        "Key Vault", "Key Vault Secrets User"),
}


@pytest.mark.parametrize("name", MISCONFIGURED)
def test_doctor_names_the_fix_of_each_misconfiguration(name: str, connector_env: Callable[..., Any],
                                                       capsys: Any) -> None:
    overrides, check, fix = MISCONFIGURED[name]
    connector_env(**{k: v.format(dead=free_port()) for k, v in overrides.items()})
    code, out = doctor(capsys)
    assert code == 1, out
    assert any(f"{check} — " in line and fix in line for line in failed_lines(out)), out


def test_doctor_names_missing_webhook_permission(connector_env: Callable[..., Any], emulator: Any,
                                                 capsys: Any) -> None:
    connector_env()
    emulator.faults.add_rule(action="error_before", method="GET", path_regex="/subscriptions$",
                             status=403, count=None)
    try:
        code, out = doctor(capsys)
    finally:
        emulator.faults.clear()
    assert code == 1
    assert any("webhook permission" in line and "D365 AUTOMATION" in line for line in failed_lines(out)), out


def test_doctor_names_clock_skew(azurite: Any, make_emulator: Any, monkeypatch: Any, capsys: Any) -> None:
    from connector.runtime import reset_runtime

    emu = make_emulator()
    emu.clock.advance(600)  # BC's clock ten minutes ahead of ours
    for key, value in connector_values(azurite, emu).items():
        monkeypatch.setenv(key, value)
    reset_runtime()
    try:
        code, out = doctor(capsys, "--connection", "default")
    finally:
        reset_runtime()
    assert code == 1
    assert any("clock — " in line and "NTP" in line for line in failed_lines(out)), out


def test_a_missing_setting_is_one_failed_check_not_a_traceback(connector_env: Any, capsys: Any,
                                                               monkeypatch: Any) -> None:
    connector_env()
    monkeypatch.delenv("BC_TENANT")
    code, out = doctor(capsys)
    assert code == 1 and "BC_TENANT" in out and "fix:" in out


def test_pure_parts() -> None:
    env = {"BC_TENANT": "contoso.com", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "emulator-secret"}
    settings = load_settings(env)
    assert emulator_lookalikes(settings.connection("default"), settings) == [
        "BC_CLIENT_SECRET is the emulator's secret"]
    local = load_settings({**env, "BC_API_HOST": "https://127.0.0.1:8443",
                           "ENTRA_AUTHORITY_HOST": "https://127.0.0.1:8443"})
    assert emulator_lookalikes(local.connection("default"), local) == []
    assert token_claims("x.eyJhdWQiOiJhIn0.y") == {"aud": "a"}
    assert clock_check("Sat, 05 Dec 2026 16:00:00 GMT", __import__("datetime").datetime(
        2026, 12, 5, 16, 0, 30, tzinfo=__import__("datetime").UTC)).ok
    assert os.environ is not None
