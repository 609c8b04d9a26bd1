"""Start and stop Azurite (npm `azurite`, installed by `package.json`) on loopback.

One process per instance (the local binary, not `npx`, so there is one PID to stop), started through
`devtools.lifeline` so it dies with the process that started it, even a SIGKILLed one. A port given
explicitly must be free: a leftover Azurite there is an error, never silently used. Queues need
`--skipApiVersionCheck`: azure-storage-queue sends an API version newer than Azurite knows.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools import lifeline
from devtools.ports import PortBusy, free_port, port_is_free

ROOT = Path(__file__).resolve().parent.parent
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_binary() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise RuntimeError("Azurite is not installed: run `npm install` (or `make install`) first")
    return path


@dataclass
class Azurite:
    """A running Azurite with blob, queue and table services on loopback."""

    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    location: Path | None = None
    # nothing on disk: no periodic save of its whole database stalling requests (benchmarks)
    in_memory: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)
    _tmp: str | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{DEV_ACCOUNT};"
        )

    @property
    def process_group(self) -> int | None:
        """The process group of Azurite and its lifeline supervisor while they run."""
        return self.process.pid if self.process else None

    def start(self, timeout: float = 60.0) -> "Azurite":
        """Start Azurite and wait until its three ports answer; `PortBusy` if a given port is taken."""
        services = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}
        for service, port in services.items():
            if port and not port_is_free(port):
                raise PortBusy(port, f"Azurite {service}", "stop that process or choose other Azurite ports")
        self.blob_port = self.blob_port or free_port()
        self.queue_port = self.queue_port or free_port()
        self.table_port = self.table_port or free_port()
        if self.location is None:
            self._tmp = tempfile.mkdtemp(prefix="azurite-")
            self.location = Path(self._tmp)
        self.location.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(azurite_binary()), "--silent", "--disableTelemetry",
            *(["--inMemoryPersistence"] if self.in_memory else ["--location", str(self.location)]),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--loose",
            # Azurite closes an idle keep-alive connection after 5 s; a client reusing it just then
            # gets "connection reset" (a loaded machine widens that race), and a storage POST such as
            # a table batch is not retried on it. Idle connections outlive any test instead.
            *(f"--{service}KeepAliveTimeout=600" for service in ("blob", "queue", "table")),
        ]
        # Its console goes to a file, not a pipe: a pipe breaks when this process dies, and Azurite's
        # "closing" line then crashes it before it has saved.
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(lifeline.command(cmd), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            while not _port_open(port):
                if self.process.poll() is not None:
                    raise RuntimeError(f"Azurite exited with {self.process.returncode}: {self._log_tail()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Azurite did not open port {port} within {timeout}s")
                time.sleep(0.1)
        return self

    @property
    def log(self) -> Path:
        """Azurite's console output (start-up lines, errors, shutdown lines)."""
        assert self.location is not None
        return self.location / "azurite.log"

    def _log_tail(self, offset: int = 0) -> str:
        with open(self.log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")[-4000:]

    def stop(self, timeout: float = 10.0) -> None:
        """TERM; once its three services report closed (their data saved), KILL if it still waits for
        idle keep-alive clients to hang up; KILL after `timeout` in any case."""
        if self.process and self.process.poll() is None:
            seen = self.log.stat().st_size
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                if self._log_tail(seen).count("successfully closed") >= 3:
                    break
                time.sleep(0.05)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)  # the supervisor and Azurite
            self.process.wait(timeout=5)
            # the supervisor's end is not Azurite's: on a loaded machine Azurite may still be closing
            # (or dying of the KILL) when the supervisor is gone; wait, then KILL what is left
            group, until = self.process.pid, time.monotonic() + timeout
            while running_in_group(group) and time.monotonic() < until:
                time.sleep(0.05)
            if running_in_group(group):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
        self.process = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def running_in_group(pgid: int) -> list[int]:
    """The running processes of process group `pgid` (Linux /proc; zombies waiting to be reaped
    count as gone; [] elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def provision(connection_string: str) -> None:
    """Create the queues, tables and blob containers the connector uses, as `infra/` does in Azure
    (a queue trigger listens on a queue that exists; producers expect it to be there)."""
    from connector.settings import BLOB_CONTAINERS, QUEUE_NAMES, TABLE_NAMES, load_storage_settings
    from connector.storage import Storage

    storage = Storage(load_storage_settings({"AzureWebJobsStorage": connection_string}))
    for name in QUEUE_NAMES:
        storage.queue(name)
    for name in TABLE_NAMES:
        storage.table(name)
    for name in BLOB_CONTAINERS:
        storage.container(name)
