"""The emulator in a process of its own, as BC is a server of its own: a benchmark measuring the
connector does not share an interpreter (and its GIL) with the emulator's hundreds of requests per
second. The parent reads the request log and clears it over a pipe; everything else goes over HTTPS
as with the in-process `Emulator`."""
from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from .config import EmulatorConfig
from .limits import LoggedRequest


def _serve(config: EmulatorConfig, pipe: Connection) -> None:
    """The child: start the emulator, tell the parent where it is, answer log commands until `stop`."""
    from .server import Emulator

    with Emulator(config) as emulator:
        pipe.send((emulator.url, emulator.ca_bundle))
        while True:
            command = pipe.recv()
            if command == "requests":
                pipe.send(emulator.requests)
            elif command == "clear":
                emulator.clear_requests()
                pipe.send(None)
            else:
                break


class EmulatorProcess:
    """`Emulator(config)` served by a child process; `url`, `ca_bundle`, `requests`, `clear_requests()`
    and `pid` (for its CPU time). A context manager, like `Emulator`."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.url = ""
        self.ca_bundle = ""
        self._pipe: Connection | None = None
        self._process: Any = None

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def start(self, timeout: float = 120.0) -> EmulatorProcess:
        context = multiprocessing.get_context("spawn")  # no copy of the parent's threads and sockets
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.config, child), daemon=True,
                                        name="bc-emulator")
        self._process.start()
        child.close()
        try:
            if not self._pipe.poll(timeout):
                raise EOFError(f"no answer within {timeout:g} s")
            self.url, self.ca_bundle = self._pipe.recv()
        except EOFError as exc:
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {exc}") from exc
        return self

    def _ask(self, command: str) -> Any:
        assert self._pipe is not None, "start() first"
        self._pipe.send(command)
        return self._pipe.recv()

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of the logged BC API requests, oldest first."""
        return list(self._ask("requests"))

    def clear_requests(self) -> None:
        """Empty the BC request log."""
        self._ask("clear")

    def stop(self) -> None:
        if self._pipe is not None:
            try:
                self._pipe.send("stop")
            except OSError:
                pass
        if self._process is not None:
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(10)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
