"""Several app instances on one machine (dev tooling, not deployed): N `python -m devtools.localhost`
processes on one storage account and one BC, plus a round-robin front door like Azure's.

    with HostCluster(3, env, log_dir) as cluster:   # env: the app settings of every instance
        cluster.front.url                            # spreads requests over the instances
        cluster.hosts[0].kill()                      # SIGKILL: no clean-up, like a lost instance
"""
from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from devtools import lifeline
from devtools.localhost.stopping import Deadline, join_within

ROOT = Path(__file__).resolve().parents[2]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
               "host", "date", "server"}


class HostProcess:
    """One instance: `python -m devtools.localhost` serving `function_app` in its own process,
    which dies with the process that started it (`devtools.lifeline`), even a SIGKILLed one."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, queue_lease: int = 10,
                 host_json: Path = ROOT / "host.json", port: int = 0):
        self.port = port  # 0: known once serving (the host picks a free port itself: no race)
        self.log_path = log_path
        self._env = dict(env)
        self._args = [sys.executable, "-u", "-m", "devtools.localhost", "--port", str(port),
                      "--host-json", str(host_json), "--queue-lease", str(queue_lease)]
        self._process: subprocess.Popen[bytes] | None = None
        self._log_from = 0  # where this process's part of the log begins (after a restart)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostProcess:
        self._log_from = len(self.log())  # a log kept from an earlier run names its old port
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(lifeline.command(self._args), cwd=ROOT, env=self._env,
                                             stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until `GET /api/health` answers (the app is imported and serving)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"host {self.log_path.name} exited; log:\n{self.log()[-3000:]}")
            if not self.port:
                found = re.search(r"Local Functions host on http://127\.0\.0\.1:(\d+)",
                                  self.log()[self._log_from:])
                self.port = int(found.group(1)) if found else 0
            try:
                if self.port and requests.get(f"{self.url}/api/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"host on {self.port} not ready after {timeout}s")
            time.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the instance vanishes mid-work (no lease given back, no message completed)."""
        if self.alive:
            assert self._process is not None
            os.killpg(self._process.pid, signal.SIGKILL)  # the supervisor leads the host's group
            self._process.wait()

    def restart(self) -> HostProcess:
        """A new process in this one's place (killed first if alive), as a deploy or a replaced
        instance starts: on a free port (`wait_ready` finds it), appending to the same log."""
        self.kill()
        self.port = 0
        self._args[self._args.index("--port") + 1] = "0"
        return self.start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive:
            return
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


class FrontDoor:
    """A round-robin HTTP front door over the instances still alive (Azure's load balancer)."""

    def __init__(self, hosts: list[HostProcess], port: int = 0):
        self.hosts = hosts
        self.forwarded: Counter[int] = Counter()  # requests per instance port
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = make_server("127.0.0.1", port, self._app, threaded=True)  # bound now
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FrontDoor:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            join_within(self._thread, Deadline(10), "the front door")
        self._server.server_close()

    def _next(self) -> HostProcess:
        alive = [h for h in self.hosts if h.alive]
        if not alive:
            raise RuntimeError("no instance alive")
        with self._lock:
            host = alive[next(self._turn) % len(alive)]
            self.forwarded[host.port] += 1
        return host

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        host = self._next()
        try:
            upstream = self._session.request(
                request.method, f"{host.url}{request.full_path.rstrip('?')}", data=request.get_data(),
                headers={k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS},
                allow_redirects=False, timeout=120)
        except requests.RequestException:
            return Response("instance unavailable", status=502)(environ, start_response)
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS]
        return Response(upstream.content, status=upstream.status_code,
                        headers=headers)(environ, start_response)


class HostCluster:
    """`count` instances with the same settings behind one front door (on `port`, 0 = a free one);
    `PUBLIC_BASE_URL` is the front door unless given, as in Azure (webhooks and sign-in redirects
    land on any instance)."""

    def __init__(self, count: int, env: Mapping[str, str], log_dir: Path, *, port: int = 0,
                 public_base_url: str = "", queue_lease: int = 10, host_json: Path = ROOT / "host.json"):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.hosts: list[HostProcess] = []
        self.front = FrontDoor(self.hosts, port)
        env = {**os.environ, **env, "PUBLIC_BASE_URL": public_base_url or self.front.url}
        self.hosts.extend(HostProcess(env, log_dir / f"host-{n}.log", queue_lease=queue_lease,
                                      host_json=host_json) for n in range(count))

    def start(self, timeout: float = 180.0) -> HostCluster:
        for host in self.hosts:
            host.start()
        try:
            for host in self.hosts:
                host.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.front.start()
        return self

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        self.front.stop()

    def logs(self) -> str:
        return "\n".join(f"---- {h.log_path.name}\n{h.log()[-4000:]}" for h in self.hosts)

    def __enter__(self) -> HostCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
