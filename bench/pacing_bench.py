"""Pacing: one budget kept by two Headwater processes sharing Redis, under 200 concurrent callers.

    python -m bench pacing        # Redis at $HEADWATER_REDIS_URL, else redis://127.0.0.1:6379/0

Two `headwater serve` processes on one database (a SQLite file) and one Redis; one Stripe sync
whose budget is 100 requests per 1 s. 200 callers (100 on each process) send GET requests through
the REST proxy back to back for 10 s; a recording upstream (its own process) notes when each
request arrives. Reported, from the upstream's clock:

  - the busiest window: most arrivals in any 1-second window (exact sliding window: every window
    that starts at an arrival). Must not pass 100. Also shown without the first second, whose
    requests open the connections (to the upstream, to Redis) and reach the upstream later than
    their pacer slot.
  - the achieved rate: arrivals in the whole seconds from the first arrival, as a share of
    100 per second. Aim: 95% or more.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import os
import tempfile
import time

import aiohttp
import redis

from bench._headwater import start_headwater
from bench._tools import HOST, Report, free_port, python, stop, wait_port

ALLOWED, INTERVAL = 100, 1.0
CALLERS = 200
DURATION = 10.0
REDIS_URL = os.environ.get("HEADWATER_REDIS_URL") or "redis://127.0.0.1:6379/0"


def busiest_window(arrivals: list[float], interval: float) -> int:
    """Most arrivals in any window [t, t + interval)."""
    arrivals = sorted(arrivals)
    return max((bisect.bisect_left(arrivals, t + interval) - i for i, t in enumerate(arrivals)), default=0)


def achieved_share(arrivals: list[float], allowed: int, interval: float) -> tuple[float, int]:
    """(arrivals in the whole intervals from the first arrival / what the budget allows in them,
    number of whole intervals)."""
    arrivals = sorted(arrivals)
    whole = int((arrivals[-1] - arrivals[0]) // interval)
    if whole == 0:
        return 0.0, 0
    inside = bisect.bisect_left(arrivals, arrivals[0] + whole * interval)
    return inside / (allowed * whole), whole


async def drive(urls: list[str], token: str, duration: float) -> collections.Counter:
    """`CALLERS` callers, spread over `urls`, each sending GETs back to back for `duration` s."""
    statuses: collections.Counter = collections.Counter()
    stop_at = time.monotonic() + duration
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def caller(url):
            while time.monotonic() < stop_at:
                async with session.get(url, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1

        await asyncio.gather(*(caller(urls[i % len(urls)]) for i in range(CALLERS)))
    return statuses


async def arrivals_at(port: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{HOST}:{port}/arrivals") as answer:
            return json.loads(await answer.read())


def run(report: Report) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        report.text(f"Skipped: no Redis at {REDIS_URL} ({exc}).")
        return
    processes = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            up_port = free_port()
            processes.append(python("bench._servers", "recording-upstream", "--port", str(up_port)))
            wait_port(up_port, process=processes[-1])
            database = f"sqlite:///{workdir}/headwater.db"
            first = start_headwater(workdir, "a", database, cpu=None, redis_url=REDIS_URL)
            processes.append(first.process)
            second = start_headwater(workdir, "b", database, cpu=None, redis_url=REDIS_URL, fresh=False)
            processes.append(second.process)
            sync_id = first.stripe_sync(f"http://{HOST}:{up_port}", {"allowed_requests": ALLOWED, "interval": INTERVAL})
            urls = [f"{hw.http_url}/v1/proxy/sync/{sync_id}/v1/events" for hw in (first, second)]
            began = time.monotonic()
            statuses = asyncio.run(drive(urls, first.token, DURATION))
            took = time.monotonic() - began
            arrivals = asyncio.run(arrivals_at(up_port))
        finally:
            for process in reversed(processes):
                stop(process)

    busiest = busiest_window(arrivals, INTERVAL)
    warm = busiest_window([t for t in arrivals if t >= min(arrivals) + INTERVAL], INTERVAL)
    share, whole = achieved_share(arrivals, ALLOWED, INTERVAL)
    report.text(
        f"Budget {ALLOWED} requests per {INTERVAL:g} s on one credential; {CALLERS} concurrent callers "
        f"(half on each of two Headwater processes, one SQLite database, one Redis) for {DURATION:g} s "
        f"({took:.1f} s with the requests still waiting when it ended); arrival times taken at the upstream."
    )
    report.table(["figure", "measured", "needed"], [
        ["requests that reached the upstream", len(arrivals), ""],
        ["answers by status", ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())), "all 200"],
        [f"busiest {INTERVAL:g}-second window", busiest, f"<= {ALLOWED}"],
        [f"busiest window after the first {INTERVAL:g} s (warm connections)", warm, f"<= {ALLOWED}"],
        [f"achieved rate over {whole} whole seconds", f"{share:.1%} of the budget", ">= 95%"],
    ])
