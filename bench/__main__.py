"""`make bench`: run every benchmark in turn (`python -m bench [--large] [name ...] [options]`, the
options passed to the named ones, e.g. `scale --declare table`), each printing its figures as they
come, then one summary line; exit 1 when any target was missed.

Default sizes finish in under 10 minutes here; `--large` adds the 100,000-item pull (memory flat).

The app runs in processes of its own, as in Azure (a local host, or a child running the pull), and
Azurite in memory
(`--inMemoryPersistence`): on disk, Azurite saves its whole table database every few seconds on its
one event loop, stalling every storage call for tens of milliseconds, a pause Azure Storage does not
have (it made the webhook ack's p99 85 ms where it is 48 ms in memory, on the same run's machine).
The 100,000-item pull keeps Azurite on disk: in memory it slows to a crawl as one queue grows that far.
Each benchmark runs in a Python process of its own (`python -m bench.<name>`): one run's leftovers
(threads, a large heap and its collections) do not weigh on the next one's measurements.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCHES = ("cold_start", "emulator", "webhooks", "items_pull", "sales_orders", "scale_out", "scale")
LARGE = {"items_pull": ["--sizes", "1000,100000"]}
# `make bench` (every benchmark): the scale bench at a smaller size; `python -m bench scale` is full size
SMALL = {"scale": ["--environments", "4", "--companies", "5", "--hosts", "2"]}


ROOT = Path(__file__).resolve().parents[1]


def in_child(name: str, args: list[str]) -> int:
    """Run `bench.<name>` in a Python process of its own; its exit code."""
    return subprocess.call([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT)


def in_process(name: str, args: list[str]) -> int:
    """Run `bench.<name>` in this process (tests)."""
    return int(importlib.import_module(f"bench.{name}").main(args))


def main(argv: list[str], run: Callable[[str, list[str]], int] = in_child) -> int:
    large = "--large" in argv
    given = [a for a in argv if a != "--large"]
    cut = next((i for i, a in enumerate(given) if a.startswith("-")), len(given))
    named, options = given[:cut], given[cut:]  # `scale --declare table`: options for the named ones
    names = named or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    outcomes: dict[str, str] = {}
    started_all = time.monotonic()
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        try:
            args = options or (LARGE.get(name, []) if large else [] if named else SMALL.get(name, []))
            rc = run(name, args)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
            rc = 1
        outcomes[name] = "met" if rc == 0 else "MISSED"
        print(f"=== bench.{name}: targets {outcomes[name].lower()} in {time.monotonic() - started:.0f}s ===",
              flush=True)
    missed = [n for n, o in outcomes.items() if o != "met"]
    summary = ", ".join(f"{n} {o}" for n, o in outcomes.items())
    verdict = "all targets met" if not missed else f"TARGETS MISSED in {', '.join(missed)}"
    print(f"\nbench: {verdict} ({summary}) in {time.monotonic() - started_all:.0f}s", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
