"""Sync engine: backfill throughput into the stream, and how soon an upstream change becomes an event.

A Headwater process (SQLite, then PostgreSQL) with its sync engine on syncs Stripe customers from
the stateful Stripe emulator of the tests (tests/fakes/stripe.py, in this process, no rate limit):
- backfill: RECORDS customers, from creating the sync to `initial_backfill_completed_at`;
- change to event: a customer changed upstream, then GET /v1/syncs/ID polled every 10 ms until
  the collection's `records_synced` counts the update event; `continuous` with
  HEADWATER_SYNC_INTERVAL=1 (one incremental pass a second; the default is 5).

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time

import httpx

from bench._headwater import emulated_stripe_sync, on_each_database, start_headwater
from bench._tools import Report, stop

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fakes import start_fake_provider  # noqa: E402 - the tests' emulators

RECORDS = 20_000
CHANGES = 20
INTERVAL = 1  # seconds between incremental passes


async def run(report: Report) -> None:
    report.text(
        f"Backfill of {RECORDS:,} Stripe customers (pages of 100) from the Stripe emulator, which runs in "
        f"the benchmark's process with no rate limit; then {CHANGES} single changes upstream, each timed "
        f"until its update event is in the stream, under `continuous` with HEADWATER_SYNC_INTERVAL={INTERVAL}."
    )
    with tempfile.TemporaryDirectory() as workdir:
        rows = await on_each_database(workdir, report, lambda label, url: _measure(label, url, workdir))
    report.table(["database", "backfill records/s", "backfill s", "change to event p50 ms", "p99 ms", "max ms"], rows)
    report.text(
        "A change waits for the next incremental pass (up to one interval, half of it on average), then "
        "one read of the events list and one transaction; shorten HEADWATER_SYNC_INTERVAL to trade "
        "upstream requests for latency."
    )


async def _measure(label: str, database_url: str, workdir: str) -> list[list]:
    stripe = await start_fake_provider("stripe")
    customers = stripe.seed("customers", n=RECORDS)
    hw = await asyncio.to_thread(
        start_headwater, workdir, label, database_url, cpu=None,
        env_overrides={"HEADWATER_SYNC_ENGINE": "true", "HEADWATER_SYNC_INTERVAL": str(INTERVAL)},
    )
    try:
        async with httpx.AsyncClient(base_url=hw.http_url, headers={"authorization": f"Bearer {hw.token}"},
                                     timeout=60) as rest:
            started = time.monotonic()
            _, sync_id = await emulated_stripe_sync(rest, stripe)
            while not (await _get(rest, sync_id))["initial_backfill_completed_at"]:
                await asyncio.sleep(0.05)
            backfill = time.monotonic() - started
            latencies = []
            for i in range(CHANGES):
                await asyncio.sleep(random.uniform(0, INTERVAL))  # any phase of the pass cycle
                before = await _synced(rest, sync_id)
                stripe.put("customers", {"id": customers[i]["id"], "name": f"Changed {i}"})
                changed = time.monotonic()
                while await _synced(rest, sync_id) == before:
                    await asyncio.sleep(0.01)
                latencies.append((time.monotonic() - changed) * 1000)
    finally:
        await asyncio.to_thread(stop, hw.process)
        await stripe.close()
    latencies.sort()
    return [[label, RECORDS / backfill, backfill, statistics.median(latencies),
             latencies[int(len(latencies) * 0.99) - 1], latencies[-1]]]


async def _get(rest: httpx.AsyncClient, sync_id: str) -> dict:
    response = await rest.get(f"/v1/syncs/{sync_id}")
    response.raise_for_status()
    return response.json()


async def _synced(rest: httpx.AsyncClient, sync_id: str) -> int:
    return (await _get(rest, sync_id))["progress"][0]["records_synced"]
