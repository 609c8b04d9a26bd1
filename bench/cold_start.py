"""Benchmark of the cold start: importing `function_app` (what the host's indexing waits for) against
importing `azure.functions` alone, each in a fresh interpreter, alternately, best of N (a loaded
machine only adds noise upward). Fails (exit 1) above 2x.

    python -m bench.cold_start [--runs 7]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 2.0
TIMED_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    done = subprocess.run([sys.executable, "-c", TIMED_IMPORT.format(module=module)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    best = {"azure.functions": float("inf"), "function_app": float("inf")}
    for _ in range(args.runs):
        for module in best:
            best[module] = min(best[module], import_seconds(module))
    ratio = best["function_app"] / best["azure.functions"]
    print(f"  import azure.functions {best['azure.functions'] * 1000:7.0f} ms   import function_app "
          f"{best['function_app'] * 1000:7.0f} ms   ratio {ratio:.2f} (target <= {RATIO_TARGET:g}), "
          f"best of {args.runs}", flush=True)
    if ratio > RATIO_TARGET:
        print(f"  MISSED: importing function_app costs {ratio:.2f}x azure.functions")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
