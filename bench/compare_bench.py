"""The REST proxy's CPU per request, this working tree against another commit, in one run.

    python -m bench compare --base c30df64          # 3 rounds of 4 s; --base defaults to HEAD
    python -m bench compare --base HEAD~3 --rounds 5

Two proofs of a change to the proxy's hot path cannot come from two runs minutes apart on a
shared machine, so this one measures, in the same rounds: the bare uvicorn + aiohttp proxy (the
bar of issue 3), Headwater from `--base` (a `git worktree` of that commit, imported ahead of this
tree's package through PYTHONPATH), and Headwater from this tree. Each is its own process pinned
to the proxy CPU, the rounds interleave them, and the least CPU time per request answered of the
rounds is reported (other work only ever adds to it). The base runs on this tree's virtualenv, so
a base that needs other dependencies cannot be compared this way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile

from bench._headwater import start_headwater
from bench._tools import HOST, PROXY_CPU, Report, free_port, python, start_static_upstream, stop, wait_port
from bench.proxy_bench import CONNECTIONS, GENEROUS, PATH, _http, _with_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(report: Report, argv: list[str] = ()) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench compare")
    parser.add_argument("--base", default="HEAD", help="the commit to compare this tree with (default HEAD: what the uncommitted change does)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    options = parser.parse_args(list(argv))
    base = subprocess.run(["git", "rev-parse", "--short", options.base], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()

    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as workdir:
        tree = os.path.join(workdir, "base")
        subprocess.run(["git", "worktree", "add", "--detach", tree, base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            up_port = free_port()
            upstream, kind = start_static_upstream(up_port, workdir)
            processes.append(upstream)
            wait_port(up_port)
            upstream_url = f"http://{HOST}:{up_port}"
            targets = {}  # name -> (measure, pid)

            port = free_port()
            with open(os.path.join(workdir, "uvicorn.log"), "w") as log:
                bare = python("bench.http_engines", "proxy", "--engine", "aiohttp", "--upstream", upstream_url,
                              "--port", str(port), cpu=PROXY_CPU, stderr=log)
            processes.append(bare)
            wait_port(port, process=bare)
            targets["bare uvicorn + aiohttp client"] = (_http(f"http://{HOST}:{port}/{PATH}", options.seconds), bare.pid)

            for name, env in ((f"Headwater at {base}", {"PYTHONPATH": os.path.join(tree, "src")}),
                              ("Headwater, this tree", {})):
                hw = start_headwater(workdir, str(len(targets)), f"sqlite:///{workdir}/h{len(targets)}.db",
                                     cpu=PROXY_CPU, env_overrides=env)
                processes.append(hw.process)
                sync_id = hw.stripe_sync(upstream_url, GENEROUS)
                url = f"{hw.http_url}/v1/proxy/sync/{sync_id}/{PATH}"
                targets[name] = (_http(url, options.seconds, [("authorization", f"Bearer {hw.token}")]), hw.process.pid)

            for measure, _ in targets.values():  # warm up pools and caches
                measure(1.0)
            results: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(options.rounds):
                for name, (measure, pid) in targets.items():
                    results[name].append(_with_cpu(measure, pid, options.seconds))
        finally:
            for process in reversed(processes):
                stop(process)
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)

    bare_cpu = min(r["cpu_us"] for r in results["bare uvicorn + aiohttp client"])
    report.text(
        f"GET through each proxy to one static upstream ({kind}), {CONNECTIONS} connections, {options.rounds} "
        f"rounds of {options.seconds:g} s taking turns; CPU us/req: the least of the rounds."
    )
    rows = []
    for name, runs in results.items():
        cpu = min(r["cpu_us"] for r in runs)
        rows.append([name, f"{cpu:.0f}", f"{statistics.median(r['cpu_us'] for r in runs):.0f}",
                     f"{max(r['rps'] for r in runs):.0f}", f"{bare_cpu / cpu:.2f}"])
    report.table(["target", "CPU us/req", "median", "best req/s", "bare uvicorn / it (by CPU)"], rows)
