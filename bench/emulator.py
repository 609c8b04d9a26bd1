"""Benchmark of the BC emulator at catalogue scale (in-process, no network): what the test suite
checks for correctness, measured here for speed.

* building 100,000 items with 3 variants each (`bulk_create_items`);
* reading the first and the last page of `items?$expand=itemVariants` (1,000 per page): the last page
  must cost about the same as the first (skiptoken paging is not quadratic);
* flushing 20,000 item and 20,000 variant changes into `collection` notifications.

Fails (exit 1) when a target is missed: build > 30 s, last page > 5 × first page (and > 0.5 s),
flush > 10 s. The targets are loose on purpose: a loaded 2-core machine must meet them.

    python -m bench.emulator [--items 100000] [--variants 3] [--changes 20000]
"""
from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devtools.emulator.bc_testing import BCClient, make_api
from devtools.emulator.seed import CRONUS_UK_ID, bulk_create_items

TENANT_ID = "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"
BUILD_TARGET_S = 30.0
FLUSH_TARGET_S = 10.0
PAGE_RATIO_TARGET = 5.0


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def catalogue(items: int, variants: int) -> list[str]:
    """Build and page the catalogue; the misses, if any."""
    api = make_api()
    company = api.store.company(TENANT_ID, "production", CRONUS_UK_ID)
    _, build = timed(lambda: bulk_create_items(api.store, company, items, variants))
    print(f"  build {items:,} items x {variants} variants        {build:8.2f} s "
          f"(target < {BUILD_TARGET_S:g})")
    bc = BCClient(api)
    prefer = {"Prefer": "odata.maxpagesize=1000"}
    first, first_s = timed(lambda: bc.get(bc.company("items?$expand=itemVariants"), headers=prefer))
    before_last = company.sets["items"].order[-1001].seq
    link = re.sub(r"\$skiptoken=\d+", f"$skiptoken={before_last}", first.json["@odata.nextLink"])
    last, last_s = timed(lambda: bc.get(link, headers=prefer))
    ratio = last_s / first_s if first_s else float("inf")
    print(f"  first page / last page                        {first_s * 1000:8.1f} / {last_s * 1000:.1f} ms "
          f"(ratio {ratio:.2f}, target < {PAGE_RATIO_TARGET:g})")
    misses = []
    if build > BUILD_TARGET_S:
        misses.append(f"build took {build:.1f} s")
    if len(last.json["value"]) != 1000 or "@odata.nextLink" in last.json:
        misses.append("the last page is not the last 1,000 items")
    if last_s > max(PAGE_RATIO_TARGET * first_s, 0.5):
        misses.append(f"the last page cost {ratio:.1f} x the first")
    return misses


def collapse(changes: int) -> list[str]:
    """Flush `changes` item and variant creations into `collection` notifications; the misses."""
    received: list[Any] = []
    server = make_server("127.0.0.1", 0, lambda env, start: _receive(env, start, received), threaded=True,
                         request_handler=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    api = make_api(webhook_debounce_seconds=3600)
    api.start()
    try:
        bc = BCClient(api)
        for entity_set in ("items", "itemVariants"):
            bc.post("subscriptions", {"notificationUrl": url,
                                      "resource": f"api/v2.0/companies({CRONUS_UK_ID})/{entity_set}"})
        company = api.store.company(TENANT_ID, "production", CRONUS_UK_ID)
        bulk_create_items(api.store, company, changes, 1)
        _, flush = timed(api.flush_webhooks)
    finally:
        api.stop()
        server.shutdown()
    kinds = sorted(v["changeType"] for body in received for v in body.get("value", []))
    print(f"  flush {2 * changes:,} changes into {len(kinds)} notification(s) {flush:8.2f} s "
          f"(target < {FLUSH_TARGET_S:g})")
    misses = []
    if kinds != ["collection", "collection"]:
        misses.append(f"expected two collection notifications, got {kinds}")
    if flush > FLUSH_TARGET_S:
        misses.append(f"flush took {flush:.1f} s")
    return misses


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _receive(environ: dict, start_response: Callable[..., Any], received: list[Any]) -> Any:
    request = Request(environ)
    token = request.args.get("validationToken")
    if token is None:
        received.append(request.get_json(silent=True) or {})
    return Response(token or "", content_type="text/plain")(environ, start_response)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20_000)
    args = parser.parse_args(argv)
    misses = catalogue(args.items, args.variants) + collapse(args.changes)
    for miss in misses:
        print(f"  MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
