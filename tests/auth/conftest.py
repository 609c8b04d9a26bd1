"""Fixtures of the sign-in tests: the local host on the authorization-code flow, Entra token counting."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.auth.browser import CODE_FLOW, TokenRequests


@pytest.fixture
def token_requests(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenRequests]:
    """Count Entra token requests (the emulator itself logs only BC requests)."""
    counter = TokenRequests(emulator.entra)
    monkeypatch.setattr(emulator, "entra", counter)
    yield counter


@pytest.fixture
def code_flow_host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: the local host with the default connection on the authorization-code flow."""

    def start(**overrides: str) -> Any:
        return local_host(**{**CODE_FLOW, **overrides})

    return start
