"""Benchmark of one deployment at internet scale: N environments × M companies, one connection each.

The emulator gets N/2 tenants (each with `production` and `sandbox`, its own app registration and
limits) through `POST /_emulator/tenants`; the connector one connection per company (`<tenant>` /
`<environment>` / `<company>`, client credentials), declared as app settings (`NAME__BC_*`) or, with
`--declare table`, as rows of the connection table (one multi-tenant app consented in every tenant),
served by `--hosts` real host processes on one Azurite behind a counting proxy (every storage
transaction the app makes goes through it).

First one instance with `--baseline` connections does the warm-up's work alone (its memory is what
an instance needs before connections add to it). Then the cold start: the first pull's units are
queued, every instance started at once; process start to serving, and to the first unit done. The
warm-up (subscriptions created, sweep baselines) follows, then one **simulated hour** of idle
timers: what the timers of an hour queue (item pull every 15 minutes, sweep every 30, renewal once),
one after the other without waiting for the wall clock; each run is the timer's body
(`WorkQueue.enqueue`: one `bc-connection-work` unit per connection). Subscriptions live 3 days and
are renewed 36 hours before they expire, so an hour's renewal run renews none (a renewal is one
PATCH per subscription every ~36 hours: 0.08 per company-hour, left out).

Printed: idle BC requests per company-hour (target ≤ 20), storage transactions per company-hour (the
units' work in the hour, plus what idle instances do over a quiet real-time window, scaled to an
hour), the longest any unit waited on the queue for its turn, subscriptions per environment (BC's
cap 200; target ≤ 80 %), memory per instance (peak and resident) and per connection (against the
few-connection instance), cold start, Entra requests of the warm-up, `/api/status` (page 1 of 20 at
full size) in headless Chromium (navigation to first paint, target ≤ 1 s), the timer burst, and the
machine's load average over the run. Then, for a sample of companies, a created item and a sales
order flow end to end (event on `bc-items`, order `created`).

    python -m bench.scale [--environments 100] [--companies 10] [--hosts 3] [--declare settings|table]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

TARGET_BC_PER_COMPANY_HOUR = 20.0
TARGET_SUBSCRIPTION_SHARE = 0.8
TARGET_WAIT_SECONDS = 300.0
TARGET_COLD_START_SECONDS = 120.0
TARGET_STATUS_PAINT_MS = 1000.0
FLUSH_SECONDS = 65.0  # an instance writes its activity counts (`bcstats`) every 60 s
SAMPLE = 3
SHARED_APP = ("app-scale", "s-scale")  # `--declare table`: one multi-tenant app in every tenant
# What the default schedules fire in an hour, in order (minute, task): ITEM_PULL_SCHEDULE every 15
# minutes, SWEEP_SCHEDULE every 30, SUBSCRIPTION_RENEWAL_SCHEDULE at minute 7.
HOUR = ((0, "pull"), (0, "sweep"), (7, "renewal"), (15, "pull"), (30, "pull"), (30, "sweep"), (45, "pull"))
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "date",
    "server",
}


class CountingProxy:
    """A reverse proxy in front of one Azurite service that counts the requests (storage
    transactions, as Azure bills them: one per REST call) and the queue polls among them."""

    def __init__(self, target: str):
        self.target = target
        self.count = 0
        self.polls = 0  # GET .../messages (the host's queue polling; a receive)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reset(self) -> tuple[int, int]:
        with self._lock:
            seen, self.count, polls, self.polls = self.count, 0, self.polls, 0
        return seen, polls

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.count += 1
            if (
                request.method == "GET"
                and request.path.endswith("/messages")
                and "peekonly" not in request.query_string.decode()
            ):
                self.polls += 1
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
        body = request.get_data()
        prepared = requests.Request(
            request.method,
            f"{self.target}{raw}",
            data=body or None,
            headers={k: v for k, v in request.headers.items() if k.lower() not in HOP - {"content-length"}},
        ).prepare()
        prepared.url = f"{self.target}{raw}"  # as signed: no re-encoding
        upstream = self._session().send(prepared, allow_redirects=False, timeout=120)
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP]
        return Response(upstream.content, status=upstream.status_code, headers=headers)(
            environ, start_response
        )

    def stop(self) -> None:
        self._server.shutdown()


def proxied(azurite: Any) -> tuple[str, dict[str, CountingProxy]]:
    """A connection string over counting proxies of Azurite's three services."""
    from devtools.azurite import DEV_ACCOUNT, DEV_KEY

    proxies = {
        s: CountingProxy(f"http://127.0.0.1:{getattr(azurite, f'{s}_port')}")
        for s in ("blob", "queue", "table")
    }
    ends = ";".join(
        f"{s.capitalize()}Endpoint=http://127.0.0.1:{p.port}/{DEV_ACCOUNT}" for s, p in proxies.items()
    )
    return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};{ends};", proxies)


def build_tenants(emulator: Any, environments: int, companies: int, shared_app: bool = False
                  ) -> list[dict[str, Any]]:
    """N environments (production + sandbox per tenant) × M companies; the first tenant seeded with
    the demo data (the end-to-end sample), the others empty. One connection per company. Each tenant
    has its own app registration, or with `shared_app` one multi-tenant app consented in every
    tenant (an integrator's usual set-up: one client id and secret, the app settings')."""
    tenants = (environments + 1) // 2
    names = [f"Company {n:02d}" for n in range(1, companies + 1)]

    def client(t: int) -> tuple[str, str]:
        return SHARED_APP if shared_app else (f"app-t{t:03d}", f"s-{t}")

    def tenant(t: int) -> dict[str, Any]:
        envs = ("production", "sandbox")[: min(2, environments - 2 * t)]
        return {
            "domain": f"t{t:03d}.example",
            "environments": {env: names for env in envs},
            "clients": [{"client_id": client(t)[0], "client_secret": client(t)[1]}],
        }

    batches = [[0]] + [list(range(s, min(tenants, s + 25))) for s in range(1, tenants, 25)]
    connections = []
    for i, batch in enumerate(batches):
        answer = admin(emulator, {"seed": "demo" if i == 0 else None, "tenants": [tenant(t) for t in batch]})
        for created in answer["tenants"]:
            n = int(created["domain"][1:4])
            for env, listed in created["environments"].items():
                for company in listed:
                    connections.append(
                        {
                            "name": f"c{len(connections) + 1:04d}",
                            "tenant": created["domain"],
                            "environment": env,
                            "company": company["id"],
                            "client_id": client(n)[0],
                            "secret": client(n)[1],
                        }
                    )
    return connections


def admin(emulator: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(
        f"{emulator.url}/_emulator/tenants", json=body, verify=emulator.ca_bundle, timeout=600
    )
    resp.raise_for_status()
    return resp.json()


def environment(storage: str, emulator: Any, connections: list[dict[str, Any]], declare: str = "settings"
                ) -> dict[str, str]:
    """App settings: the connections (`settings`: one per company as prefixed app settings; `table`:
    none, they are rows of the connection table, `declare_in_table`), timers quiet (the bench runs
    their bodies), the default fan-out."""
    from connector.settings import SETTINGS

    in_settings = connections if declare == "settings" else []
    values = {s.name: "0 0 0 1 1 *" for s in SETTINGS if s.name.endswith("_SCHEDULE")} | {
        "AzureWebJobsStorage": storage,
        "BC_CONNECTIONS": ",".join(c["name"] for c in in_settings),
        "BC_GRANT_TYPE": "client_credentials",
        "BC_CLIENT_ID": connections[0]["client_id"],
        "BC_CLIENT_SECRET": connections[0]["secret"],
        "BC_TENANT": connections[0]["tenant"],
        "ENTRA_AUTHORITY_HOST": emulator.url,
        "BC_API_HOST": emulator.url,
        "TLS_CA_BUNDLE": emulator.ca_bundle,
        "TOKEN_ENCRYPTION_KEY": "q2Vv1ZB7dVHt3K3b8f3mYbTq8Ynq5m4mJc2xw8tqYk0=",  # a throw-away key
    }
    for c in in_settings:
        prefix = c["name"].upper()
        values |= {
            f"{prefix}__BC_TENANT": c["tenant"],
            f"{prefix}__BC_ENVIRONMENT": c["environment"],
            f"{prefix}__BC_COMPANY": c["company"],
            f"{prefix}__BC_CLIENT_ID": c["client_id"],
            f"{prefix}__BC_CLIENT_SECRET": c["secret"],
        }
    return values


def declare_in_table(storage: str, connections: list[dict[str, Any]]) -> float:
    """The connections as rows of the connection table (`bcconnectiondefs`), 100 a transaction;
    no secret in a row: the shared app's is the app setting. Seconds taken."""
    from connector.connection_table import put_connections
    from connector.settings import load_storage_settings
    from connector.storage import Storage

    started = time.monotonic()
    put_connections(Storage(load_storage_settings({"AzureWebJobsStorage": storage})), {
        c["name"]: {"BC_TENANT": c["tenant"], "BC_ENVIRONMENT": c["environment"], "BC_COMPANY": c["company"]}
        for c in connections})
    return time.monotonic() - started


def work_queue(env: dict[str, str]) -> Any:
    """The timers' fan-out as the app has it: every connection, the app settings' and the table's."""
    import dataclasses

    from connector.connection_table import LiveConnections
    from connector.fanout.units import WorkQueue
    from connector.settings import load_settings
    from connector.storage import Storage

    settings = load_settings(env)
    storage = Storage(settings.storage)
    settings = dataclasses.replace(settings, connections=LiveConnections(settings, storage))
    return WorkQueue(settings, storage)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo.extend(int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split())
        except OSError:
            pass
    return found


def largest_status_mib(pid: int, field: str) -> float:
    """The largest `field` of /proc/<pid>/status (kB) among the process and its descendants, MiB."""
    found = 0
    for p in descendants(pid):
        try:
            match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        found = max(found, int(match.group(1)) if match else 0)
    return found / 1024


def peak_mib(pid: int) -> float:
    """The largest peak resident set (VmHWM) among the process and its descendants, MiB."""
    return largest_status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """The largest resident set (VmRSS) now among the process and its descendants, MiB."""
    return largest_status_mib(pid, "VmRSS")


class LoadSampler:
    """The machine's 1-minute load average every few seconds while the bench runs (a shared machine:
    the time figures are read against it)."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return f"mean {sum(self.samples) / len(self.samples):.1f}, max {max(self.samples):.1f}"


def first_unit_done(log_dir: Path, since: datetime, timeout: float) -> float:
    """Seconds from `since` to the first `bc-connection-work` unit any host finished (its log line)."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"^(\S+ \S+) INFO devtools\.localhost: connection_work \(queueTrigger\) succeeded",
                         re.M)
    while time.monotonic() < deadline:
        texts = [log.read_text(errors="replace") for log in log_dir.glob("host-*.log")]
        stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                  for text in texts for m in pattern.finditer(text)]
        if stamps:
            return (min(stamps) - since).total_seconds()
        time.sleep(0.2)
    raise TimeoutError(f"no unit done {timeout:g}s after the hosts started")


PAINT_TIMING = """
const n = performance.getEntriesByType('navigation')[0];
const p = performance.getEntriesByName('first-contentful-paint')[0];
return {response: n.responseStart, loaded: n.responseEnd, dom: n.domContentLoadedEventEnd,
        paint: p ? p.startTime : null, shown: document.querySelectorAll('[data-connection]').length,
        paging: (document.querySelector('[data-paging]') || {}).textContent || ''};
"""


def status_in_browser(urls: list[str], pages: list[int]) -> list[dict[str, Any]]:
    """`GET /api/status` (the HTML page) in headless Chromium from each instance (`urls`), the pages
    of `pages` in turn: navigation and paint timings from the browser itself (ms from navigation
    start); `first`: the instance's first view (which, up to 50 connections, first asks Entra for a
    fresh token per principal: a secret changed since shows at once). Chromium and chromedriver come
    from `make browser`."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise RuntimeError("chromium and chromedriver are missing: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(120)
        found = []
        for n, url in enumerate(urls):
            for turn, page in enumerate(pages):
                driver.get(f"{url}/api/status" + (f"?page={page}" if page > 1 else ""))
                timing = driver.execute_script(PAINT_TIMING)
                # the paint entry can land just after `get` returns at the load event: wait for it
                # (its time is the browser's own, from navigation start, whenever it is read)
                for _ in range(50):
                    if timing["paint"] is not None:
                        break
                    time.sleep(0.1)
                    timing = driver.execute_script(PAINT_TIMING)
                found.append({"instance": n, "page": page, "first": turn == 0, **timing})
        return found
    finally:
        driver.quit()


def queue_depth(queue: Any) -> int:
    try:
        return queue.get_queue_properties().approximate_message_count
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def settle(emulator: Any, queues: list[Any], timeout: float, quiet: float = 3.0) -> None:
    """Until the queues are empty and BC has seen no request for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(emulator.requests)
        if count != last:
            last, since = count, time.monotonic()
        if all(queue_depth(q) == 0 for q in queues) and time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)
    raise TimeoutError(f"not idle after {timeout:g}s: depths {[queue_depth(q) for q in queues]}")


def waits(log_dir: Path, since: datetime) -> list[float]:
    """How long each unit that started after `since` waited for its turn (the hosts' log lines)."""
    found = []
    for log in log_dir.glob("host-*.log"):
        for stamp, wait in re.findall(r"^(\S+ \S+) INFO \S+: work unit \w+ \S+: waited ([0-9.]+) s",
                                      log.read_text(errors="replace"), re.M):
            if datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") >= since:
                found.append(float(wait))
    return found


def timed(fn: Any, *args: Any) -> float:
    started = time.monotonic()
    fn(*args)
    return time.monotonic() - started


def baseline_memory(storage: str, emu: Any, connections: list[dict[str, Any]], log_dir: Path,
                    queues: list[Any]) -> dict[str, float]:
    """One instance with a few connections doing the warm-up's work (pull, subscriptions, sweep
    baseline): the memory an instance needs before connections add to it."""
    from devtools.localhost.cluster import HostCluster

    env = environment(storage, emu, connections)
    work = work_queue(env)
    cluster = HostCluster(1, env, log_dir / "baseline").start(600)
    try:
        for task in ("pull", "renewal", "sweep"):
            work.enqueue(task)
            settle(emu, queues, 600)
        pid = cluster.hosts[0]._process.pid  # type: ignore[union-attr]
        return {"connections": len(connections), "peak": peak_mib(pid), "rss": rss_mib(pid)}
    finally:
        cluster.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from azure.storage.queue import QueueClient

    from connector.settings import QUEUE_CONNECTION_WORK, QUEUE_NAMES, QUEUE_NOTIFICATIONS
    from devtools.azurite import Azurite
    from devtools.emulator import Emulator, EmulatorConfig
    from devtools.localhost.cluster import HostCluster

    log_dir = Path(tempfile.mkdtemp(prefix="bench-internet-"))
    r: dict[str, Any] = {"log_dir": str(log_dir), "enqueue_seconds": {}}
    with (
        Azurite(in_memory=True) as azurite,
        Emulator(EmulatorConfig(seed=None, webhook_debounce_seconds=1.0)) as emu,
    ):
        storage, proxies = proxied(azurite)
        for name in QUEUE_NAMES:  # provisioned by Bicep in Azure
            QueueClient.from_connection_string(azurite.connection_string, name).create_queue()
        started = time.monotonic()
        connections = build_tenants(emu, args.environments, args.companies, args.declare == "table")
        print(
            f"  emulator: {len(connections)} companies in {args.environments} environments "
            f"built in {time.monotonic() - started:.1f}s",
            flush=True,
        )
        queues = [
            QueueClient.from_connection_string(azurite.connection_string, q)
            for q in (QUEUE_CONNECTION_WORK, QUEUE_NOTIFICATIONS)
        ]
        few = connections[: args.baseline]
        r["baseline"] = baseline_memory(storage, emu, few, log_dir, queues)
        print(f"  one instance with {len(few)} connections: peak {r['baseline']['peak']:.0f} MiB, "
              f"resident {r['baseline']['rss']:.0f} MiB", flush=True)
        env = environment(storage, emu, connections, args.declare)
        if args.declare == "table":
            seconds = declare_in_table(storage, connections)
            print(f"  {len(connections)} connections declared in the connection table in {seconds:.1f}s",
                  flush=True)
        work = work_queue(env)
        cluster = HostCluster(args.hosts, env, log_dir)
        entra_before = Counter(emu.entra.calls)
        # Cold start: the warm-up's first run is queued before the instances start; from process
        # start to serving (`/api/health`), and to the first unit done (settings of every connection
        # read, storage, a token, BC).
        r["enqueue_seconds"]["pull"] = timed(work.enqueue, "pull")
        since, started = datetime.now(), time.monotonic()
        for host in cluster.hosts:
            host.start()
        ready = []
        for host in cluster.hosts:
            host.wait_ready(600)
            ready.append(time.monotonic() - started)
        cluster.front.start()
        r["cold_start"] = max(ready)
        r["first_unit"] = first_unit_done(log_dir, since, 600)
        r["runtime_ready"] = max((float(m) for log in log_dir.glob("host-*.log")
                                  for m in re.findall(r"runtime ready in ([0-9.]+) s", log.read_text())),
                                 default=float("nan"))
        print(
            f"  cold start ({args.hosts} instances at once, {len(connections)} connections): serving after "
            f"{r['cold_start']:.1f}s, first unit done after {r['first_unit']:.1f}s",
            flush=True,
        )
        try:
            started = time.monotonic()
            settle(emu, queues, 3600)
            for task in ("renewal", "sweep"):  # warm-up: subscriptions, sweep baselines
                r["enqueue_seconds"][task] = timed(work.enqueue, task)
                settle(emu, queues, 3600)
            r["warm_up"] = time.monotonic() - started
            r["entra"] = Counter(emu.entra.calls) - entra_before
            print(
                f"  warm-up (first pull, subscribe, sweep baseline): {r['warm_up']:.0f}s; Entra: "
                + ", ".join(f"{k} {v}" for k, v in sorted(r["entra"].items())),
                flush=True,
            )
            hour_began = datetime.now()
            emu.clear_requests()
            for p in proxies.values():
                p.reset()
            started = time.monotonic()
            for _, task in HOUR:  # BC's clock is left alone: the connector's cursors start passes
                seconds = timed(work.enqueue, task)  # on its own clock, and a BC ahead of it reads as changes
                r["enqueue_seconds"][task] = max(seconds, r["enqueue_seconds"].get(task, 0.0))
                settle(emu, queues, 3600)
            r["hour_seconds"] = time.monotonic() - started
            bc = [q for q in emu.requests if q.principal is not None]
            (log_dir / "bc-hour.txt").write_text("\n".join(f"{q.method} {q.path}" for q in bc))
            time.sleep(FLUSH_SECONDS)  # the last units' activity counts, flushed once a minute, are theirs
            hour = {s: p.reset() for s, p in proxies.items()}
            time.sleep(args.quiet)  # nothing to do: what idle instances cost (queue polling)
            quiet = {s: p.reset() for s, p in proxies.items()}
            unit_waits = waits(log_dir, hour_began)
            subs = Counter(
                (s["tenant"], s["environment"])
                for s in requests.get(
                    f"{emu.url}/_emulator/bc/subscriptions", verify=emu.ca_bundle, timeout=60
                ).json()["value"]
            )
            pids = [h._process.pid for h in cluster.hosts if h._process is not None]
            r["memory_mib"] = [peak_mib(p) for p in pids]
            r["rss_mib"] = [rss_mib(p) for p in pids]
            pages = max(1, -(-len(connections) // 50))
            r["status_page"] = status_in_browser([h.url for h in cluster.hosts], sorted({1, pages}) + [1])
            r["sample"] = end_to_end(emu, azurite, connections[: args.sample], log_dir)
        finally:
            cluster.stop()
            for p in proxies.values():
                p.stop()
    companies = len(connections)
    work_tx = sum(c for c, _ in hour.values())
    poll_per_hour = sum(c for c, _ in quiet.values()) / args.quiet * 3600
    base = r["baseline"]
    return r | {
        "companies": companies,
        "environments": args.environments,
        "hosts": args.hosts,
        "bc": len(bc),
        "bc_per_company_hour": len(bc) / companies,
        "bc_by_kind": Counter(kind(q.method, q.path) for q in bc),
        "storage_work_per_company_hour": work_tx / companies,
        "storage_by_service": {s: c for s, (c, _) in hour.items()},
        "storage_polling_per_hour": poll_per_hour,
        "quiet_by_service": {s: (c / args.quiet * 3600, polls / args.quiet * 3600)
                             for s, (c, polls) in quiet.items()},
        "storage_per_company_hour": (work_tx + poll_per_hour) / companies,
        "max_wait": max(unit_waits, default=float("nan")),
        "units": len(unit_waits),
        "subs_max": max(subs.values(), default=0),
        "subs_envs": len(subs),
        "kib_per_connection": per_connection_kib(log_dir, r["rss_mib"], base),
    }


def per_connection_kib(log_dir: Path, rss: list[float], base: dict[str, float]) -> float:
    """Resident memory each connection adds to an instance: (an instance's resident set − the
    few-connection instance's) / (the connections it ran units of − the few), averaged."""
    found = []
    for n, mib in enumerate(rss):
        text = (log_dir / f"host-{n}.log").read_text(errors="replace")
        served = len(set(re.findall(r"work unit \w+ (\S+): waited", text)))
        if served > base["connections"]:
            found.append((mib - base["rss"]) * 1024 / (served - base["connections"]))
    return sum(found) / len(found) if found else float("nan")


def kind(method: str, path: str) -> str:
    """A BC request's kind for the breakdown: method + last entity set."""
    tail = re.sub(r"\(.*?\)", "", path.split("?")[0]).rstrip("/").rsplit("/", 1)[-1]
    return f"{method} {tail}"


def received(queue: Any) -> list[Any]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(queue.receive_messages(messages_per_page=32, max_messages=32))
    except ResourceNotFoundError:  # nothing sent to it yet
        return []


def end_to_end(emu: Any, azurite: Any, sample: list[dict[str, Any]], log_dir: Path) -> dict[str, int]:
    """A created item and a sales order for each sampled company (the demo-seeded tenant)."""
    from azure.storage.queue import QueueClient

    from connector.settings import QUEUE_ITEMS, QUEUE_SALES_ORDER_RESULTS, QUEUE_SALES_ORDERS

    items = QueueClient.from_connection_string(azurite.connection_string, QUEUE_ITEMS)
    orders = QueueClient.from_connection_string(azurite.connection_string, QUEUE_SALES_ORDERS)
    results = QueueClient.from_connection_string(azurite.connection_string, QUEUE_SALES_ORDER_RESULTS)
    while batch := received(items):  # the warm-up's first pull
        for message in batch:
            items.delete_message(message)
    seen = []
    for c in sample:
        base = f"{emu.url}/_emulator/bc/{c['tenant']}/{c['environment']}/{c['company']}"
        requests.post(
            f"{base}/items",
            json={"number": f"SCALE-{c['name'].upper()}", "displayName": "Scale"},
            verify=emu.ca_bundle,
            timeout=60,
        ).raise_for_status()
        orders.send_message(
            json.dumps(
                {
                    "connection": c["name"],
                    "orderDate": "2023-09-01",
                    "customerNumber": "GL00000008",
                    "externalDocumentNumber": f"S-{c['name']}",
                    "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 1}],
                }
            )
        )
    requests.post(f"{emu.url}/_emulator/bc/webhooks/flush", verify=emu.ca_bundle, timeout=60)
    wanted_items = {f"SCALE-{c['name'].upper()}" for c in sample}
    wanted_orders = {f"S-{c['name']}" for c in sample}
    created: Counter[str] = Counter()
    deadline = time.monotonic() + 120
    while (wanted_items or wanted_orders) and time.monotonic() < deadline:
        for message in received(items):
            seen.append(message.content)
            wanted_items -= {w for w in wanted_items if f'"{w}"' in message.content}
            items.delete_message(message)
        for message in received(results):
            result = json.loads(message.content)
            if result.get("externalDocumentNumber") in wanted_orders:
                wanted_orders.discard(result["externalDocumentNumber"])
                created[result.get("status", "?")] += 1
            results.delete_message(message)
        time.sleep(0.5)
    (log_dir / "items-events.txt").write_text("\n".join(seen))
    return {
        "companies": len(sample),
        "items_announced": len(sample) - len(wanted_items),
        "orders_created": created.get("created", 0),
        "orders_other": sum(created.values()) - created.get("created", 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--environments", type=int, default=100)
    parser.add_argument("--companies", type=int, default=10, help="companies per environment")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument(
        "--sample", type=int, default=SAMPLE, help="companies with orders and items end to end"
    )
    parser.add_argument("--declare", choices=("settings", "table"), default="settings",
                        help="connections as app settings (NAME__BC_*) or rows of the connection table")
    parser.add_argument("--baseline", type=int, default=5,
                        help="connections of the one-instance run memory per connection is measured against")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of idle polling measured")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the proxies' request lines
    print(
        f"  load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (figures are pessimistic on a "
        "shared machine)",
        flush=True,
    )
    with LoadSampler() as load:
        r = run(args)
    memory = ", ".join(f"{m:.0f}" for m in r["memory_mib"])
    sample = r["sample"]
    print(f"  simulated hour ran in {r['hour_seconds']:.0f}s real time; {r['units']} units; timer burst "
          "(queueing one unit per connection): "
          + ", ".join(f"{t} {s:.1f}s" for t, s in r["enqueue_seconds"].items()))
    print(
        f"  idle BC requests per company-hour: {r['bc_per_company_hour']:.1f} "
        f"(target ≤ {TARGET_BC_PER_COMPANY_HOUR:g}; "
        f"{r['bc']} for {r['companies']} companies)"
    )
    print("    by kind: " + ", ".join(f"{k} {v}" for k, v in r["bc_by_kind"].most_common()))
    print(
        f"  storage transactions per company-hour: {r['storage_per_company_hour']:.1f} "
        f"(units' work {r['storage_work_per_company_hour']:.1f}: "
        + ", ".join(f"{s} {c}" for s, c in r["storage_by_service"].items())
        + f"; idle instances {r['storage_polling_per_hour']:.0f}/hour for the deployment: "
        + ", ".join(f"{s} {c:.0f} ({p:.0f} Get Messages)" for s, (c, p) in r["quiet_by_service"].items())
        + ")"
    )
    print(f"  longest wait of a unit for its turn: {r['max_wait']:.1f}s (target ≤ {TARGET_WAIT_SECONDS:g}s)")
    print(
        f"  subscriptions per environment: at most {r['subs_max']} of 200 ({r['subs_envs']} environments; "
        f"target ≤ {TARGET_SUBSCRIPTION_SHARE:.0%})"
    )
    base = r["baseline"]
    print(
        f"  memory per instance: peak {memory} MiB, resident {', '.join(f'{m:.0f}' for m in r['rss_mib'])} "
        f"MiB; with {base['connections']:.0f} connections {base['peak']:.0f} MiB peak, {base['rss']:.0f} "
        f"resident; per connection {r['kib_per_connection']:.0f} KiB"
    )
    print(
        f"  cold start: serving after {r['cold_start']:.1f}s, first unit done after {r['first_unit']:.1f}s "
        f"(target ≤ {TARGET_COLD_START_SECONDS:g}s; the runtime with every connection built in "
        f"{r['runtime_ready']:.2f}s)"
    )
    entra = r["entra"]
    print(f"  Entra during the warm-up: {entra.get('token', 0)} token requests, {entra.get('discovery', 0)} "
          f"discovery reads for {r['companies']} connections on {r['hosts']} instances")
    paint = [p["paint"] for p in r["status_page"] if not p["first"]]
    pages = "; ".join(
        f"{'first view: ' if p['first'] else ''}page {p['page']} ({p['shown']} shown) {p['response']:.0f} / "
        f"{p['paint'] or float('nan'):.0f} / {p['dom']:.0f}" for p in r["status_page"])
    print("  status page in Chromium, each instance (ms from navigation start: response, first paint, DOM "
          f"ready): {pages} (first paint target ≤ {TARGET_STATUS_PAINT_MS:g} after an instance's first view)")
    print(
        f"  end to end ({sample['companies']} companies): {sample['items_announced']} created items "
        "announced, "
        f"{sample['orders_created']} orders created ({sample['orders_other']} other results)"
    )
    print(f"  logs: {r['log_dir']}")
    print(f"  load average during the run: {load.summary()}", flush=True)
    missed = []
    if r["bc_per_company_hour"] > TARGET_BC_PER_COMPANY_HOUR:
        missed.append("idle BC requests")
    if r["subs_max"] > 200 * TARGET_SUBSCRIPTION_SHARE:
        missed.append("subscriptions per environment")
    if not r["max_wait"] <= TARGET_WAIT_SECONDS:
        missed.append("wait for a turn")
    if max(r["cold_start"], r["first_unit"]) > TARGET_COLD_START_SECONDS:
        missed.append("cold start")
    if not all(p is not None and p <= TARGET_STATUS_PAINT_MS for p in paint):
        missed.append("status page")
    if sample["items_announced"] < sample["companies"] or sample["orders_created"] < sample["companies"]:
        missed.append("end to end")
    print(f"scale: {'targets met' if not missed else 'MISSED: ' + ', '.join(missed)}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
