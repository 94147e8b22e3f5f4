"""Per-call overhead of a pacer slot with spare budget (the proxy hot path).

    python -m bench pacer       # Redis at $HEADWATER_REDIS_URL, else redis://127.0.0.1:6379/0

In-process: acquire + release, sequentially (no waiting). Redis: the same, compared with a bare
PING round trip on the same client, sequentially and with 50 concurrent callers. Without a
reachable Redis only the in-process figures are reported.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis

from headwater.upstream.budget import Budget, InProcessPacer, RedisPacer, Window


async def sequential(pacer, budget, calls: int) -> float:
    key = f"bench-{uuid.uuid4().hex}"
    for _ in range(min(calls, 1000)):  # warm-up
        async with pacer.slot(key, budget, timeout=30):
            pass
    start = time.perf_counter()
    for _ in range(calls):
        async with pacer.slot(key, budget, timeout=30):
            pass
    return (time.perf_counter() - start) / calls * 1e6


async def concurrent(pacer, budget, calls: int, callers: int = 50) -> float:
    key = f"bench-{uuid.uuid4().hex}"

    async def worker():
        for _ in range(calls // callers):
            async with pacer.slot(key, budget, timeout=30):
                pass

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    return (time.perf_counter() - start) / calls * 1e6


async def run(report) -> None:
    spare = Budget(10**9, 1.0)
    capped = Budget(10**9, 1.0, max_concurrent=10**6)
    # Two windows with room: an exactly logged one and a day's, counted in buckets (HubSpot's shape)
    two = Budget(1000, 0.001, more=(Window(10**9, 86_400.0),))
    rows = []
    p = InProcessPacer()
    rows.append(["in-process, no cap", "acquire + release, sequential", await sequential(p, spare, 200_000)])
    rows.append(["in-process, cap with room", "acquire + release, sequential", await sequential(p, capped, 200_000)])
    rows.append(["in-process, two windows", "acquire + release, sequential", await sequential(p, two, 200_000)])
    rows.append(["in-process, 50 concurrent", "per call (throughput)", await concurrent(p, spare, 200_000)])
    await p.aclose()
    url = os.environ.get("HEADWATER_REDIS_URL") or "redis://127.0.0.1:6379/0"
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        report.text(f"No Redis at {url} ({exc}): Redis figures skipped.")
        url = None
    if url:
        start = time.perf_counter()
        for _ in range(5000):
            await client.ping()
        rows.append(["redis PING round trip", "for comparison", (time.perf_counter() - start) / 5000 * 1e6])
        p = RedisPacer(url)
        rows.append(["redis, no cap", "1 EVALSHA, sequential", await sequential(p, spare, 5000)])
        rows.append(["redis, cap with room", "EVALSHA + ZREM, sequential", await sequential(p, capped, 5000)])
        rows.append(["redis, two windows", "1 EVALSHA, sequential", await sequential(p, two, 5000)])
        rows.append(["redis, 50 concurrent", "per call (throughput)", await concurrent(p, spare, 20_000)])
        rows.append(["redis, two windows, 50 concurrent", "per call (throughput)", await concurrent(p, two, 20_000)])
        await p.aclose()
    await client.aclose()
    report.text("Cost of one pacer slot when the budget has room (what every proxied request pays).")
    report.table(["pacer", "what", "us per call"], rows)
