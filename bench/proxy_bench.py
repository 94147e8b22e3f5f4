"""Proxy throughput: Headwater's proxy against bare Python proxies, one run, one machine.

    python -m bench proxy

Targets, each its own process, all forwarding GET /v1/events?limit=10 to one static upstream
(nginx, one worker, when installed); 64 connections (wrk -t1), or 64 calls in flight (gRPC):

    upstream directly          the ceiling of this machine's loopback and load generator
    bare uvicorn + aiohttp     bench/http_engines.py's ~30-line ASGI proxy on aiohttp's client
    bare aiohttp               aiohttp's server and client (bench/_servers.py)
    Headwater REST, unpaced    /v1/proxy/sync/{id}/... with pacing taken out (the cost of pacing)
    Headwater REST             as shipped: auth, account, auth injection, in-process pacing, log line
    Headwater REST, Redis      the same with HEADWATER_REDIS_URL (the shared pacer)
    Headwater gRPC             ProxyService/Forward over grpc.aio (bench/_grpc_load.py)

Every Headwater process runs `headwater serve` on its own SQLite file with a generous budget
(1,000,000 requests per second: pacing runs, nobody waits), logging to a file. Proxies are pinned
to CPU 1, load and upstream to CPU 0. Rounds interleave the targets; each target's best round is
reported (the least disturbed by other work on the machine), with the median beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile

import redis

from bench import pacer_bench
from bench._headwater import start_headwater
from bench._tools import (
    HOST,
    LOAD_CPU,
    PROXY_CPU,
    Report,
    best_of,
    cpu_seconds,
    free_port,
    load_tool,
    measure_http,
    python,
    static_upstream,
    stop,
    wait_port,
)
from headwater.upstream.budget import Budget, InProcessPacer

CONNECTIONS = 64
PATH = "v1/events?limit=10"
GENEROUS = {"allowed_requests": 1_000_000, "interval": 1}
REDIS_URL = os.environ.get("HEADWATER_REDIS_URL") or "redis://127.0.0.1:6379/0"

DIRECT = "upstream directly"
UVICORN = "bare uvicorn + aiohttp client"
AIOHTTP = "bare aiohttp server + client"
UNPACED = "Headwater REST, pacing taken out"
REST = "Headwater REST (in-process pacing)"
REDIS = "Headwater REST, pacing through Redis"
REDIS_TWO = "Headwater REST, two windows through Redis"
# A second window with room (a day's, as HubSpot's), counted in buckets: what a second window costs
TWO_WINDOWS = {**GENEROUS, "windows": [{"allowed_requests": 1_000_000_000, "interval": 86_400}]}
GRPC = "Headwater gRPC (in-process pacing)"


def measure_grpc(target: str, token: str, sync_id: str, duration: float) -> dict:
    out = python(
        "bench._grpc_load", target, token, sync_id, PATH, "--concurrency", str(CONNECTIONS),
        "--duration", str(duration), cpu=LOAD_CPU, stdout=subprocess.PIPE, text=True,
    ).communicate()[0]
    return json.loads(out)


def _redis_reachable() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except (redis.RedisError, OSError):
        return False


def run(report: Report, duration: float = 4.0, rounds: int = 6) -> None:
    processes: list[subprocess.Popen] = []
    targets = {}  # name -> (duration -> result)
    pids = {}  # name -> the process whose CPU time a request costs
    with tempfile.TemporaryDirectory() as workdir:
        try:
            base, kind = static_upstream(workdir, processes)
            targets[f"{DIRECT} ({kind})"] = _http(f"{base}/{PATH}", duration)

            for name, module, *args in (
                (UVICORN, "bench.http_engines", "proxy", "--engine", "aiohttp", "--upstream", base, "--port"),
                (AIOHTTP, "bench._servers", "aiohttp-proxy", base, "--port"),
            ):
                port = free_port()
                with open(os.path.join(workdir, f"{module}.log"), "w") as log:
                    processes.append(python(module, *args, str(port), cpu=PROXY_CPU, stderr=log))
                wait_port(port, process=processes[-1])
                targets[name] = _http(f"http://{HOST}:{port}/{PATH}", duration)
                pids[name] = processes[-1].pid

            # One process per target, gRPC's included, so that no target's rounds come after
            # another target's load in the same process.
            headwaters = [(UNPACED, {"unpaced": True}), (REST, {})]
            if _redis_reachable():
                headwaters.append((REDIS, {"redis_url": REDIS_URL}))
                headwaters.append((REDIS_TWO, {"redis_url": REDIS_URL}))
            headwaters.append((GRPC, {}))
            for i, (name, options) in enumerate(headwaters):
                hw = start_headwater(workdir, str(i), f"sqlite:///{workdir}/headwater-{i}.db", cpu=PROXY_CPU,
                                     **options)
                processes.append(hw.process)
                sync_id = hw.stripe_sync(base, TWO_WINDOWS if name == REDIS_TWO else GENEROUS)
                if name == GRPC:
                    grpc_target = (f"{HOST}:{hw.grpc_port}", hw.token, sync_id)
                    targets[name] = lambda d=duration, target=grpc_target: measure_grpc(*target, d)
                else:
                    url = f"{hw.http_url}/v1/proxy/sync/{sync_id}/{PATH}"
                    targets[name] = _http(url, duration, [("authorization", f"Bearer {hw.token}")])
                pids[name] = hw.process.pid

            for measure in targets.values():  # warm up pools and caches
                measure(1.0)
            results: dict[str, list[dict]] = {}
            for _ in range(rounds):
                for name, measure in targets.items():
                    results.setdefault(name, []).append(_with_cpu(measure, pids.get(name), duration))
        finally:
            for process in reversed(processes):
                stop(process)

    best = {name: best_of(runs) for name, runs in results.items()}
    for name, runs in results.items():
        cpu = [r["cpu_us"] for r in runs if r.get("cpu_us")]
        # The least: other work on the machine only ever adds to it (as best req/s, above).
        best[name]["cpu_us"] = min(cpu) if cpu else None
    report.text(
        f"GET through each proxy to one static upstream ({kind}); {load_tool()} -c{CONNECTIONS} "
        f"(gRPC: {CONNECTIONS} calls in flight), {duration:g} s x {rounds} rounds, best round with the "
        f"median req/s beside it. Proxies pinned to CPU 1, load and upstream to CPU 0. CPU us/req: "
        f"the proxy process's CPU time per request answered (the least of the rounds); it moves less "
        f"than req/s when other work shares the machine."
    )
    report.table(
        ["target", "req/s", "median req/s", "p50 ms", "p99 ms", "errors", "CPU us/req"],
        [[n, r["rps"], r["median"], r["p50"] * 1e3, r["p99"] * 1e3, r["errors"], _us(r["cpu_us"])]
         for n, r in best.items()],
    )
    pacer_us = asyncio.run(pacer_cost())
    report.table(["the bar (issue 3)", "measured (req/s)", "by CPU us/req", "needed", "met"], bars(best, pacer_us))


async def pacer_cost() -> float:
    """Microseconds one in-process pacer slot costs (acquire + release, 50 callers, budget with
    room): measured alone, as the proxies' two processes cannot resolve a difference this small."""
    pacer = InProcessPacer()
    try:
        return await pacer_bench.concurrent(pacer, Budget(10**9, 1.0), 100_000)
    finally:
        await pacer.aclose()


def bars(best: dict, pacer_us: float | None = None) -> list[list]:
    """The issue's bars from req/s, and the same ratios from CPU time per request."""
    rps = {name: r["rps"] for name, r in best.items()}
    cpu = {name: r["cpu_us"] for name, r in best.items()}
    rows = []

    def bar(what, needed, value, by_cpu, met, shown):
        rows.append([what, shown(value), shown(by_cpu) if by_cpu is not None else "", needed,
                     "yes" if met(value) else "**no**"])

    def speed(a, b):  # how fast a is compared with b, by req/s and by CPU per request
        return rps[a] / rps[b], (cpu[b] / cpu[a] if cpu.get(a) and cpu.get(b) else None)

    ratio = "{:.2f}".format
    share = "{:.0%}".format
    if REST not in rps:
        return rows
    bar("REST proxy / bare uvicorn + aiohttp", ">= 1.00", *speed(REST, UVICORN), lambda v: v >= 1.0, ratio)
    bar("REST proxy / bare aiohttp (aim)", ">= 1.00", *speed(REST, AIOHTTP), lambda v: v >= 1.0, ratio)
    p99 = best[REST]["p99"] * 1e3
    bar("REST proxy p99 at 64 connections", "< 35 ms", p99, None, lambda v: v < 35, "{:.1f} ms".format)
    paced, by_cpu = speed(REST, UNPACED)
    bar("in-process pacing cost", "< 3%", 1 - paced, None if by_cpu is None else 1 - by_cpu,
        lambda v: v < 0.03, "{:.1%}".format)
    if pacer_us is not None and cpu.get(REST):
        # The same cost, measured directly: the pacer's slot against the request's whole CPU time.
        direct = pacer_us / cpu[REST]
        rows.append(["in-process pacing cost: one pacer slot / a request's CPU", "",
                     f"{pacer_us:.1f} / {cpu[REST]:.0f} us = {direct:.1%}", "< 3%",
                     "yes" if direct < 0.03 else "**no**"])
    if REDIS in rps:
        bar("Redis pacing / unpaced", ">= 65%", *speed(REDIS, UNPACED), lambda v: v >= 0.65, share)
    if REDIS_TWO in rps:
        bar("two-window Redis pacing / unpaced", ">= 60%", *speed(REDIS_TWO, UNPACED), lambda v: v >= 0.60, share)
    bar("gRPC proxy / REST proxy", ">= 0.33", *speed(GRPC, REST), lambda v: v >= 1 / 3, ratio)
    return rows


def _with_cpu(measure, pid: int | None, duration: float) -> dict:
    """The measurement, with the CPU time the process spent per request answered."""
    before = cpu_seconds(pid) if pid else None
    result = measure()
    after = cpu_seconds(pid) if pid else None
    answered = result["rps"] * duration
    if before is not None and after is not None and answered:
        result["cpu_us"] = (after - before) / answered * 1e6
    return result


def _us(value: float | None) -> str:
    return f"{value:.0f}" if value else ""


def _http(url: str, duration: float, headers=()):
    return lambda d=duration: measure_http(url, CONNECTIONS, d, headers)
