"""Benchmark of Send Created Sales Order against the BC emulator (fixed per-request latency) and Azurite.

N orders of 5 lines each (items, variants by code, a G/L line), each with its own
externalDocumentNumber, go on `sales-orders`; the real function app, served by the local host (its
own process, host.json's queue semantics), turns them into BC orders. The emulator counts the BC
requests. The naive way — check the key, POST the header, then POST each line — runs for real on a
smaller sample through the same BC client (same budget), with as many workers as the host runs
invocations; so does "BC alone", the connector's two requests with no queue, claims or results (what
the emulator on this machine allows, beside the theoretical bound).

Bounds: with BC's 5 concurrent requests per user at L seconds each, at most 5/L requests per second
go through, so an order costing R requests cannot go faster than 5/(L·R) orders per second.

Fails (exit 1) unless every key has exactly one BC order and one result, at most 2 BC requests per
order, and the steady rate reaches 90 % of the bound.

    python -m bench.sales_orders [--orders 400] [--naive-orders 40] [--latency-ms 100]
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

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
LINES = [
    {"itemNumber": "1896-S", "quantity": 2},
    {"itemNumber": "1908-S", "variantCode": "BLUE", "quantity": 1},
    {"itemNumber": "1920-S", "variantCode": "OAK", "quantity": 1},
    {"itemNumber": "1928-S", "variantCode": "WHITE", "quantity": 4},
    {"lineType": "Account", "lineObjectNumber": "6810", "description": "Freight", "quantity": 1,
     "unitPrice": 25},
]
BC_CONCURRENCY = 5
ORDER_REQUESTS = 2  # the key check and the deep-insert POST
RATE_TARGET = 0.9  # of the bound


def order_message(key: str) -> str:
    return json.dumps({"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP",
                       "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668",
                       "externalDocumentNumber": key, "salesOrderLines": LINES})


def connector_environment(azurite: Any, emulator: Any) -> dict[str, str]:
    """App settings pointing the connector at this Azurite and emulator; other timers kept quiet."""
    from connector.settings import SETTINGS

    quiet = {s.name: "0 0 0 1 1 *" for s in SETTINGS if s.name.endswith("_SCHEDULE")}
    return quiet | {
        "AzureWebJobsStorage": azurite.connection_string, "BC_CONNECTIONS": "default",
        "BC_TENANT": "lmints.io", "BC_ENVIRONMENT": "production", "BC_CLIENT_ID": CLIENT_ID,
        "BC_CLIENT_SECRET": "emulator-secret", "BC_GRANT_TYPE": "client_credentials",
        "ENTRA_AUTHORITY_HOST": emulator.url, "BC_API_HOST": emulator.url,
        "TLS_CA_BUNDLE": emulator.ca_bundle,
        "TOKEN_ENCRYPTION_KEY": "q2Vv1ZB7dVHt3K3b8f3mYbTq8Ynq5m4mJc2xw8tqYk0=",  # a throw-away key
    }


def order_requests(emulator: Any) -> list[Any]:
    """BC requests inside a company (company discovery and sign-in left out)."""
    return [r for r in emulator.requests if "/companies(" in r.path]


def emulator_orders(emulator: Any) -> list[dict[str, Any]]:
    """Every sales order of the default company, from the emulator's admin API."""
    import requests

    url = f"{emulator.url}/_emulator/bc/lmints.io/production/CRONUS UK Ltd./salesOrders"
    resp = requests.get(url, verify=emulator.ca_bundle, timeout=60)
    resp.raise_for_status()
    return resp.json()["value"]


def run_connector(emulator: Any, orders: int, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """Queue `orders` messages, serve them with the real app on a local host in its own process (as
    in Azure: the host does not share a GIL with the emulator), and time the results as they come.
    The rate is the steady one, between the first tenth of the results and the last (start-up and
    the host's first poll left out)."""
    from azure.storage.queue import QueueClient

    from connector.settings import QUEUE_SALES_ORDER_RESULTS, QUEUE_SALES_ORDERS
    from devtools.localhost.cluster import HostProcess

    run = uuid.uuid4().hex[:8]
    keys = [f"B-{run}-{n:05d}" for n in range(orders)]
    connection = env["AzureWebJobsStorage"]
    queue = QueueClient.from_connection_string(connection, QUEUE_SALES_ORDERS)
    results = QueueClient.from_connection_string(connection, QUEUE_SALES_ORDER_RESULTS)
    for client in (queue, results):
        try:
            client.create_queue()
        except Exception:  # noqa: BLE001 - already there
            pass
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: queue.send_message(order_message(key)), keys))
    emulator.clear_requests()
    host = HostProcess(env, log_dir / "host.log").start()
    statuses: Counter[str] = Counter()
    arrivals: list[float] = []
    started = time.perf_counter()
    try:
        deadline = started + max(600.0, orders)
        while len(arrivals) < orders and time.perf_counter() < deadline:
            batch = list(results.receive_messages(messages_per_page=32, max_messages=32))
            now = time.perf_counter()
            for message in batch:
                statuses[json.loads(message.content)["status"]] += 1
                arrivals.append(now)
                results.delete_message(message)
            if not batch:
                time.sleep(0.02)
    finally:
        host.stop()
    warm = len(arrivals) // 10
    steady = (len(arrivals) - 1 - warm) / (arrivals[-1] - arrivals[warm]) if len(arrivals) > warm + 1 else 0.0
    wanted = set(keys)
    created = Counter(o["externalDocumentNumber"] for o in emulator_orders(emulator)
                      if o["externalDocumentNumber"] in wanted)
    logged = order_requests(emulator)
    return {"orders": orders, "seconds": (arrivals[-1] - started) if arrivals else 0.0, "rate": steady,
            "requests": len(logged), "statuses": dict(statuses), "bc_orders": sum(created.values()),
            "keys_with_two_orders": sum(1 for c in created.values() if c > 1),
            "throttled": sum(1 for r in logged if r.status == 429),
            "max_in_flight": max((r.in_flight for r in logged), default=0)}


def run_direct(emulator: Any, orders: int, workers: int, naive: bool) -> dict[str, Any]:
    """Orders straight through the same BC client and budget, no queue, claims or results: the
    connector's two requests (key check, deep insert) — what BC alone allows on this machine — or,
    `naive`, the key check, a header POST and one POST per line."""
    from connector.orders.schema import parse_order
    from connector.orders.send import deep_insert_body, find_order
    from connector.orders.variants import variant_wanted
    from connector.runtime import get_runtime

    runtime = get_runtime()
    bc = runtime.bc()
    company_id = runtime.company_id()
    sample = parse_order(order_message("sample"))
    variant_ids = runtime.item_variants.resolve(bc, company_id, variant_wanted(sample.salesOrderLines))
    run = uuid.uuid4().hex[:8]
    orders_path = bc.company_path(company_id, "salesOrders")

    def create(n: int) -> None:
        key = f"{'N' if naive else 'D'}-{run}-{n:05d}"
        body = deep_insert_body(parse_order(order_message(key)), variant_ids)
        if find_order(bc, company_id, key) is not None:
            return
        if not naive:
            bc.post(orders_path, body, {"$expand": "salesOrderLines"})
            return
        lines = body.pop("salesOrderLines")
        header = bc.post(orders_path, body)
        for line in lines:
            bc.post(bc.company_path(company_id, f"salesOrders({header['id']})/salesOrderLines"), line)

    emulator.clear_requests()
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(orders)))
    elapsed = time.perf_counter() - started
    logged = order_requests(emulator)
    return {"orders": orders, "seconds": elapsed, "requests": len(logged),
            "throttled": sum(1 for r in logged if r.status == 429)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sales_orders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=400, help="orders through the connector")
    parser.add_argument("--naive-orders", type=int, default=None,
                        help="orders the naive way (default: a tenth of --orders, at least 20)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="emulator latency per BC request")
    args = parser.parse_args(argv)
    naive_orders = args.naive_orders or max(20, args.orders // 10)
    latency = args.latency_ms / 1000

    from connector.runtime import reset_runtime
    from devtools.azurite import Azurite
    from devtools.emulator import Emulator, EmulatorConfig
    from devtools.localhost.config import HostConfig

    queue_options = HostConfig.load(ROOT / "host.json").queues
    workers = queue_options.batch_size + queue_options.new_batch_threshold
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp, \
            Azurite(in_memory=True) as azurite, \
            Emulator(EmulatorConfig(latency_seconds=latency, webhook_debounce_seconds=0.2)) as emulator:
        env = connector_environment(azurite, emulator)
        os.environ.update(env)
        reset_runtime()
        print(f"{args.orders} orders x {len(LINES)} lines, emulator latency {args.latency_ms:g} ms, "
              f"host (own process) runs up to {workers} at once, BC {BC_CONCURRENCY} requests at once",
              flush=True)
        ours = run_connector(emulator, args.orders, dict(os.environ), Path(tmp))
        naive = run_direct(emulator, naive_orders, workers, naive=True)
        direct = run_direct(emulator, naive_orders, workers, naive=False)
        reset_runtime()

    per_order = ours["requests"] / ours["orders"]
    naive_per_order = naive["requests"] / naive["orders"]
    rate = ours["rate"]
    naive_rate = naive["orders"] / naive["seconds"]
    bound = BC_CONCURRENCY / (latency * ORDER_REQUESTS)
    share = rate / bound
    print(f"connector: {ours['orders']} orders, last result after {ours['seconds']:.1f}s, steady "
          f"{rate:.1f} orders/s; results {ours['statuses']}; BC orders {ours['bc_orders']}, keys with two "
          f"orders {ours['keys_with_two_orders']}")
    print(f"  BC requests per order: {per_order:.2f} (target <= {ORDER_REQUESTS}); "
          f"429s: {ours['throttled']}; "
          f"most BC requests in flight: {ours['max_in_flight']}")
    print(f"  bound: {BC_CONCURRENCY} concurrent / ({ORDER_REQUESTS} requests x {args.latency_ms:g} ms) = "
          f"{bound:.1f} orders/s; reached {share:.0%} (target >= {RATE_TARGET:.0%})")
    direct_rate = direct["orders"] / direct["seconds"]
    print(f"  BC alone (the same 2 requests straight from {workers} threads, no queue, claims or results): "
          f"{direct_rate:.1f} orders/s = {direct_rate / bound:.0%} of the bound; the connector reached "
          f"{rate / direct_rate:.0%} of it")
    print(f"naive (key check, header POST, one POST per line): {naive['orders']} orders in "
          f"{naive['seconds']:.1f}s = {naive_rate:.1f} orders/s; BC requests per order "
          f"{naive_per_order:.2f}; 429s: {naive['throttled']}")
    print(f"ratio: {naive_per_order / per_order:.1f}x fewer BC requests per order, "
          f"{rate / naive_rate:.1f}x the orders/s")
    misses = []
    if ours["bc_orders"] != ours["orders"] or ours["keys_with_two_orders"]:
        misses.append(f"{ours['bc_orders']} BC orders for {ours['orders']} keys "
                      f"({ours['keys_with_two_orders']} keys with two)")
    if sum(ours["statuses"].values()) != ours["orders"]:
        misses.append(f"{sum(ours['statuses'].values())} results for {ours['orders']} orders")
    if per_order > ORDER_REQUESTS + 0.05:
        misses.append(f"{per_order:.2f} BC requests per order")
    if share < RATE_TARGET:
        misses.append(f"{share:.0%} of the bound")
    for miss in misses:
        print(f"  MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
