"""Headwater's benchmarks: `make bench` (= `python -m bench`) runs them all, `python -m bench NAME`
runs one; the figures go to BENCHMARKS.md.

A benchmark is a module `bench/NAME.py` or `bench/NAME_bench.py` (its name is NAME) with

    async def run(report: Report) -> None      # or a plain `def run(report)` if it spawns processes
        report.text("what was measured, and how")
        report.table(["target", "req/s"], [["direct", 54000.0]])

(`Report` is in bench/_tools.py, with helpers for ports, processes, the static upstream and wrk).
The runner finds it by itself; modules whose name starts with `_` are helpers, not benchmarks.
"""
