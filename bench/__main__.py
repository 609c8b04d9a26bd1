"""`make bench`: run every benchmark in turn (`python -m bench [name ...]`)."""
from __future__ import annotations

import importlib
import sys
import time

BENCHES = ("emulator", "items_pull", "sales_orders", "scale_out", "webhooks")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    failed = 0
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        rc = importlib.import_module(f"bench.{name}").main([])
        print(f"=== bench.{name}: exit {rc} in {time.monotonic() - started:.1f}s ===", flush=True)
        failed += bool(rc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
