"""Fixtures for the local-host tests: a factory serving `sample_app` with a temporary host.json.

Storage is the session's Azurite (`azurite` fixture in tests/conftest.py); every host gets its own
queue name, so tests do not see each other's messages.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sample_app
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devtools.azurite import Azurite
from devtools.localhost import LocalHost

FAST_QUEUES = {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:00"}


def write_host_json(
    folder: Path, queues: dict[str, Any] | None = None, http: dict[str, Any] | None = None
) -> Path:
    """A host.json with the given `extensions.queues` / `extensions.http` sections."""
    extensions: dict[str, Any] = {"queues": {**FAST_QUEUES, **(queues or {})}}
    if http is not None:
        extensions["http"] = http
    path = folder / f"host-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": extensions}), encoding="utf-8")
    return path


def sample_env(storage: Azurite, **overrides: str) -> dict[str, str]:
    """App settings for sample_app: its own queue name, a timer that never fires by itself."""
    env = {
        "SampleStorage": storage.connection_string,
        "SAMPLE_QUEUE": f"work-{uuid.uuid4().hex[:10]}",
        "SAMPLE_SCHEDULE": "0 0 0 1 1 *",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_host(azurite: Azurite, tmp_path: Path) -> Iterator[Callable[..., LocalHost]]:
    """Factory: `make_host(queues={...}, http={...}, queue_lease=..., **settings)` → a started LocalHost."""
    hosts: list[LocalHost] = []
    sample_app.seen.reset()

    def make(
        queues: dict[str, Any] | None = None,
        http: dict[str, Any] | None = None,
        queue_lease: int = 60,
        **settings: str,
    ) -> LocalHost:
        host = LocalHost(
            sample_app.app,
            host_json=write_host_json(tmp_path, queues, http),
            env=sample_env(azurite, **settings),
            queue_lease=queue_lease,
        )
        hosts.append(host.start())
        return host

    yield make
    sample_app.seen.release.set()  # a function a test left blocked returns now
    for host in hosts:
        host.stop()


def queue(host: LocalHost, suffix: str = "", base64: bool = True) -> QueueClient:
    """A client for the sample queue (or `<queue><suffix>`), created if needed."""
    name = host.env["SAMPLE_QUEUE"] + suffix
    policy = TextBase64EncodePolicy() if base64 else None
    client = QueueClient.from_connection_string(host.env["SampleStorage"], name, message_encode_policy=policy)
    if suffix == "":
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
    return client
