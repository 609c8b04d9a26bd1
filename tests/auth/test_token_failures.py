"""Entra's refusals remembered per connection (issue 11 point 2): a wrong client secret costs at most
one token request a minute (back-off doubling to 8 minutes), every caller fails fast with the reason
and the fix, /api/status shows both, and a changed secret shows on the next status call or renewal
run instead of when the cached token expires. Time is the TokenService's injected clock."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from connector.auth.tokens import TokenFailure, TokenService, next_failure
from connector.bc.errors import TokenUnavailable
from connector.ops.blueprint import status
from connector.runtime import get_runtime
from connector.settings import TABLE_CONNECTIONS, load_settings
from connector.storage import read_entity
from connector.webhooks import subscriptions
from tests.auth.browser import TokenRequests
from tests.conftest import CLIENT_SECRET

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WRONG = {"BC_CLIENT_SECRET": "not-the-secret"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def status_of(connection: str = "default") -> dict[str, Any]:
    response = status(func.HttpRequest(method="GET", url="http://127.0.0.1/api/status", body=b""))
    report = json.loads(response.get_body())
    return next(c for c in report["connections"] if c["name"] == connection)["token"]


def test_the_back_off_doubles_from_one_minute_to_eight() -> None:
    failure: TokenFailure | None = None
    waits = []
    for _ in range(6):
        failure = next_failure(failure, "invalid_client", "fix", START)
        waits.append((failure.retry_at - START).total_seconds())
    assert waits == [60, 120, 240, 480, 480, 480]


def test_a_wrong_secret_asks_entra_at_most_once_a_minute_over_five_minutes_of_traffic(
        connector_env: Callable[..., Any], token_requests: TokenRequests) -> None:
    connector_env(**WRONG)
    runtime = get_runtime()
    clock = Clock()
    runtime.tokens = TokenService(runtime.settings, runtime.storage, clock=clock)
    bc = runtime.bc()
    asked_at, messages = [], set()
    for second in range(0, 5 * 60, 2):  # every 2 s: a BC call, a forced refresh and a verify
        clock.now = START + timedelta(seconds=second)
        before = token_requests.count("client_credentials")
        for call in (lambda: bc.get("companies"),
                     lambda: runtime.tokens.access_token("default", force_refresh=True),
                     lambda: runtime.tokens.verify("default")):
            with pytest.raises(TokenUnavailable) as caught:
                call()
            messages.add(str(caught.value))
        asked_at += [second] * (token_requests.count("client_credentials") - before)
    assert asked_at == [0, 60, 180]  # back-off 1, 2, then 4 minutes
    assert all(sum(a <= b < a + 60 for b in asked_at) == 1 for a in asked_at)
    assert all("invalid_client" in m and "BC_CLIENT_SECRET" in m for m in messages)
    token = status_of()
    assert token["state"] == "credentials-refused" and token["error"].startswith("invalid_client")
    assert "BC_CLIENT_SECRET" in token["fix"]
    assert token["retry_at"] == (START + timedelta(seconds=180 + 240)).isoformat()


def test_a_changed_secret_shows_on_the_next_status_call(
        connector_env: Callable[..., Any], token_requests: TokenRequests) -> None:
    connector_env()
    get_runtime().bc().get("companies")  # a token now cached (encrypted, shared) for an hour
    assert status_of()["state"] == "ok"
    connector_env(**WRONG)  # the secret changed; the cached token is still valid
    token = status_of()
    assert token["state"] == "credentials-refused" and "BC_CLIENT_SECRET" in token["fix"]


def test_a_changed_secret_shows_on_the_next_renewal_run(
        connector_env: Callable[..., Any], token_requests: TokenRequests) -> None:
    connector_env()
    get_runtime().bc().get("companies")
    connector_env(**WRONG)
    with pytest.raises(TokenUnavailable):
        subscriptions.reconcile(get_runtime(), "default")
    connector_env(**WRONG)
    assert status_of()["state"] == "credentials-refused"


def test_status_asks_entra_at_most_once_a_minute(
        connector_env: Callable[..., Any], token_requests: TokenRequests) -> None:
    connector_env()
    for _ in range(5):
        assert status_of()["state"] == "ok"
    assert token_requests.count("client_credentials") == 1


def test_instances_share_a_refusal_so_a_wrong_secret_costs_one_request_a_minute_for_all(
        connector_env: Callable[..., Any], token_requests: TokenRequests,
        monkeypatch: pytest.MonkeyPatch) -> None:
    connector_env(**WRONG)
    settings = get_runtime().settings
    clock = Clock()
    first, second, third = (TokenService(settings, get_runtime().storage, clock=clock) for _ in range(3))

    def refused(service: TokenService) -> str:
        with pytest.raises(TokenUnavailable) as caught:
            service.access_token("default")
        return str(caught.value)

    assert "invalid_client" in refused(first) and token_requests.count("client_credentials") == 1
    assert "invalid_client" in refused(second)  # another instance: told by the shared row
    assert "BC_CLIENT_SECRET" in refused(third) and token_requests.count("client_credentials") == 1

    clock.now = START + timedelta(seconds=61)  # the first minute is over: one instance asks again
    refused(second)
    refused(first)
    refused(third)
    assert token_requests.count("client_credentials") == 2
    row, _ = read_entity(get_runtime().storage.table(TABLE_CONNECTIONS), "default", "state")
    assert row["token_retry_at"] == (START + timedelta(seconds=61 + 120)).isoformat()  # doubled
    assert "not-the-secret" not in json.dumps(dict(row), default=str)

    monkeypatch.setenv("BC_CLIENT_SECRET", CLIENT_SECRET)
    fixed = TokenService(load_settings(), get_runtime().storage, clock=clock)
    assert fixed.access_token("default")  # a changed secret is asked about at once
    assert token_requests.count("client_credentials") == 3
