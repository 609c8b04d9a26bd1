"""Test support: `python -m devtools.run` (what `make run` runs) in a subprocess, on free ports, with
its own data dir, settings from the example file as on a fresh checkout."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TypeVar

from connector.settings import SETTINGS
from devtools.azurite import Azurite
from devtools.ports import free_port, port_is_free

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
NEVER = "0 0 0 1 1 *"  # timers that would fire in the middle of a test


def ephemeral_floor() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(length: int = 3) -> int:
    """The first of `length` consecutive free ports (Azurite's blob, queue, table), below the
    ephemeral range: there, any outgoing connection of the suite may take one between this check and
    Azurite's bind (EADDRINUSE seen on a busy machine)."""
    while True:
        base = random.randrange(10000, max(10001, ephemeral_floor() - length))
        if all(port_is_free(base + i) for i in range(length)):
            return base


def launcher_env() -> dict[str, str]:
    """The environment without any connector setting (the example settings file supplies them), and
    schedules that never fire."""
    names = {s.name for s in SETTINGS} | {"AzureWebJobsStorage", "REQUESTS_CA_BUNDLE"}
    env = {k: v for k, v in os.environ.items() if k not in names and "__BC_" not in k}
    env |= {s.name: NEVER for s in SETTINGS if s.name.endswith("_SCHEDULE")}
    return env | {"PYTHONUNBUFFERED": "1"}


class Launcher:
    """One `make run`: `start()` waits for its banner; `signal()`, `wait()`, `stop()`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, emulator_port: int | None = None,
                 azurite_port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.emulator_port = emulator_port or free_port()
        self.azurite_port = azurite_port or free_port_run()
        self.extra = extra
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._banner = threading.Event()

    @property
    def args(self) -> list[str]:
        return [sys.executable, "-m", "devtools.run", "--port", str(self.port),
                "--emulator-port", str(self.emulator_port), "--azurite-port", str(self.azurite_port),
                "--data-dir", str(self.data_dir), *self.extra]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def emulator_url(self) -> str:
        return f"https://127.0.0.1:{self.emulator_port}"

    @property
    def ca_bundle(self) -> str:
        return str(self.data_dir / "emulator-ca.pem")

    @property
    def storage(self) -> str:
        """The connection string of this run's Azurite."""
        return Azurite(self.azurite_port, self.azurite_port + 1, self.azurite_port + 2).connection_string

    @property
    def ports(self) -> list[int]:
        return [self.port, self.emulator_port, *(self.azurite_port + i for i in range(3))]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def azurite_group(self) -> int:
        """The process group of Azurite (and its lifeline supervisor), from the banner."""
        found = re.search(r"Azurite \(process group (\d+)\)", self.output)
        assert found, self.output
        return int(found.group(1))

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run to completion (for runs that are expected to stop by themselves)."""
        return subprocess.run(self.args, cwd=ROOT, env=launcher_env(), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, timeout: float = 240) -> Launcher:
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=launcher_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._banner.wait(0.2):
            code = self.process.poll()
            assert code is None, f"make run exited with {code}:\n{self.output}"
            assert time.monotonic() < deadline, f"no banner after {timeout} s:\n{self.output}"
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C to stop."):
                self._banner.set()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it hangs); nothing if it already ended."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
