"""The benchmark runner: `python -m bench [NAME ...]` (what `make bench` runs).

    python -m bench                  # every benchmark, one after the other
    python -m bench proxy pacing     # only these
    python -m bench --list           # their names
    python -m bench --no-write proxy # print, leave BENCHMARKS.md alone
    python -m bench soak --minutes 10  # options after the names go to a benchmark whose run takes argv

Each benchmark's markdown is printed as it is made and, when the benchmark completes, replaces
its generated block in BENCHMARKS.md (between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`;
a benchmark with no block yet gets one at the end of the file). A failed benchmark leaves its
block as it was, and the runner exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import os
import pkgutil
import platform
import re
import sys
import time
import traceback

import bench
from bench._tools import Report

BENCHMARKS_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")
# The order of a full run; benchmarks not listed here follow in alphabetical order.
ORDER = ("http_engines", "proxy", "pacer", "pacing")


def discover() -> dict[str, str]:
    """{name: module} of every benchmark in bench/."""
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        name = info.name.removesuffix("_bench")
        found[name] = f"bench.{info.name}"
    ranked = sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {name: found[name] for name in ranked}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE).group(1)
    except (OSError, AttributeError):
        pass
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def write_block(name: str, markdown: str) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown}\n{end}"
    text = open(BENCHMARKS_MD).read() if os.path.exists(BENCHMARKS_MD) else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    with open(BENCHMARKS_MD, "w") as f:
        f.write(text)


def run_one(name: str, module_name: str, argv: list[str] = ()) -> Report:
    module = importlib.import_module(module_name)
    takes_argv = "argv" in inspect.signature(module.run).parameters
    if argv and not takes_argv:
        raise SystemExit(f"benchmark {name} takes no options (given {' '.join(argv)})")
    options = {"argv": list(argv)} if takes_argv else {}
    report = Report(name)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.text(f"_Measured {when} on {machine()}; reproduce with `python -m bench {name}`._")
    began = time.monotonic()
    if inspect.iscoroutinefunction(module.run):
        asyncio.run(module.run(report, **options))
    else:
        module.run(report, **options)
    print(f"[{name}: {time.monotonic() - began:.0f} s]\n", flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args, options = parser.parse_known_args()  # options: the benchmarks' own (`soak --minutes 10`)
    known = discover()
    if args.list:
        print("\n".join(f"{name:<16} {module}" for name, module in known.items()))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; one of {', '.join(known)}")
    failed = []
    for name in args.names or known:
        print(f"## {name}\n", flush=True)
        try:
            report = run_one(name, known[name], options)
        except (Exception, SystemExit):  # noqa: BLE001 - report it, go on with the others
            traceback.print_exc()
            failed.append(name)
            continue
        if not args.no_write:
            write_block(name, report.markdown())
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
