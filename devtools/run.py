"""`make run` (`python -m devtools.run`): the connector served locally against Azurite and the BC +
Entra ID emulator (dev tooling, not deployed).

It owns what it starts: Azurite is a child that dies with this process (SIGINT, SIGTERM, SIGHUP, and
through `devtools.lifeline` even SIGKILL); the emulator and the Functions host run in-process. Every
port is checked first, and a busy one is an error naming it and the option that moves it. The data
dir (`.devdata/`) holds Azurite's files and the emulator's state, kept across restarts so that BC and
storage stay in step; `--reset` (`make reset`) wipes both together. Settings come from
`local.settings.json` (else the example) without overriding the environment; storage, BC, Entra and a
loopback `PUBLIC_BASE_URL` are pointed at what was started.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from connector.cli.local_run import LocalRun, remove_run, write_run
from devtools.azurite import Azurite, provision
from devtools.banner import function_lines, overrides, settings_lines
from devtools.ports import PortBusy, port_is_free

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEV_STORAGE = "UseDevelopmentStorage=true"
STORAGE_SETTING = "AzureWebJobsStorage"
HOST_STOP_SECONDS = 30.0  # in-flight invocations get this long to finish when the run stops
EXIT_HANDLERS_SECONDS = 10.0


@dataclass(frozen=True)
class Ports:
    """The ports of one run; Azurite uses `azurite` (blob), +1 (queue) and +2 (table)."""

    host: int = 7071
    emulator: int = 8443
    azurite: int = 10000

    def needed(self, with_emulator: bool) -> list[tuple[int, str, str]]:
        """(port, what, how to move it) for every port this run will listen on."""
        ports = [(self.host, "the connector's HTTP host", f"make run PORT=<port> (--port), not {self.host}")]
        if with_emulator:
            ports.append((self.emulator, "the BC + Entra emulator",
                          f"make run EMULATOR_PORT=<port> (--emulator-port), not {self.emulator}"))
        fix = f"make run AZURITE_PORT=<port> (--azurite-port; uses it and the next two), not {self.azurite}"
        services = ("blob", "queue", "table")
        ports += [(self.azurite + i, f"Azurite {service}", fix) for i, service in enumerate(services)]
        return ports


@dataclass(frozen=True)
class DataDir:
    """Where a run keeps its state: Azurite's files and the emulator's state, reset together."""

    root: Path

    @property
    def azurite(self) -> Path:
        return self.root / "azurite"

    @property
    def emulator_state(self) -> Path:
        return self.root / "emulator" / "state.json"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "emulator-ca.pem"

    def has_storage(self) -> bool:
        """Azurite has written data here."""
        return self.azurite.is_dir() and any(self.azurite.iterdir())

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use of the data dir for this process; `RuntimeError` if another run has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "run.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise RuntimeError(
                    f"another `make run` (pid {handle.read().strip() or '?'}) is using {self.root}: "
                    "stop it first, or give this one another --data-dir"
                ) from None
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield

    def wipe(self) -> None:
        """Remove Azurite's data and the emulator's state (hold the lock)."""
        shutil.rmtree(self.azurite, ignore_errors=True)
        shutil.rmtree(self.emulator_state.parent, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the Makefile's PORT, EMULATOR_PORT, AZURITE_PORT and DEBOUNCE map here)."""
    parser = argparse.ArgumentParser(prog="python -m devtools.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Ports()
    parser.add_argument("--port", type=int, default=defaults.host,
                        help="HTTP port of the connector; a loopback PUBLIC_BASE_URL follows it")
    parser.add_argument("--emulator-port", type=int, default=defaults.emulator,
                        help="https port of the BC + Entra emulator")
    parser.add_argument("--azurite-port", type=int, default=defaults.azurite,
                        help="Azurite's blob port; queue and table use the next two")
    parser.add_argument("--webhook-debounce", type=float, default=3.0, metavar="SECONDS",
                        help="how long the emulator collects changes before notifying (BC: 30)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".devdata",
                        help="Azurite data and emulator state (default .devdata/)")
    parser.add_argument("--reset", action="store_true",
                        help="wipe Azurite's data and the emulator's state before starting")
    parser.add_argument("--reset-only", action="store_true", help="wipe them and exit (make reset)")
    parser.add_argument("--instances", type=int, default=1,
                        help="app instances: host processes behind one round-robin front door on "
                             "--port, sharing storage and BC (try scale-out locally)")
    parser.add_argument("--no-emulator", action="store_true",
                        help="do not start the BC + Entra emulator (real BC from the settings)")
    return parser.parse_args(argv)


# ---- decisions -----------------------------------------------------------------------------------


def uses_real_bc(environ: Mapping[str, str]) -> bool:
    """True when BC_API_HOST names a host other than loopback (the user configured real BC)."""
    host = urlparse(environ.get("BC_API_HOST", "")).hostname
    return bool(host) and host not in LOOPBACK


def public_base_url(configured: str, port: int) -> str:
    """Where BC and browsers reach this run: a loopback URL (or none) follows `port`; any other
    (a tunnel, say) is kept."""
    configured = configured.strip().rstrip("/")
    if not configured or urlparse(configured).hostname in LOOPBACK:
        return f"http://127.0.0.1:{port}"
    return configured


def storage_connection(configured: str, azurite: str) -> str:
    """Development storage (or none) means the Azurite this run started, on whatever ports."""
    return azurite if configured.strip() in ("", DEV_STORAGE) else configured


def out_of_step(has_storage: bool, has_emulator_state: bool) -> str | None:
    """A warning when storage and the emulator would not start from the same history."""
    if has_storage and not has_emulator_state:
        return ("Azurite has data but the emulator has no saved state, so BC starts fresh while storage "
                "remembers subscriptions and orders. `make reset` starts both fresh.")
    if has_emulator_state and not has_storage:
        return ("the emulator has saved state but Azurite has no data. `make reset` starts both fresh.")
    return None


# ---- I/O -----------------------------------------------------------------------------------------


def say(text: str, stream: IO[str] | None = None) -> None:
    """Print and flush; a closed terminal (SIGHUP) must not stop the shutdown."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream or sys.stdout, flush=True)


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """A progress line before a step that may take a while, and how long it took."""
    say(f"- {what} ...")
    started = time.monotonic()
    yield
    say(f"  ready in {time.monotonic() - started:.1f} s")


def stop_signals() -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (terminal closed); a second signal exits at once
    (Azurite still stops: it dies with this process)."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handle)
    return stop


def stop_within(stop: Callable[[], object], seconds: float, what: str) -> bool:
    """`stop()` on a daemon thread, waited for at most `seconds`: a stop held by a slow call in flight
    (an invocation's BC or storage retries, a queue poll retrying on a loaded machine) must not keep
    `make run` from ending. False, with a line saying so, if it had not finished; its error is raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stop()
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"stop {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        say(f"  {what}: not stopped after {seconds:g} s (a call still in flight); not waiting longer",
            sys.stderr)
        return False
    if errors:
        raise errors[0]
    return True


def exit_now(code: int) -> None:
    """End the process once everything it started is stopped: exit handlers get a bounded time, and
    threads an abandoned invocation left running (its pool's workers are joined at exit) are not
    waited for."""
    stop_within(atexit._run_exitfuncs, EXIT_HANDLERS_SECONDS, "exit handlers")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def check_ports(ports: Ports, with_emulator: bool) -> None:
    """`PortBusy` for the first port something else listens on."""
    for port, what, fix in ports.needed(with_emulator):
        if not port_is_free(port):
            raise PortBusy(port, what, fix)


def point_at_emulator(url: str, ca_bundle: str, data: DataDir) -> None:
    """Aim the connector's BC and Entra settings at the emulator and trust its CA (copied to the data dir)."""
    from devtools.emulator.config import IDENTITY_HEADER

    shutil.copyfile(ca_bundle, data.ca_bundle)
    os.environ.update({
        "BC_API_HOST": url,
        "ENTRA_AUTHORITY_HOST": url,
        "TLS_CA_BUNDLE": str(data.ca_bundle),
        "REQUESTS_CA_BUNDLE": str(data.ca_bundle),
        # the local Function App's managed identity, as App Service exposes it: what
        # BC_CLIENT_CREDENTIAL=managed-identity signs in with (a client assertion instead of a secret)
        "IDENTITY_ENDPOINT": f"{url}/msi/token",
        "IDENTITY_HEADER": IDENTITY_HEADER,
    })


def serve(args: argparse.Namespace, data: DataDir, stop: threading.Event) -> None:
    """Start Azurite, the emulator and the host, print the banner, wait for `stop`; stop them in
    reverse order (also when a step fails or a signal comes during start-up)."""
    from devtools.localhost.cli import configure_logging, load_settings, settings_file

    configure_logging()
    settings = settings_file(ROOT)
    environ_before = dict(os.environ)
    file_values = load_settings(settings) if settings is not None else {}
    with_emulator = not (args.no_emulator or uses_real_bc(os.environ))
    ports = Ports(args.port, args.emulator_port, args.azurite_port)
    check_ports(ports, with_emulator)
    if with_emulator and (warning := out_of_step(data.has_storage(), data.emulator_state.exists())):
        say(f"WARNING: {warning}", sys.stderr)
    os.environ["PUBLIC_BASE_URL"] = public_base_url(os.environ.get("PUBLIC_BASE_URL", ""), args.port)
    with contextlib.ExitStack() as started:
        azurite = Azurite(ports.azurite, ports.azurite + 1, ports.azurite + 2, location=data.azurite)
        with step(f"Azurite on 127.0.0.1:{ports.azurite}-{ports.azurite + 2} (data in {data.azurite})"):
            started.callback(azurite.stop)
            azurite.start()
            os.environ[STORAGE_SETTING] = storage_connection(
                os.environ.get(STORAGE_SETTING, ""), azurite.connection_string)
            provision(os.environ[STORAGE_SETTING])
        if stop.is_set():
            return
        emulator_line = f"none; BC_API_HOST={os.environ.get('BC_API_HOST', '(not set)')}"
        if with_emulator:
            from devtools.emulator import Emulator, EmulatorConfig

            restoring = data.emulator_state.exists()
            with step(f"BC + Entra emulator on port {ports.emulator} "
                      f"({'restoring' if restoring else 'new'} state in {data.emulator_state})"):
                emulator = Emulator(EmulatorConfig(port=ports.emulator, state_file=str(data.emulator_state),
                                                   webhook_debounce_seconds=args.webhook_debounce))
                started.callback(emulator.stop)
                emulator.start()
                point_at_emulator(emulator.url, emulator.ca_bundle, data)
            origin = "state restored" if restoring else "demo data"
            emulator_line = f"{emulator.url} (BC + Entra ID; {origin})"
        if stop.is_set():
            return
        host = start_hosts(args.instances, ports.host, data, started)
        if with_emulator and emulator.bc is not None:  # what BC held back while the host was down goes out
            threading.Thread(target=emulator.bc.flush_webhooks, name="flush-webhooks", daemon=True).start()
        public = os.environ["PUBLIC_BASE_URL"]
        where = "" if ports.azurite == 10000 else f"; connection string: {azurite.connection_string}"
        found = overrides(file_values, environ_before, os.environ)
        banner = [
            f"bc-connector on {host.url}",
            f"  health:    {host.url}/api/health",
            f"  status:    {host.url}/api/status   (python -m connector status)",
            f"  webhooks:  BC notifies {public}/api/webhooks/bc"
            + (f" {args.webhook_debounce:g} s after a change (real BC: about 30 s; make run DEBOUNCE=30)"
               if with_emulator else ""),
            f"  emulator:  {emulator_line}",
            f"  storage:   Azurite (process group {azurite.process_group}) on "
            f"127.0.0.1:{ports.azurite}-{ports.azurite + 2}{where}",
            f"  data:      {data.root} (make reset wipes storage and emulator state together)",
            "  functions:",
            *function_lines(app_functions(), host.url, environ=os.environ),
            *settings_lines(settings, found),
            "  try:       python -m connector tail   (and in another terminal: python -m connector trigger "
            "item.created)",
        ]
        for line in banner:
            say(line)
        write_run(data.root, LocalRun(
            pid=os.getpid(), host_url=host.url, public_url=public, storage=os.environ[STORAGE_SETTING],
            emulator_url=emulator.url if with_emulator else "", ca_bundle=str(data.ca_bundle) if with_emulator
            else "", settings_file=str(settings or ""), overrides=found, banner=banner))
        started.callback(remove_run, data.root, os.getpid())
        threading.Thread(target=follow_public_url, args=(host.url, public), name="follow-public-url",
                         daemon=True).start()
        say("Ctrl-C to stop.")
        # with a timeout: a signal the kernel hands to another thread only flags the handler, and a
        # main thread blocked in an untimed wait would never run it (a lost Ctrl-C on a busy machine)
        while not stop.wait(0.5):
            pass
        say("stopping ...")


def app_functions() -> list[Any]:
    """The app's functions, as the host indexes them."""
    sys.path.insert(0, str(ROOT))
    import function_app
    from devtools.localhost.functions import index

    return index(function_app.app)


def follow_public_url(host_url: str, public: str, attempts: int = 3) -> None:
    """Connections that have webhook subscriptions get a subscription run now, so that subscriptions
    made for another URL (an earlier run on another PORT) are recreated for this one (the renewal
    timer does the same every run, in Azure too). Connections without any are left alone."""

    for attempt in range(attempts):  # a busy machine may keep the first call waiting
        if _follow_once(host_url, public, last=attempt == attempts - 1):
            return
        time.sleep(2 * (attempt + 1))


def _follow_once(host_url: str, public: str, last: bool) -> bool:
    """One try of `follow_public_url`; False when it should be tried again."""
    import requests

    try:
        report = requests.get(f"{host_url}/api/status", headers={"Accept": "application/json"},
                              timeout=60).json()
        for conn in report.get("connections", []):
            if not conn.get("subscriptions"):
                continue
            name = conn["name"]
            done = requests.post(f"{host_url}/api/connections/{name}/subscriptions", timeout=120)
            if done.status_code == 200:
                summary = done.json()
                changed = {k: v for k, v in summary.items() if k in ("created", "recreated") and v}
                if changed:
                    say(f"subscriptions of {name}: {changed} (notifying {public} now)")
            else:
                if not last:
                    return False
                say(f"subscriptions of {name}: not checked ({done.status_code} {done.text[:200]})",
                    sys.stderr)
    except (requests.RequestException, ValueError) as exc:
        if not last:
            return False
        say(f"subscriptions: not checked at start ({exc})", sys.stderr)
    return True


def start_hosts(instances: int, port: int, data: DataDir, started: contextlib.ExitStack) -> Any:
    """The app on `port`: one local host in this process, or `instances` host processes behind a
    front door (logs in the data dir); stopped with the rest."""
    if instances > 1:
        from devtools.localhost.cluster import HostCluster

        cluster = HostCluster(instances, os.environ, data.root / "hosts", port=port,
                              public_base_url=os.environ["PUBLIC_BASE_URL"])
        with step(f"{instances} Functions hosts behind a front door on port {port} "
                  f"(logs in {data.root / 'hosts'}, and here prefixed [host-N])"):
            started.callback(cluster.stop)
            offsets = {h.log_path: h.log_path.stat().st_size if h.log_path.exists() else 0
                       for h in cluster.hosts}
            cluster.start()
        for path, offset in offsets.items():
            threading.Thread(target=follow_log, args=(path, offset, f"[{path.stem}] "), daemon=True,
                             name=f"log-{path.stem}").start()
        return cluster.front
    with step("loading function_app.py"):
        sys.path.insert(0, str(ROOT))
        import function_app
        from devtools.localhost import LocalHost

    host = LocalHost(function_app.app, host_json=ROOT / "host.json", port=port)
    with step(f"Functions host on port {port}"):
        # the host names what it gave up on after HOST_STOP_SECONDS; the margin is for a stuck stop
        started.callback(stop_within, lambda: host.stop(HOST_STOP_SECONDS), HOST_STOP_SECONDS + 5,
                         "the Functions host")
        host.start()
    return host


def follow_log(path: Path, offset: int, prefix: str, poll: float = 0.2) -> None:
    """Print the lines a host process appends to its log, each with `prefix` (runs until exit)."""
    with open(path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        pending = ""
        while True:
            chunk = log.read()
            if not chunk:
                time.sleep(poll)
                continue
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                say(prefix + line)


def main(argv: list[str] | None = None) -> int:
    """Run (or reset) and return the exit code; known start-up failures are one clear line."""
    args = parse_args(argv)
    stop = stop_signals()
    data = DataDir(args.data_dir.resolve())
    try:
        with data.lock():
            if args.reset or args.reset_only:
                data.wipe()
                say(f"wiped Azurite data and emulator state in {data.root}")
            if not args.reset_only:
                serve(args, data, stop)
    except RuntimeError as exc:  # busy port or data dir, unreadable state, Azurite missing or failing
        say(f"make run: {exc}", sys.stderr)
        return 2 if isinstance(exc, PortBusy) else 1
    return 0


if __name__ == "__main__":
    exit_now(main())
