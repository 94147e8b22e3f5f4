"""Per-call overhead of a pacer slot with spare budget (the proxy hot path).

    .venv/bin/python bench/pacer_bench.py [redis://127.0.0.1:6379/0]

In-process: acquire + release, sequentially (no waiting). Redis: the same, compared with a bare
PING round trip on the same client, sequentially and with 50 concurrent callers.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import redis.asyncio as aioredis

from headwater.upstream.pacer import Budget, InProcessPacer, RedisPacer


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


async def main(url: str | None) -> None:
    spare = Budget(10**9, 1.0)
    capped = Budget(10**9, 1.0, max_concurrent=10**6)
    p = InProcessPacer()
    print(f"in-process, no cap:          {await sequential(p, spare, 200_000):7.2f} us/call")
    print(f"in-process, cap with room:   {await sequential(p, capped, 200_000):7.2f} us/call")
    print(f"in-process, 50 concurrent:   {await concurrent(p, spare, 200_000):7.2f} us/call")
    await p.aclose()
    if not url:
        return
    p = RedisPacer(url)
    client = aioredis.Redis.from_url(url)
    await client.ping()
    start = time.perf_counter()
    for _ in range(5000):
        await client.ping()
    ping = (time.perf_counter() - start) / 5000 * 1e6
    print(f"redis PING round trip:       {ping:7.1f} us")
    print(f"redis, no cap (1 EVALSHA):   {await sequential(p, spare, 5000):7.1f} us/call")
    print(f"redis, cap (EVALSHA + ZREM): {await sequential(p, capped, 5000):7.1f} us/call")
    print(f"redis, 50 concurrent:        {await concurrent(p, spare, 20_000):7.1f} us/call (throughput)")
    await client.aclose()
    await p.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
