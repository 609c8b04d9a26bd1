"""Benchmark of Schedule Pull Items against the BC emulator (fixed per-request latency) and Azurite.

For each catalogue size (items with 3 variants each, bulk-created in a fresh emulator) a child
process runs one full pull exactly as the timer does (paged `$expand=itemVariants`, events to
`bc-items` on Azurite) and reports its wall time and peak RSS growth; the emulator counts the BC
requests. A second child only reads the pages (no events): the BC emulator's ceiling. A third puts
the same messages on the queue with plain `http.client` on 16 threads, nothing of the connector: the
Azurite ceiling. A fourth publishes the same events through the connector's `EventPublisher` (no
BC), which must reach 90 % of that ceiling at <= 1 ms of CPU per event. The naive way (list the
items, then one `items({id})/itemVariants` request per item, sequentially) runs for real on the
first size (1,000 items by default); on larger sizes it is extrapolated, and said so.
Fails (exit 1) when a target is missed; each size's report prints as soon as it is measured.

    python -m bench.items_pull [--sizes 1000,10000] [--latency-ms 20] [--page-size 1000]
                               [--naive-sample 1000]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS_PER_ITEM = 3


# ----------------------------------------------------------------------------------------- child side

def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_peak_rss() -> None:
    """Start the peak-RSS count afresh (Linux `clear_refs` 5); elsewhere the peak includes start-up."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss() -> int:
    """This process's peak RSS. `VmHWM`, not `ru_maxrss`: on Linux a child's `ru_maxrss` starts at
    the parent's peak at exec — here the emulator holding every item."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(mode: str, count: int) -> dict[str, Any]:
    """Runs in a fresh process configured by the environment; returns what it measured. `count`:
    the naive way's sample, or the events the send-only mode sends."""
    from connector.items.pull import item_event
    from connector.runtime import get_runtime
    from connector.settings import QUEUE_ITEMS, TABLE_CURSORS, TABLE_LEASES

    runtime = get_runtime()
    bc = runtime.bc()
    company_id = runtime.company_id()
    conn = runtime.settings.connection("default")
    for table in (TABLE_CURSORS, TABLE_LEASES):
        runtime.storage.table(table)
    runtime.storage.queue(QUEUE_ITEMS).clear_messages()  # every mode sends to an empty queue
    page_size = runtime.settings.item_pull_page_size
    items_path = bc.company_path(company_id, "items")
    template = (next(bc.iter_pages(items_path, {"$expand": "itemVariants"}, page_size))
                if mode in ("send", "raw") else [])
    raw = _raw_messages(runtime, conn.name, company_id, template, count) if mode == "raw" else []
    baseline = _rss()
    _reset_peak_rss()
    cpu = time.process_time()
    started = time.perf_counter()
    if mode == "raw":  # the ceiling: the same messages, plain HTTP, 16 threads, nothing of the connector
        count, finished = _raw_send(runtime.storage.queue(QUEUE_ITEMS), raw), True
    elif mode == "pull":
        result = runtime.item_pull.pull_company("default", max_seconds=3600)
        count, finished = result.emitted, result.finished
    elif mode == "read":
        count, finished = 0, True
        for page in bc.iter_pages(items_path, {"$expand": "itemVariants"}, page_size):
            count += len(page)
    elif mode == "send":  # the pull's emission alone: build and publish page by page, no BC
        sent = 0
        while template and sent < count:
            page = template[:count - sent]
            sent += runtime.events.publish(QUEUE_ITEMS, [item_event(conn.name, company_id, item, True)
                                                         for item in page])
        count, finished = sent, True
    else:  # naive: list items, then one variants request per item, events as the pull sends them
        first_page = next(bc.iter_pages(items_path, None, count))
        events = []
        for item in first_page[:count]:
            path = bc.company_path(company_id, f"items({item['id']})/itemVariants")
            item["itemVariants"] = bc.get(path)["value"]
            events.append(item_event(conn.name, company_id, item, True))
        count = runtime.events.publish(QUEUE_ITEMS, events)
        finished = True
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    peak = _peak_rss()
    return {"mode": mode, "items": count, "finished": finished, "seconds": seconds, "cpu": cpu,
            "rss_baseline": baseline, "rss_growth": max(0, peak - baseline)}


RAW_THREADS = 16
IN_MEMORY_AZURITE_UP_TO = 10_000  # items (and so messages on one queue)
SEND_SHARE_TARGET = 0.9  # of the raw-HTTP ceiling
CPU_PER_EVENT_TARGET_MS = 1.0
MEMORY_GROWTH_TARGET = 30 * 2**20


def _raw_messages(runtime: Any, connection: str, company_id: str, template: list[dict[str, Any]],
                  count: int) -> list[bytes]:
    """Put Message bodies of the events the send mode publishes (built before the clock starts)."""
    from xml.sax.saxutils import escape

    from connector.events import encode
    from connector.items.pull import item_event

    bodies = []
    while template and len(bodies) < count:
        for item in template[:count - len(bodies)]:
            text = encode(runtime.telemetry.stamp(item_event(connection, company_id, item, True)))
            bodies.append(f"<?xml version='1.0' encoding='utf-8'?>\n<QueueMessage><MessageText>{escape(text)}"
                          "</MessageText></QueueMessage>".encode())
    return bodies


def _raw_send(queue: Any, bodies: list[bytes]) -> int:
    """POST every body with `http.client` on RAW_THREADS keep-alive connections (a queue SAS signed
    once): the fastest this Python can put these messages on this Azurite."""
    import http.client
    import threading
    from datetime import UTC, datetime, timedelta
    from urllib.parse import urlsplit

    from azure.storage.queue import QueueSasPermissions, generate_queue_sas

    sas = generate_queue_sas(queue.account_name, queue.queue_name, queue.credential.account_key,
                             permission=QueueSasPermissions(add=True),
                             expiry=datetime.now(UTC) + timedelta(hours=2))
    url = urlsplit(queue.url)
    path = f"{url.path}/messages?{sas}"
    headers = {"Content-Type": "application/xml; charset=utf-8", "x-ms-version": "2021-02-12"}
    sent = [0] * RAW_THREADS

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection(url.netloc, timeout=60)
        for body in bodies[index::RAW_THREADS]:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"raw send answered {response.status}")
            sent[index] += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(RAW_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sent)


# ----------------------------------------------------------------------------------------- parent side

def _environment(emulator: Any, azurite: Any, company_id: str, page_size: int) -> dict[str, str]:
    from devtools.emulator import EmulatorConfig

    client = EmulatorConfig().clients[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PULL_", "ITEM_PULL_"))}
    return env | {
        "AzureWebJobsStorage": azurite.connection_string, "BC_CONNECTIONS": "default",
        "BC_TENANT": client.tenant, "BC_ENVIRONMENT": "production", "BC_CLIENT_ID": client.client_id,
        "BC_CLIENT_SECRET": client.client_secret, "BC_GRANT_TYPE": "client_credentials",
        "BC_COMPANY": company_id, "ENTRA_AUTHORITY_HOST": emulator.url, "BC_API_HOST": emulator.url,
        "TLS_CA_BUNDLE": emulator.ca_bundle, "ITEM_PULL_PAGE_SIZE": str(page_size),
        "PULL_ITEM_VARIANTS": "true", "PYTHONPATH": str(ROOT),
    }


def _run_child(env: dict[str, str], mode: str, count: int = 0) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.items_pull", "--child", mode,
                           "--child-count", str(count)],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(size: int, latency: float, page_size: int, sample: int) -> dict[str, Any]:
    """A fresh emulator and Azurite holding `size` items; the pull, the read-only and send-only
    ceilings and, when `sample`, the naive way on the first `sample` items."""
    from devtools.azurite import Azurite
    from devtools.emulator import Emulator, EmulatorConfig
    from devtools.emulator.seed import bulk_create_items

    # Azurite in memory slows to a crawl as a queue grows far past 10,000 messages (its memory
    # store), so the large sizes keep it on disk
    with Emulator(EmulatorConfig(seed=None, latency_seconds=latency)) as emulator, \
            Azurite(in_memory=size <= IN_MEMORY_AZURITE_UP_TO) as azurite:
        tenant = emulator.config.tenants["lmints.io"]
        company = emulator.bc.store.add_company(tenant, "production", "Bench Ltd.")
        created = time.perf_counter()
        bulk_create_items(emulator.bc.store, company, size, VARIANTS_PER_ITEM)
        created = time.perf_counter() - created
        env = _environment(emulator, azurite, company.id, page_size)
        out: dict[str, Any] = {"size": size, "create_seconds": created}
        modes = [("pull", 0), ("read", 0), ("raw", size), ("send", size)] + (
            [("naive", sample)] if sample else [])
        for mode, count in modes:
            emulator.clear_requests()
            stats = _run_child(env, mode, count)
            stats["requests"] = sum(1 for r in emulator.requests if "/items" in r.path)
            out[mode] = stats
            print(f"  {mode:<5}: {stats['items']:,} in {stats['seconds']:.1f}s", flush=True)
        return out


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _report(r: dict[str, Any], latency: float, page_size: int) -> list[str]:
    """Print one size's numbers and ratios as soon as they are known; the targets it missed."""
    size, pull, read, send, raw = r["size"], r["pull"], r["read"], r["send"], r["raw"]
    pages = math.ceil(size / page_size)
    rates = {mode: r[mode]["items"] / r[mode]["seconds"] for mode in ("pull", "read", "send", "raw")}
    print(f"\n{size:,} items with {VARIANTS_PER_ITEM} variants each (bulk-created in "
          f"{r['create_seconds']:.1f}s), emulator latency {latency * 1000:.0f} ms, page size {page_size}, "
          "events to Azurite (bc-items)")
    print(f"  pull : {pull['requests']} BC requests for {pages} pages, {pull['items']:,} events in "
          f"{pull['seconds']:.1f}s = {rates['pull']:,.0f} items/s, peak RSS "
          f"{_mb(pull['rss_baseline'] + pull['rss_growth'])} (+{_mb(pull['rss_growth'])} over the idle "
          "process)")
    print(f"  read : the same pages, no events: {read['seconds']:.1f}s = {rates['read']:,.0f} items/s "
          "(BC emulator ceiling)")
    print(f"  raw  : the same {raw['items']:,} messages, plain HTTP on {RAW_THREADS} threads, nothing of the "
          f"connector: {raw['seconds']:.1f}s = {rates['raw']:,.0f} messages/s (Azurite ceiling)")
    share = rates["send"] / rates["raw"]
    cpu_ms = send["cpu"] / send["items"] * 1000
    print(f"  send : the connector's publisher, no BC: {send['seconds']:.1f}s = "
          f"{rates['send']:,.0f} events/s = {share:.0%} of raw (target >= {SEND_SHARE_TARGET:.0%}); "
          f"{cpu_ms:.2f} ms CPU per event "
          f"(target <= {CPU_PER_EVENT_TARGET_MS:g})")
    lower = "raw" if rates["raw"] < rates["read"] else "read"
    print(f"  bound: the pull runs at {rates['pull'] / rates['raw']:.0%} of the Azurite ceiling and "
          f"{rates['pull'] / rates['read']:.0%} of the BC read-only rate (the lower: {lower})")
    misses = []
    if pull["items"] != size or pull["requests"] > pages:
        misses.append(f"{size:,} items: {pull['items']:,} events from {pull['requests']} requests")
    if share < SEND_SHARE_TARGET:
        misses.append(f"{size:,} items: publishing at {share:.0%} of raw HTTP")
    if cpu_ms > CPU_PER_EVENT_TARGET_MS:
        misses.append(f"{size:,} items: {cpu_ms:.2f} ms CPU per event")
    naive = r.get("naive")
    if naive:
        naive_requests = pages + size
        measured = naive["items"] == size
        naive_seconds = naive["seconds"] / naive["items"] * size
        how = (f"measured ({naive['requests']:,} requests)" if measured else
               f"EXTRAPOLATED from the first {naive['items']:,} items ({naive['requests']:,} requests in "
               f"{naive['seconds']:.1f}s)")
        print(f"  naive: {naive_requests:,} requests, {naive_seconds:,.1f}s, {how}")
        ratio = naive_requests / max(1, pull["requests"])
        print(f"  ratio: {ratio:,.0f}x fewer requests, {naive_seconds / pull['seconds']:.1f}x less time")
        if ratio < 100:
            misses.append(f"{size:,} items: only {ratio:.0f}x fewer requests than the naive way")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.items_pull", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000",
                        help="comma-separated item counts (the first also runs the naive way; "
                             "`make bench ARGS=--large`: 1000,100000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    parser.add_argument("--page-size", type=int, default=1000, help="ITEM_PULL_PAGE_SIZE")
    parser.add_argument("--naive-sample", type=int, default=1000,
                        help="items the naive way runs on, at the first size (all of them: measured)")
    parser.add_argument("--child", choices=("pull", "read", "send", "raw", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--child-count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.child_count)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    latency = args.latency_ms / 1000
    results, misses = [], []
    for index, size in enumerate(sizes):
        sample = min(args.naive_sample, size) if index == 0 else 0
        print(f"measuring {size:,} items ...", flush=True)
        results.append(_measure(size, latency, args.page_size, sample))
        misses += _report(results[-1], latency, args.page_size)
    if len(results) > 1:
        low, high = results[0], results[-1]
        growth = high["pull"]["rss_growth"] - low["pull"]["rss_growth"]
        print(f"\npeak RSS growth at {high['size']:,} items minus at {low['size']:,}: {_mb(growth)} "
              f"(target: at most {_mb(MEMORY_GROWTH_TARGET)})")
        if growth > MEMORY_GROWTH_TARGET:
            misses.append(f"memory grew {_mb(growth)} from {low['size']:,} to {high['size']:,} items")
    for miss in misses:
        print(f"  MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
