"""`headwater serve --workers N`: 1 versus 2 workers on this machine (issue 14, items 4 and 5).

For each of HEADWATER_WORKERS=1 and 2, one Headwater (on a PostgreSQL database made for it, the
pacer in Redis, as --workers 2 requires), and in the same run:
- the REST proxy's saturation: wrk through the proxy to the static upstream (nginx), req/s, and
  the CPU time of all Headwater's processes (the parent and its workers) per request answered;
- mutation, `/next` and ack p50, one client, one call at a time (a HubSpot company create on the
  tests' emulator, in this process; `/next` with batch 1 and the ack of its message): idle, then
  with the proxy held at LOAD_SHARE of that configuration's saturation by an open-loop load
  generator in a process of its own (`python -m bench.workers_bench load ...`).

PostgreSQL: an admin URL in BENCH_DATABASE_URL or TEST_DATABASE_URL (else the local one); Redis:
HEADWATER_REDIS_URL (else the local one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import urlparse, urlsplit, urlunparse

import asyncpg
import httpx
import psutil

from bench._headwater import start_headwater
from bench._tools import Report, best_of, load_tool, measure_http, python, static_upstream, stop
from bench.proxy_bench import GENEROUS, PATH, REDIS_URL, _redis_reachable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fakes import start_fake_provider  # noqa: E402 - the tests' emulators

CONNECTIONS = 64  # wrk's, at saturation
SECONDS = 4.0  # one saturation round
ROUNDS = 3
LOAD_SHARE = 0.8  # of the saturation req/s, while the latencies are measured under load
LOAD_CONNECTIONS = 32
CALLS = 150  # of each kind, per measurement, after WARMUP
WARMUP = 10


async def run(report: Report) -> None:
    if not _redis_reachable():
        report.text(f"Not measured: Redis at {REDIS_URL} does not answer (--workers 2 needs it).")
        return
    admin_url = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
                 or "postgresql://postgres@127.0.0.1:5432/test")
    load_average = os.getloadavg()[0]  # other work on the machine, which shares its cores
    processes: list[subprocess.Popen] = []
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            base, kind = static_upstream(workdir, processes)
            hubspot = await start_fake_provider("hubspot")
            try:
                for workers in (1, 2):
                    async with _database(admin_url) as database_url:
                        results[workers] = await _measure(workers, database_url, workdir, base, hubspot)
            finally:
                await hubspot.close()
        finally:
            for process in reversed(processes):
                stop(process)

    one, two = results[1], results[2]
    report.text(
        f"{os.cpu_count()} CPUs shared by everything: Headwater (its parent and workers, not pinned), "
        f"{load_tool()} -c{CONNECTIONS} through the REST proxy to the static upstream ({kind}), the "
        f"load generator and the measuring client. Saturation: best of {ROUNDS} rounds of {SECONDS:g} s; CPU "
        "us/req: the CPU time of all Headwater's processes per request answered. Latencies: p50 of "
        f"{CALLS} calls one at a time (mutation: a HubSpot company create on the emulator; `/next` "
        f"batch 1; the ack of its message), idle and with the proxy held at {LOAD_SHARE:.0%} of the same "
        f"configuration's saturation (open loop, {LOAD_CONNECTIONS} connections, its own process). "
        f"Load average before the run: {load_average:.1f}."
    )
    report.table(
        ["workers", "proxy req/s", "p50 ms", "CPU us/req", "held at req/s",
         "mutation p50 ms idle / loaded", "/next p50 ms idle / loaded", "ack p50 ms idle / loaded"],
        [[n, r["rps"], r["p50"] * 1e3, r["cpu_us"], r["held_rps"],
          *(f"{r['idle'][k]:.1f} / {r['loaded'][k]:.1f} ({r['loaded'][k] / r['idle'][k]:.1f}x)"
            for k in ("mutation", "next", "ack"))]
         for n, r in results.items()],
    )
    report.table(
        ["2 workers / 1 worker", "ratio"],
        [["proxy req/s", f"{two['rps'] / one['rps']:.2f}"],
         ["CPU us per request", f"{two['cpu_us'] / one['cpu_us']:.2f}"],
         *([f"{k} p50 under load", f"{two['loaded'][k] / one['loaded'][k]:.2f}"] for k in ("mutation", "next", "ack"))],
    )


@contextlib.asynccontextmanager
async def _database(admin_url: str):
    admin = await asyncpg.connect(admin_url, timeout=3)
    name = f"headwater_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _measure(workers: int, database_url: str, workdir: str, base: str, hubspot) -> dict:
    hw = await asyncio.to_thread(start_headwater, workdir, f"workers-{workers}", database_url, cpu=None,
                                 redis_url=REDIS_URL, env_overrides={"HEADWATER_WORKERS": str(workers)})
    try:
        auth = {"authorization": f"Bearer {hw.token}"}
        proxy_url = f"{hw.http_url}/v1/proxy/sync/{hw.stripe_sync(base, GENEROUS)}/{PATH}"
        processes = [psutil.Process(hw.process.pid), *psutil.Process(hw.process.pid).children(recursive=True)]

        await asyncio.to_thread(measure_http, proxy_url, CONNECTIONS, 1.0, list(auth.items()))  # warm up
        rounds = []
        for _ in range(ROUNDS):
            before = _cpu(processes)
            result = await asyncio.to_thread(measure_http, proxy_url, CONNECTIONS, SECONDS, list(auth.items()))
            result["cpu_us"] = (_cpu(processes) - before) / (result["rps"] * SECONDS) * 1e6
            rounds.append(result)
        saturated = best_of(rounds)
        saturated["cpu_us"] = min(r["cpu_us"] for r in rounds)

        async with httpx.AsyncClient(base_url=hw.http_url, headers=auth, timeout=60) as rest:
            sync = await _hubspot_sync(rest, hubspot)
            consumer = await rest.post("/v1/http-consumers", json={"stream_id": sync["stream_id"],
                                                                     "deliver_policy": "new"})
            consumer.raise_for_status()
            consumer_id = consumer.json()["id"]
            saturated["idle"] = await _latencies(rest, sync, consumer_id)
            rate = saturated["rps"] * LOAD_SHARE
            load = python("bench.workers_bench", "load", proxy_url, hw.token, f"{rate:.0f}",
                          str(LOAD_CONNECTIONS), stdout=subprocess.PIPE, text=True)
            try:
                await asyncio.sleep(1.0)  # the load reaches its rate
                saturated["loaded"] = await _latencies(rest, sync, consumer_id)
            finally:
                load.terminate()
                held = json.loads(load.communicate(timeout=30)[0])
            saturated["held_rps"] = held["rps"]
    finally:
        await asyncio.to_thread(stop, hw.process)
    return saturated


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def _hubspot_sync(rest: httpx.AsyncClient, hubspot) -> dict:
    stream = await rest.post("/v1/streams", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
    stream.raise_for_status()
    sync = await rest.post("/v1/syncs", json={
        "provider": "hubspot", "stream_id": stream.json()["id"], "collection_ids": ["hubspot:company"],
        "rate_limit": GENEROUS,
        "credential": {"properties": {"kind": "hubspot_private_app", "access_token": hubspot.token,
                                      "base_url": hubspot.base_url}},
    })
    sync.raise_for_status()
    return sync.json()


async def _latencies(rest: httpx.AsyncClient, sync: dict, consumer_id: str) -> dict[str, float]:
    """p50 (ms) of a mutation, then of `/next` (batch 1) and of the ack of the message it gave."""
    times: dict[str, list[float]] = {"mutation": [], "next": [], "ack": []}

    async def timed(kind: str, n: int, call):
        began = time.perf_counter()
        answer = await call
        if n >= WARMUP:
            times[kind].append(time.perf_counter() - began)
        answer.raise_for_status()
        return answer.json()

    for n in range(WARMUP + CALLS):
        await timed("mutation", n, rest.post("/v1/mutations/run", json={
            "kind": "create", "sync_id": sync["id"], "collection_id": "hubspot:company",
            "records": [{"data": {"name": f"Company {uuid.uuid4().hex}"}}]}))
    for n in range(WARMUP + CALLS):
        batch = await timed("next", n, rest.post(f"/v1/http-consumers/{consumer_id}/next",
                                                 json={"batch_size": 1, "wait_for": 5000}))
        await timed("ack", n, rest.post(f"/v1/http-consumers/{consumer_id}/ack",
                                        json={"ack_tokens": [m["ack_token"] for m in batch["data"]]}))
    return {kind: statistics.median(values) * 1e3 for kind, values in times.items()}


# The open-loop load: `python -m bench.workers_bench load URL TOKEN RATE CONNECTIONS` sends GET URL
# at RATE req/s over CONNECTIONS kept-alive connections until SIGTERM, then prints {"rps", "errors"}.


async def _hold(url: str, token: str, rate: float, connections: int, stopped: asyncio.Event) -> dict:
    parts = urlsplit(url)
    request = (f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    interval = connections / rate  # each connection's share of the rate
    answered = errors = 0
    began = time.perf_counter()

    async def connection(offset: float):
        nonlocal answered, errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        due = began + offset
        try:
            while not stopped.is_set():
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                due += interval
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
                answered += 1
                errors += not head.startswith(b"HTTP/1.1 2")
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection(i * interval / connections)) for i in range(connections)]
    await stopped.wait()
    elapsed = time.perf_counter() - began
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"rps": answered / elapsed, "errors": errors}


def _load_main(url: str, token: str, rate: str, connections: str) -> None:
    async def main():
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        print(json.dumps(await _hold(url, token, float(rate), int(connections), stopped)), flush=True)

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["load"]:
    _load_main(*sys.argv[2:6])
