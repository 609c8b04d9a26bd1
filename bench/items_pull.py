"""Benchmark of Schedule Pull Items against the BC emulator (fixed per-request latency) and Azurite.

For each catalogue size (items with 3 variants each, bulk-created in a fresh emulator) a child
process runs one full pull exactly as the timer does (paged `$expand=itemVariants`, events to
`bc-items` on Azurite) and reports its wall time and peak RSS growth; the emulator counts the BC
requests. A second child only reads the pages (no events): the BC emulator's ceiling. A third only
sends the same number of events (built from one page read beforehand, published page by page through
the same `EventPublisher`, no BC): the queue-send ceiling of Azurite on this machine. The report says
which of the two the pull runs against. The naive way (list the items, then one
`items({id})/itemVariants` request per item, sequentially) is measured on a sample and extrapolated
linearly to each size — said so in the output.

    python -m bench.items_pull [--sizes 10000,100000] [--latency-ms 20] [--page-size 1000]
                               [--naive-sample 500]
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
    from connector.items.pull import item_event, pull_company
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
                if mode == "send" else [])
    baseline = _rss()
    _reset_peak_rss()
    started = time.perf_counter()
    if mode == "pull":
        result = pull_company(runtime, "default", max_seconds=3600)
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
    peak = _peak_rss()
    return {"mode": mode, "items": count, "finished": finished, "seconds": seconds,
            "rss_baseline": baseline, "rss_growth": max(0, peak - baseline)}


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

    with Emulator(EmulatorConfig(seed=None, latency_seconds=latency)) as emulator, Azurite() as azurite:
        tenant = emulator.config.tenants["lmints.io"]
        company = emulator.bc.store.add_company(tenant, "production", "Bench Ltd.")
        created = time.perf_counter()
        bulk_create_items(emulator.bc.store, company, size, VARIANTS_PER_ITEM)
        created = time.perf_counter() - created
        env = _environment(emulator, azurite, company.id, page_size)
        out: dict[str, Any] = {"size": size, "create_seconds": created}
        modes = [("pull", 0), ("read", 0), ("send", size)] + ([("naive", sample)] if sample else [])
        for mode, count in modes:
            emulator.clear_requests()
            stats = _run_child(env, mode, count)
            stats["requests"] = sum(1 for r in emulator.requests if "/items" in r.path)
            out[mode] = stats
        return out


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _report(results: list[dict[str, Any]], latency: float, page_size: int) -> int:
    """Print the numbers and ratios; 1 if a target was missed (requests, memory, completeness)."""
    naive = next((r["naive"] for r in results if "naive" in r), None)
    print(f"\nitems with {VARIANTS_PER_ITEM} variants each, emulator latency {latency * 1000:.0f} ms per "
          f"request, page size {page_size}, events to Azurite (bc-items)")
    failed = False
    for r in results:
        size, pull, read = r["size"], r["pull"], r["read"]
        pages = math.ceil(size / page_size)
        print(f"\n{size:,} items (bulk-created in {r['create_seconds']:.1f}s)")
        print(f"  pull : {pull['requests']} BC requests for {pages} pages, {pull['items']:,} events in "
              f"{pull['seconds']:.1f}s = {pull['items'] / pull['seconds']:,.0f} items/s, "
              f"peak RSS {_mb(pull['rss_baseline'] + pull['rss_growth'])} "
              f"(+{_mb(pull['rss_growth'])} over the idle process)")
        rates = {mode: r[mode]["items"] / r[mode]["seconds"] for mode in ("pull", "read", "send")}
        print(f"  read : the same pages, no events: {read['seconds']:.1f}s = {rates['read']:,.0f} items/s "
              "(BC emulator ceiling)")
        print(f"  send : {r['send']['items']:,} events, same publisher, no BC: {r['send']['seconds']:.1f}s = "
              f"{rates['send']:,.0f} events/s (Azurite queue-send ceiling)")
        lower = "send" if rates["send"] < rates["read"] else "read"
        name = {"send": "sending events to Azurite (one queue message per item)",
                "read": "reading BC (the emulator)"}[lower]
        share = rates["pull"] / rates[lower]
        verdict = (f"bound by {name}" if share >= 0.8
                   else f"below both ceilings: {1 - share:.0%} short of {name}, the connector's own cost")
        print(f"  bound: the pull runs at {rates['pull'] / rates['send']:.0%} of the send ceiling and "
              f"{rates['pull'] / rates['read']:.0%} of the read-only rate: {verdict}")
        failed |= pull["items"] != size or pull["requests"] > pages
        if naive:
            naive_requests = pages + size
            naive_seconds = naive["seconds"] / naive["items"] * size
            measured = f"{naive['requests']:,} requests in {naive['seconds']:.1f}s"
            print(f"  naive: {naive_requests:,} requests, ~{naive_seconds:,.0f}s — EXTRAPOLATED from the "
                  f"first {naive['items']:,} items ({measured})")
            ratio = naive_requests / pull["requests"]
            print(f"  ratio: {ratio:,.0f}x fewer requests, {naive_seconds / pull['seconds']:.1f}x less time")
            failed |= ratio < 100
    if len(results) > 1:
        low, high = results[0], results[-1]
        growth = high["pull"]["rss_growth"] - low["pull"]["rss_growth"]
        print(f"\npeak RSS growth at {high['size']:,} items minus at {low['size']:,}: {_mb(growth)} "
              "(target: at most 30 MB)")
        failed |= growth > 30 * 2**20
    print("targets met" if not failed else "TARGETS MISSED")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.items_pull", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated item counts")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    parser.add_argument("--page-size", type=int, default=1000, help="ITEM_PULL_PAGE_SIZE")
    parser.add_argument("--naive-sample", type=int, default=500, help="items the naive way is timed on")
    parser.add_argument("--child", choices=("pull", "read", "send", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--child-count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.child_count)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    latency = args.latency_ms / 1000
    results = []
    for index, size in enumerate(sizes):
        sample = min(args.naive_sample, size) if index == 0 else 0
        print(f"measuring {size:,} items ...", flush=True)
        results.append(_measure(size, latency, args.page_size, sample))
    return _report(results, latency, args.page_size)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
