"""`make bench` runs every benchmark, reports each, and fails on any missed target (the benchmarks
themselves run in `make bench`, not here: their numbers mean nothing on a loaded test machine)."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from bench import __main__ as bench_main


@pytest.mark.parametrize("name", bench_main.BENCHES)
def test_every_benchmark_has_an_entry_point(name):
    assert callable(importlib.import_module(f"bench.{name}").main)


def _fake(monkeypatch, name: str, rc: int | Exception) -> None:
    module = ModuleType(f"bench.{name}")

    def main(argv: list[str]) -> int:
        if isinstance(rc, Exception):
            raise rc
        return rc

    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"bench.{name}", module)


def test_a_missed_target_or_a_crash_fails_the_run_and_the_summary_names_it(monkeypatch, capsys):
    _fake(monkeypatch, "fast", 0)
    _fake(monkeypatch, "slow", 1)
    _fake(monkeypatch, "broken", RuntimeError("no Azurite"))
    monkeypatch.setattr(bench_main, "BENCHES", ("fast", "slow", "broken"))
    assert bench_main.main([], run=bench_main.in_process) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "TARGETS MISSED in slow, broken" in last and "fast met" in last


def test_all_targets_met_says_so_in_one_line(monkeypatch, capsys):
    _fake(monkeypatch, "fast", 0)
    monkeypatch.setattr(bench_main, "BENCHES", ("fast",))
    assert bench_main.main([], run=bench_main.in_process) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("bench: all targets met")


def test_each_benchmark_runs_in_a_process_of_its_own_and_its_exit_code_counts(capsys):
    assert bench_main.in_child("nope_not_a_bench", []) != 0  # python -m bench.<name>: no such module
    # a real one, in a child: `--help` exits 0 without running anything
    assert bench_main.in_child("sales_orders", ["--help"]) == 0


def test_an_unknown_benchmark_is_refused():
    assert bench_main.main(["nope"]) == 2


def test_options_after_the_names_go_to_the_named_benchmarks(monkeypatch):
    seen = []
    module = ModuleType("bench.some")
    module.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.some", module)
    monkeypatch.setattr(bench_main, "BENCHES", ("some",))
    assert bench_main.main(["some", "--declare", "table"], run=bench_main.in_process) == 0
    assert bench_main.main(["some"], run=bench_main.in_process) == 0
    assert seen == [["--declare", "table"], []]
