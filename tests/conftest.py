"""Shared fixtures: real Azurite, the real BC/Entra emulator, the connector's environment, the local host.

Every pytest process starts its own Azurite and emulators on free loopback ports, so parallel runs
do not collide. Storage is emptied before each test that uses `connector_env`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.azurite import Azurite, free_port
from tests import reaper

ROOT = Path(__file__).resolve().parent.parent
TENANT = "lmints.io"
CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
CLIENT_SECRET = "emulator-secret"
# A fixed Fernet key for tests only.
TEST_ENCRYPTION_KEY = "q2Vv1ZB7dVHt3K3b8f3mYbTq8Ynq5m4mJc2xw8tqYk0="
NEVER = "0 0 0 1 1 *"  # NCRONTAB: midnight on 1 January


def pytest_configure(config: pytest.Config) -> None:
    """Whatever the signal disposition `make test` started with, a signal ends the run with its
    fixtures' teardown (tests/reaper.py)."""
    reaper.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Nothing the run started outlives it (tests/reaper.py)."""
    reaper.reap()


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A notificationUrl: a real local HTTP server recording what BC sends (`tests/webhook_receiver.py`)."""
    from tests.webhook_receiver import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
def make_emulator() -> Iterator[Callable[..., Any]]:
    """Factory: start an emulator with config overrides; all are stopped at session end."""
    from devtools.emulator import Emulator, EmulatorConfig

    started = []

    def make(**config: Any) -> Any:
        config.setdefault("webhook_debounce_seconds", 0.2)
        config.setdefault("handshake_timeout", 5.0)
        emu = Emulator(EmulatorConfig(**config)).start()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        emu.stop()


@pytest.fixture(scope="module")
def emulator(make_emulator: Callable[..., Any]) -> Any:
    """A fresh demo-seeded emulator per test module (fast webhook debounce)."""
    return make_emulator()


def clear_storage(connection_string: str) -> None:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    tables = TableServiceClient.from_connection_string(connection_string)
    for t in tables.list_tables():
        tables.delete_table(t.name)
    queues = QueueServiceClient.from_connection_string(connection_string)
    for q in queues.list_queues():
        queues.delete_queue(q.name)
    blobs = BlobServiceClient.from_connection_string(connection_string)
    for c in blobs.list_containers():
        blobs.delete_container(c.name)


def connector_values(azurite: Azurite, emulator: Any, **overrides: str) -> dict[str, str]:
    """The app settings that point the connector at this Azurite and emulator."""
    from connector.settings import SETTINGS

    values = {s.name: s.default for s in SETTINGS if s.default is not None}  # as Bicep provisions
    # Timers fire only when a test fires them (fire_timer), never in the middle of another test.
    values |= {name: NEVER for name in values if name.endswith("_SCHEDULE")}
    values |= {
        "AzureWebJobsStorage": azurite.connection_string,
        "BC_CONNECTIONS": "default",
        "BC_TENANT": TENANT,
        "BC_ENVIRONMENT": "production",
        "BC_CLIENT_ID": CLIENT_ID,
        "BC_CLIENT_SECRET": CLIENT_SECRET,
        "BC_GRANT_TYPE": "client_credentials",
        "ENTRA_AUTHORITY_HOST": emulator.url,
        "BC_API_HOST": emulator.url,
        "TLS_CA_BUNDLE": emulator.ca_bundle,
        "TOKEN_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "PUBLIC_BASE_URL": "http://127.0.0.1:7071",
        "BC_BACKOFF_SECONDS": "0.05",
        "BC_BACKOFF_MAX_SECONDS": "0.5",
    }
    values.update(overrides)
    return values


@pytest.fixture
def connector_env(azurite: Azurite, emulator: Any, monkeypatch: pytest.MonkeyPatch
                  ) -> Callable[..., dict[str, str]]:
    """Call with setting overrides; sets the environment, empties storage, resets the runtime."""
    from connector.runtime import reset_runtime

    clear_storage(azurite.connection_string)

    def apply(**overrides: str) -> dict[str, str]:
        values = connector_values(azurite, emulator, **overrides)
        for key in list(os.environ):
            if key.startswith("BC_") or "__BC_" in key or key.startswith("PULL_"):
                monkeypatch.delenv(key, raising=False)
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        reset_runtime()
        return values

    yield apply
    reset_runtime()


@pytest.fixture
def runtime(connector_env: Callable[..., dict[str, str]]) -> Any:
    """The connector runtime on the default settings (client credentials against the emulator)."""
    from connector.runtime import get_runtime

    connector_env()
    return get_runtime()


@pytest.fixture
def local_host(connector_env: Callable[..., dict[str, str]]) -> Callable[..., Any]:
    """Factory: serve the real `function_app.app` through the local host with setting overrides
    (and optionally another host.json)."""
    from devtools.localhost import LocalHost

    hosts = []

    def start(host_json: Path = ROOT / "host.json", **overrides: str) -> Any:
        port = free_port()
        overrides.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        env = connector_env(**overrides)
        import function_app

        host = LocalHost(function_app.app, host_json=host_json, port=port,
                         env=dict(os.environ, **env)).start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture
def host_cluster(connector_env: Callable[..., dict[str, str]], tmp_path: Path) -> Callable[..., Any]:
    """Factory: `n` real instances (`python -m devtools.localhost` processes) of the app with setting
    overrides, on this Azurite and emulator, behind one round-robin front door (`.front.url`, also
    their PUBLIC_BASE_URL); `.hosts[i].kill()` SIGKILLs one. Stopped at the end."""
    from devtools.localhost.cluster import HostCluster

    clusters = []

    def start(n: int, queue_lease: int = 10, **overrides: str) -> Any:
        env = connector_env(**overrides)
        cluster = HostCluster(n, env, tmp_path / "hosts", queue_lease=queue_lease)
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.stop()
