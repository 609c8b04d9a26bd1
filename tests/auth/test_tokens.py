"""Access tokens against the Entra/BC emulator: client credentials, refresh after expiry, a refused
refresh token, and two instances sharing one encrypted token cache."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from connector.auth.tokens import TokenService
from connector.bc.errors import TokenUnavailable
from connector.runtime import get_runtime
from connector.settings import TABLE_TOKENS
from tests.auth.browser import PAST_TOKEN_LIFETIME, TokenRequests, sign_in, stored_cache, table_rows
from tests.conftest import CLIENT_ID


def refresh_tokens(cache: dict[str, Any]) -> set[str]:
    return {entry["secret"] for entry in cache["RefreshToken"].values()}


def bc_statuses(emulator: Any) -> list[int | None]:
    return [r.status for r in emulator.requests]


# ---- client credentials ----------------------------------------------------------------------------

def test_client_credentials_token_is_reused_until_bc_refuses_it(
        runtime: Any, emulator: Any, token_requests: TokenRequests) -> None:
    bc = runtime.bc()
    bc.get("companies")
    bc.get("companies")
    assert token_requests.count("client_credentials") == 1
    emulator.clear_requests()
    emulator.clock.advance(PAST_TOKEN_LIFETIME)
    assert len(bc.get("companies")["value"]) == 2
    assert bc_statuses(emulator) == [401, 200]
    assert token_requests.count("client_credentials") == 2
    assert token_requests.count("refresh_token") == 0  # client credentials have no refresh token


def test_client_credentials_cache_is_shared_encrypted_between_instances(
        runtime: Any, azurite: Any, token_requests: TokenRequests) -> None:
    token = runtime.tokens.access_token("default")
    raw = str(table_rows(azurite.connection_string)[TABLE_TOKENS])
    assert token not in raw and "AccessToken" not in raw
    other_instance = TokenService(runtime.settings, runtime.storage)
    assert other_instance.access_token("default") == token
    assert token_requests.count("client_credentials") == 1


def test_client_credentials_without_encryption_key_keep_tokens_in_memory(
        connector_env: Callable[..., Any], azurite: Any, emulator: Any) -> None:
    connector_env(TOKEN_ENCRYPTION_KEY="")
    assert len(get_runtime().bc().get("companies")["value"]) == 2
    assert TABLE_TOKENS not in table_rows(azurite.connection_string)


# ---- authorization code ------------------------------------------------------------------------------

def test_code_flow_connection_not_signed_in_makes_no_bc_call(
        connector_env: Callable[..., Any], emulator: Any) -> None:
    connector_env(BC_GRANT_TYPE="authorization_code")
    emulator.clear_requests()
    with pytest.raises(TokenUnavailable) as caught:
        get_runtime().bc().get("companies")
    assert caught.value.state == "not-signed-in"
    assert emulator.requests == []


def test_expired_access_token_is_refreshed_silently_and_saved_for_other_instances(
        code_flow_host: Callable[..., Any], emulator: Any, token_requests: TokenRequests) -> None:
    assert sign_in(code_flow_host(), emulator).page.status_code == 200
    runtime = get_runtime()
    before = stored_cache(runtime.storage)
    assert before is not None and before["RefreshToken"]
    runtime.bc().get("companies")
    assert token_requests.count("refresh_token") == 0

    emulator.clear_requests()
    emulator.clock.advance(PAST_TOKEN_LIFETIME)
    assert len(runtime.bc().get("companies")["value"]) == 2
    assert bc_statuses(emulator) == [401, 200]
    assert token_requests.count("refresh_token") == 1
    after = stored_cache(runtime.storage)
    assert after is not None
    assert refresh_tokens(after).isdisjoint(refresh_tokens(before))  # the rotated one was saved

    runtime.bc().get("companies")
    other_instance = TokenService(runtime.settings, runtime.storage)
    other_instance.access_token("default")
    assert token_requests.count("refresh_token") == 1
    assert bc_statuses(emulator) == [401, 200, 200]


def test_instance_that_loses_the_save_race_uses_the_winners_tokens(
        code_flow_host: Callable[..., Any], emulator: Any, token_requests: TokenRequests) -> None:
    assert sign_in(code_flow_host(), emulator).page.status_code == 200
    runtime = get_runtime()
    first = TokenService(runtime.settings, runtime.storage)
    second = TokenService(runtime.settings, runtime.storage)
    assert first.access_token("default") == second.access_token("default")
    winner = first.access_token("default", force_refresh=True)
    saved = stored_cache(runtime.storage)
    assert second.access_token("default", force_refresh=True) == winner
    assert stored_cache(runtime.storage) == saved  # the loser did not overwrite the newer cache
    assert token_requests.count("refresh_token") == 2


def test_refused_refresh_token_stops_bc_calls_until_signed_in_again(
        code_flow_host: Callable[..., Any], emulator: Any, token_requests: TokenRequests) -> None:
    host = code_flow_host()
    assert sign_in(host, emulator).page.status_code == 200
    runtime = get_runtime()
    runtime.bc().get("companies")
    emulator.entra.revoke_refresh_tokens(client_id=CLIENT_ID)
    emulator.clock.advance(PAST_TOKEN_LIFETIME)

    with pytest.raises(TokenUnavailable) as caught:
        runtime.bc().get("companies")
    assert caught.value.state == "refresh-failed"
    assert stored_cache(runtime.storage) is None
    emulator.clear_requests()
    grants = len(token_requests.grants)
    for _ in range(3):
        with pytest.raises(TokenUnavailable) as again:
            runtime.bc().get("companies")
        assert again.value.state == "refresh-failed"
    assert emulator.requests == [] and len(token_requests.grants) == grants

    status = requests.get(f"{host.url}/api/status", timeout=30).json()
    token = status["connections"][0]["token"]
    assert token["state"] == "refresh-failed"
    assert token["login_url"].startswith(f"{host.url}/api/auth/login?ticket=")  # a one-time link
    assert token["error"].startswith("invalid_grant")

    assert sign_in(host, emulator).page.status_code == 200
    assert len(runtime.bc().get("companies")["value"]) == 2
    status = requests.get(f"{host.url}/api/status", timeout=30).json()
    assert status["connections"][0]["token"]["state"] == "ok"


def test_instances_refreshing_at_once_all_get_tokens_and_leave_a_usable_cache(
        code_flow_host: Callable[..., Any], emulator: Any) -> None:
    assert sign_in(code_flow_host(), emulator).page.status_code == 200
    runtime = get_runtime()
    instances = [TokenService(runtime.settings, runtime.storage) for _ in range(3)]
    for instance in instances:
        instance.access_token("default")
    emulator.clock.advance(PAST_TOKEN_LIFETIME)
    with ThreadPoolExecutor(max_workers=9) as pool:
        tokens = list(pool.map(lambda n: instances[n % 3].access_token("default", force_refresh=True),
                               range(9)))
    assert all(tokens)
    newcomer = TokenService(runtime.settings, runtime.storage)
    emulator.clear_requests()
    assert len(runtime.bc().get("companies")["value"]) == 2
    assert newcomer.access_token("default") in tokens
