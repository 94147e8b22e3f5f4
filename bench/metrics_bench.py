"""What the metrics cost a proxied request: its metric updates against its whole CPU time.

    python -m bench metrics

1. A request's CPU: `headwater serve` (pinned to CPU 1) proxying GET /v1/events?limit=10 to a
   static upstream at 64 connections for a few rounds; the process's CPU time per answer, the
   least of the rounds (as bench/proxy_bench.py measures it).
2. The updates one proxied request makes (`Metrics.budget_waited`, `upstream_answered`,
   `proxied`: the calls of Upstream.send and ProxyServicer.forward, with the same arguments),
   timed in this process, many times over; and the same updates made with prometheus_client's own
   Counter and Histogram (a lock each), for comparison.
3. A scrape of GET /metrics on the server that served the load, for scale.
"""

from __future__ import annotations

import tempfile
import time

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

from bench._headwater import start_headwater
from bench._tools import (
    HOST,
    PROXY_CPU,
    Report,
    cpu_seconds,
    free_port,
    measure_http,
    start_static_upstream,
    stop,
    wait_port,
)
from headwater.metrics import LATENCY_BUCKETS, WAIT_BUCKETS, Metrics
from headwater.upstream.budget import Budget

CONNECTIONS = 64
PATH = "v1/events?limit=10"
GENEROUS = {"allowed_requests": 1_000_000, "interval": 1}
CALLS = 200_000


def request_cpu_us(duration: float = 3.0, rounds: int = 3) -> tuple[float, float, float, int]:
    """(CPU us per proxied request, req/s) of `headwater serve`, the least CPU of `rounds`, and
    (milliseconds, bytes) of a scrape of its GET /metrics after the load."""
    processes = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            port = free_port()
            upstream, _ = start_static_upstream(port, workdir)
            processes.append(upstream)
            wait_port(port)
            hw = start_headwater(workdir, "metrics", f"sqlite:///{workdir}/headwater.db", cpu=PROXY_CPU)
            processes.append(hw.process)
            sync_id = hw.stripe_sync(f"http://{HOST}:{port}", GENEROUS)
            url = f"{hw.http_url}/v1/proxy/sync/{sync_id}/{PATH}"
            headers = [("authorization", f"Bearer {hw.token}")]
            measure_http(url, CONNECTIONS, 1.0, headers)  # warm-up
            best = None
            for _ in range(rounds):
                before = cpu_seconds(hw.process.pid)
                result = measure_http(url, CONNECTIONS, duration, headers)
                used = cpu_seconds(hw.process.pid) - before
                us = used / (result["rps"] * duration) * 1e6
                if best is None or us < best[0]:
                    best = (us, result["rps"])
            began = time.perf_counter()
            scrape = httpx.get(f"{hw.http_url}/metrics")
            scrape_ms = (time.perf_counter() - began) * 1e3
            scrape.raise_for_status()
            return best[0], best[1], scrape_ms, len(scrape.content)
        finally:
            for process in reversed(processes):
                stop(process)


def ours_us(calls: int = CALLS) -> float:
    """Microseconds of one proxied request's updates with headwater.metrics."""
    metrics = Metrics()
    budget = Budget(1_000_000, 1)
    began = time.perf_counter()
    for _ in range(calls):
        metrics.budget_waited("stripe", "cred-1", budget, "interactive", 0.0)
        metrics.upstream_answered("stripe", "cred-1", "success", 200, 0.0011)
        metrics.proxied("sync", 200)
    return (time.perf_counter() - began) / calls * 1e6


def prometheus_client_us(calls: int = CALLS) -> float:
    """The same updates with prometheus_client's Counter and Histogram (children looked up once)."""
    registry = CollectorRegistry()
    requests = PromCounter("r", "r", ["provider", "outcome", "status_class"], registry=registry)
    duration = PromHistogram("d", "d", ["provider"], buckets=LATENCY_BUCKETS, registry=registry)
    wait = PromHistogram("w", "w", ["provider", "priority"], buckets=WAIT_BUCKETS, registry=registry)
    proxied = PromCounter("p", "p", ["route", "status"], registry=registry)
    children = {}

    def child(metric, *labels):
        key = (metric, labels)
        found = children.get(key)
        if found is None:
            found = children[key] = metric.labels(*labels)
        return found

    began = time.perf_counter()
    for _ in range(calls):
        child(wait, "stripe", "interactive").observe(0.0)
        child(requests, "stripe", "success", "2xx").inc()
        child(duration, "stripe").observe(0.0011)
        child(proxied, "sync", "200").inc()
    return (time.perf_counter() - began) / calls * 1e6


def run(report: Report) -> None:
    cpu_us, rps, scrape_ms, scrape_bytes = request_cpu_us()
    ours = min(ours_us() for _ in range(3))
    theirs = min(prometheus_client_us() for _ in range(3))
    report.text(
        f"A proxied request's CPU: `headwater serve` at {CONNECTIONS} connections (CPU time per answer, "
        f"least of 3 rounds of 3 s). Its metric updates (one budget wait, one upstream answer, one "
        f"proxied call) timed {CALLS:,} times in the benchmark's process."
    )
    share = ours / cpu_us
    report.table(
        ["what", "us", "share of a request's CPU", "bar", "met"],
        [
            ["a proxied request (headwater serve)", f"{cpu_us:.0f}", "", "", ""],
            ["its metric updates (headwater.metrics)", f"{ours:.2f}", f"{share:.1%}", "< 2%",
             "yes" if share < 0.02 else "**no**"],
            ["the same with prometheus_client's Counter and Histogram", f"{theirs:.2f}",
             f"{theirs / cpu_us:.1%}", "", ""],
        ],
    )
    report.text(f"The server answered {rps:.0f} req/s; a scrape of GET /metrics after the load took "
                f"{scrape_ms:.1f} ms ({scrape_bytes:,} bytes).")
