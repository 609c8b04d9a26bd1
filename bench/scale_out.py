"""Benchmark of scale-out: several app instances (host processes) sharing one BC principal.

N orders of 1–5 lines go on `sales-orders`; the real app runs in `--hosts` `python -m
devtools.localhost` processes on one Azurite and one BC emulator with a fixed latency per request,
which answers 429 at once to any request beyond the 5th in flight for the principal (no queueing),
so overshoot is counted directly in its request log. Three runs, side by side: the instances with
the shared budget, one instance, and the instances each keeping its own budget (before issue 13).

Bound: 5 requests in flight at L seconds each is 5/L requests/s for the principal; an order costing
R successful requests cannot go faster than 5/(L·R) orders/s. Orders/s is measured over the span of
the run's BC requests (emulator log), so queueing the orders and the hosts' polling are left out.
Targets (shared budget, --hosts instances): overshoot 429s ≤ 1 % of BC requests, 0 lost, 0
duplicated, orders/s ≥ 80 % of the bound.

    python -m bench.scale_out [--orders 300] [--hosts 3] [--latency-ms 150]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.sales_orders import LINES, connector_environment, emulator_orders, order_message, take_results

BC_CONCURRENCY = 5
TARGET_OVERSHOOT = 0.01
TARGET_BOUND_SHARE = 0.8


def order(key: str, n: int) -> str:
    """An order of 1 to 5 lines (the n-th of the run)."""
    body = json.loads(order_message(key))
    body["salesOrderLines"] = LINES[: 1 + n % len(LINES)]
    return json.dumps(body)


def run(emulator: Any, azurite: Any, hosts: int, orders: int, shared: bool, log_dir: Path) -> dict[str, Any]:
    """Serve `orders` with `hosts` instances; count results, BC orders, requests and overshoot."""
    from azure.storage.queue import QueueClient

    from connector.settings import QUEUE_SALES_ORDER_RESULTS, QUEUE_SALES_ORDERS
    from devtools.localhost.cluster import HostCluster

    env = connector_environment(azurite, emulator) | {"BC_SHARED_BUDGET": str(shared).lower()}
    queue = QueueClient.from_connection_string(azurite.connection_string, QUEUE_SALES_ORDERS)
    results = QueueClient.from_connection_string(azurite.connection_string, QUEUE_SALES_ORDER_RESULTS)
    run_id = uuid.uuid4().hex[:6]
    with HostCluster(hosts, env, log_dir / f"{run_id}-{hosts}-{'shared' if shared else 'own'}"):
        warm = {f"W-{run_id}-{n}" for n in range(4 * hosts)}  # every instance has its token,
        for key in warm:                                         # company and variants cached
            queue.send_message(order(key, 0))
        wait_results(results, warm, 180)
        keys = [f"S-{run_id}-{n:05d}" for n in range(orders)]
        emulator.clear_requests()
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: queue.send_message(order(keys[n], n)), range(orders)))
        statuses = wait_results(results, set(keys), max(600.0, orders * 2.0))
        elapsed = time.perf_counter() - started
    logged = [r for r in emulator.requests if r.principal is not None and "/companies(" in r.path]
    wanted = set(keys)
    created = Counter(o["externalDocumentNumber"] for o in emulator_orders(emulator)
                      if o["externalDocumentNumber"] in wanted)
    refused = sum(1 for r in logged if r.status == 429)
    return {"hosts": hosts, "shared": shared, "orders": orders, "seconds": elapsed,
            "bc_seconds": (max(r.time for r in logged) - min(r.time for r in logged)).total_seconds(),
            "statuses": dict(statuses), "requests": len(logged), "overshoot": refused,
            "max_in_flight": max((r.in_flight for r in logged), default=0),
            "lost": sum(1 for k in keys if created[k] == 0),
            "duplicated": sum(1 for k in keys if created[k] > 1)}


def wait_results(results: Any, keys: set[str], timeout: float) -> Counter[str]:
    """Take results off the queue until every key has one; their statuses (TimeoutError if not)."""
    statuses, _ = take_results(results, keys, timeout)
    if sum(statuses.values()) < len(keys):
        missing = len(keys) - sum(statuses.values())
        raise TimeoutError(f"{missing} order(s) without a result after {timeout:g}s")
    return statuses


def figures(r: dict[str, Any], latency: float) -> dict[str, Any]:
    """Rates, the bound and the shares for one run."""
    served = r["requests"] - r["overshoot"]
    per_order = served / r["orders"]
    bound = BC_CONCURRENCY / latency / per_order
    rate = r["orders"] / r["bc_seconds"]
    return r | {"per_order": per_order, "rate": rate, "bound": bound, "of_bound": rate / bound,
                "overshoot_share": r["overshoot"] / max(1, r["requests"])}


def table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    rows = [
        ("instances", lambda f: f"{f['hosts']}"),
        ("BC budget", lambda f: "shared" if f["shared"] else "per instance"),
        ("orders", lambda f: f"{f['orders']}"),
        ("seconds (queued to last result)", lambda f: f"{f['seconds']:.1f}"),
        ("seconds at BC (first to last request)", lambda f: f"{f['bc_seconds']:.1f}"),
        ("orders/s at BC", lambda f: f"{f['rate']:.1f}"),
        ("bound orders/s", lambda f: f"{f['bound']:.1f}"),
        ("of the bound", lambda f: f"{f['of_bound']:.0%}"),
        ("BC requests", lambda f: f"{f['requests']}"),
        ("requests/order (served)", lambda f: f"{f['per_order']:.2f}"),
        ("overshoot 429s", lambda f: f"{f['overshoot']} ({f['overshoot_share']:.1%})"),
        ("most in flight at BC", lambda f: f"{f['max_in_flight']}"),
        ("lost / duplicated", lambda f: f"{f['lost']} / {f['duplicated']}"),
        ("results", lambda f: ", ".join(f"{k} {v}" for k, v in sorted(f["statuses"].items()))),
    ]
    width = max(len(name) for name, _ in rows)
    cols = [max(len(title), *(len(show(f)) for _, show in rows)) for title, f in runs]
    lines = ["  ".join([" " * width] + [t.rjust(c) for (t, _), c in zip(runs, cols, strict=True)])]
    for name, show in rows:
        cells = [show(f).rjust(c) for (_, f), c in zip(runs, cols, strict=True)]
        lines.append("  ".join([name.ljust(width), *cells]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=3, help="instances of the scaled-out runs")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="emulator latency per BC request")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000

    from devtools.azurite import Azurite, provision
    from devtools.emulator import Emulator, EmulatorConfig

    print(f"{args.orders} orders x 1-5 lines, BC latency {args.latency_ms:g} ms, BC answers 429 at once "
          f"beyond {BC_CONCURRENCY} in flight per principal", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, \
            Azurite(in_memory=True) as azurite, \
            Emulator(EmulatorConfig(latency_seconds=latency, reject_over_concurrency=True,
                                    webhook_debounce_seconds=0.2)) as emulator:
        os.environ.pop("BC_SHARED_BUDGET", None)
        provision(azurite.connection_string)
        plan = [(f"{args.hosts} shared", args.hosts, True), ("1 instance", 1, True),
                (f"{args.hosts} own (before)", args.hosts, False)]
        runs = []
        for title, hosts, shared in plan:
            print(f"running: {title} ...", flush=True)
            runs.append((title, figures(run(emulator, azurite, hosts, args.orders, shared, Path(tmp)),
                                        latency)))
    print(table(runs))
    scaled = runs[0][1]
    checks = {
        f"overshoot <= {TARGET_OVERSHOOT:.0%}": scaled["overshoot_share"] <= TARGET_OVERSHOOT,
        "0 lost, 0 duplicated": scaled["lost"] == 0 and scaled["duplicated"] == 0,
        f"orders/s >= {TARGET_BOUND_SHARE:.0%} of the bound": scaled["of_bound"] >= TARGET_BOUND_SHARE,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name} ({args.hosts} instances, shared budget)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
