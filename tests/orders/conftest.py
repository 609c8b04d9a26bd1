"""Fixtures of the sales-order tests."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.azurite import free_port
from devtools.localhost import LocalHost
from tests.orders.support import QUIET_SCHEDULES, EmulatorBC, OrderQueues

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
    """`local_host` with other features' timers quiet; keyword arguments override settings."""

    def start(**overrides: str) -> Any:
        return local_host(**(QUIET_SCHEDULES | overrides))

    return start


@pytest.fixture
def fast_retry_host(connector_env: Callable[..., dict[str, str]],
                    tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """The local host on a copy of host.json whose `visibilityTimeout` is 0 s, so the host's retries
    of a failing message follow at once; the retry and poison policy (`maxDequeueCount`) is real."""
    config = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    config["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps(config), encoding="utf-8")
    hosts = []

    def start(**overrides: str) -> Any:
        import function_app

        env = connector_env(**(QUIET_SCHEDULES | overrides))
        host = LocalHost(function_app.app, host_json=host_json, port=free_port(),
                         env=dict(os.environ, **env)).start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()
