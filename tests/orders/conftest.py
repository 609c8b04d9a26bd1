"""Fixtures of the sales-order tests."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.orders.support import EmulatorBC, OrderQueues

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queues(azurite: Any) -> OrderQueues:
    return OrderQueues(azurite.connection_string)


@pytest.fixture
def bc(emulator: Any) -> EmulatorBC:
    emulator.clear_requests()
    emulator.faults.clear()
    return EmulatorBC(emulator)


@pytest.fixture
def order_host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    """The local host serving the app (the shared fixture already keeps every timer quiet)."""
    return local_host


@pytest.fixture
def fast_retry_host(local_host: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """The local host on a copy of host.json whose `visibilityTimeout` is 0 s, so the host's retries
    of a failing message follow at once; the retry and poison policy (`maxDequeueCount`) is real."""
    config = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    config["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps(config), encoding="utf-8")

    def start(**overrides: str) -> Any:
        return local_host(host_json=host_json, **overrides)

    return start
