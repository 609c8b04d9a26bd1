"""Fixtures for the emulator's tests: a started BC API app (`make_api`), stopped at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.emulator.bc_api import BCApi
from devtools.emulator.bc_testing import make_api


@pytest.fixture
def started_api() -> Iterator[Callable[..., BCApi]]:
    """Factory: `make_api(**config)` with its webhook and business-event dispatchers started (a
    webhook debounce of 0.05 s unless given); every one is stopped at the end."""
    apis: list[BCApi] = []

    def build(**config: Any) -> BCApi:
        config.setdefault("webhook_debounce_seconds", 0.05)
        api = make_api(**config)
        api.start()
        apis.append(api)
        return api

    yield build
    for api in apis:
        api.stop()
