"""Sync engine: backfill throughput into the stream beside a bulk-insert ceiling, and how soon an
upstream change becomes an event.

    python -m bench sync                      # 20,000 customers on SQLite, then PostgreSQL
    python -m bench sync --records 1000000    # the long run: memory and rate along the way

- backfill: a Headwater process (its sync engine on) backfills RECORDS Stripe customers (pages of
  100) from `python -m bench._servers stripe-customers`, an emulator of Stripe's list API in a
  process of its own with no rate limit, into a stream with two pull consumers (so each record
  writes a record row, an event and two consumer messages); timed from creating the sync to
  `initial_backfill_completed_at`. The process's resident memory and the records synced are
  sampled every SAMPLE_SECONDS: the table gives the rate of the first and last tenth of the run and the
  memory at a tenth and at the end.
- ceiling: the same rows (records, events, two consumer messages each), pages of 100 in one
  transaction each, inserted by this process straight into the same database with the fastest way
  each driver has (PostgreSQL: asyncpg `COPY`, and `INSERT ... SELECT unnest(...)`, the better of
  the two; SQLite: `executemany`), the rows (their JSON encoded) built before the clock starts:
  the database's speed, not Python's. Backfill / ceiling is how much of the
  database's bulk speed a backfill gets.
- change to event: a customer changed in the tests' stateful Stripe emulator (tests/fakes), then
  GET /v1/syncs/ID polled every 10 ms until the collection's `records_synced` counts the update
  event; `continuous` with HEADWATER_SYNC_INTERVAL=1 (one incremental pass a second).

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

import asyncpg
import httpx

from bench._headwater import emulated_stripe_sync, on_each_database, start_headwater
from bench._servers import STRIPE_CREATED, stripe_customer
from bench._tools import HOST, Report, free_port, python, stop, wait_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fakes import start_fake_provider  # noqa: E402 - the tests' emulators

RECORDS = 20_000
PAGE = 100
CONSUMERS = 2
CEILING_RECORDS = 20_000  # rows the ceiling inserts (its rate does not depend on the run's length)
CHANGES = 20
CHANGE_SEED = 1_000
INTERVAL = 1  # seconds between incremental passes
SAMPLE_SECONDS = 0.25  # between two looks at the backfill's progress and the server's memory


async def run(report: Report, argv: list[str] = ()) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sync")
    parser.add_argument("--records", type=int, default=RECORDS, help="customers to backfill")
    records = parser.parse_args(argv).records
    report.text(
        f"Backfill of {records:,} Stripe customers (pages of {PAGE}) from an emulator of Stripe's list API in "
        f"another process (`bench._servers stripe-customers`, no rate limit), into a stream with {CONSUMERS} "
        f"pull consumers: a record, an event and {CONSUMERS} consumer messages per customer. Ceiling: the same "
        f"rows inserted by the benchmark straight into the same database, pages of {PAGE} in one transaction "
        f"each, by the fastest way of the driver (named), rows built beforehand. Rate and memory: the first and last tenth of the run, "
        f"the server's resident memory at a tenth and at the end."
    )
    with tempfile.TemporaryDirectory() as workdir:
        rows = await on_each_database(workdir, report, lambda label, url: _backfill(label, url, workdir, records))
        report.table(["database", "backfill records/s", "backfill s", "ceiling records/s", "ceiling method",
                      "backfill / ceiling", "rate first / last tenth", "RSS MB at 10% / end"], rows)
        report.text(
            f"Then {CHANGES} single changes in the tests' Stripe emulator (in the benchmark's process, "
            f"{CHANGE_SEED:,} customers), each timed until its update event is in the stream, under "
            f"`continuous` with HEADWATER_SYNC_INTERVAL={INTERVAL}."
        )
        changes_dir = os.path.join(workdir, "changes")  # a database of its own
        os.mkdir(changes_dir)
        rows = await on_each_database(changes_dir, report,
                                      lambda label, url: _change_to_event(label, url, changes_dir))
    report.table(["database", "change to event p50 ms", "p99 ms", "max ms"], rows)
    report.text(
        "A change waits for the next incremental pass (up to one interval, half of it on average), then "
        "one read of the events list and one transaction; shorten HEADWATER_SYNC_INTERVAL to trade "
        "upstream requests for latency."
    )


# --- the backfill and its ceiling ------------------------------------------------------------------


async def _backfill(label: str, database_url: str, workdir: str, records: int) -> list[list]:
    port = free_port()
    emulator = python("bench._servers", "stripe-customers", "--records", str(records), "--port", str(port))
    hw = None
    try:
        await asyncio.to_thread(wait_port, port, 15.0, emulator)
        hw = await asyncio.to_thread(
            start_headwater, workdir, f"{label}-backfill", database_url, cpu=None,
            env_overrides={"HEADWATER_SYNC_ENGINE": "true"},
        )
        async with httpx.AsyncClient(base_url=hw.http_url, headers={"authorization": f"Bearer {hw.token}"},
                                     timeout=60) as rest:
            stream = await rest.post("/v1/streams", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
            stream.raise_for_status()
            stream_id = stream.json()["id"]
            started = time.monotonic()
            sync = await rest.post("/v1/syncs", json={
                "provider": "stripe", "stream_id": stream_id, "collection_ids": ["stripe:customer"],
                "rate_limit": {"allowed_requests": 1_000_000, "interval": 1},
                "credential": {"properties": {"kind": "stripe_api_key", "secret": "sk_test_bench",
                                              "base_url": f"http://{HOST}:{port}"}},
            })
            sync.raise_for_status()
            sync_id = sync.json()["id"]
            for i in range(CONSUMERS):  # `all`: what was written before it existed is queued for it too
                made = await rest.post("/v1/http-consumers", json={"name": f"bench-{i}", "stream_id": stream_id})
                made.raise_for_status()
            samples = []  # (seconds since the start, records synced, resident MB)
            while True:
                state = await _get(rest, sync_id)
                samples.append((time.monotonic() - started, state["progress"][0]["records_synced"],
                                _rss_mb(hw.process.pid)))
                if state["initial_backfill_completed_at"]:
                    break
                await asyncio.sleep(SAMPLE_SECONDS)
            backfill = time.monotonic() - started
        ids = await _ids(database_url, sync_id)
        ceiling, method = await _ceiling(database_url, ids)
    finally:
        if hw is not None:
            await asyncio.to_thread(stop, hw.process)
        await asyncio.to_thread(stop, emulator)
    rate = records / backfill
    first, last = _tenth_rates(samples, records)
    memory = [mb for _, n, mb in samples if n >= records / 10][:1] + [samples[-1][2]]
    return [[label, rate, backfill, ceiling, method, f"{rate / ceiling:.2f}",
             f"{first:.0f} / {last:.0f}", " / ".join(f"{mb:.0f}" for mb in memory)]]


def _tenth_rates(samples: list[tuple[float, int, float]], records: int) -> tuple[float, float]:
    """Records/s over the first tenth of the records and over the last tenth."""
    def at(n: float) -> float:  # the time `n` records were synced, interpolated between samples
        for (t0, n0, _), (t1, n1, _) in zip(samples, samples[1:]):
            if n0 <= n <= n1 and n1 > n0:
                return t0 + (t1 - t0) * (n - n0) / (n1 - n0)
        return samples[-1][0]

    tenth = records / 10
    return tenth / max(at(tenth) - at(0), 1e-9), tenth / max(at(records) - at(records - tenth), 1e-9)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _ids(database_url: str, sync_id: str) -> dict:
    """The org, sync, stream and consumers the ceiling's rows belong to."""
    query = ("SELECT s.org_id, s.id, s.stream_id, c.id FROM sync s JOIN consumer c ON c.stream_id = s.stream_id "
             "WHERE s.id = ")
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            rows = db.execute(query + "?", (sync_id,)).fetchall()
    else:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(query + "$1", sync_id)
        finally:
            await conn.close()
    return {"org": rows[0][0], "sync": rows[0][1], "stream": rows[0][2], "consumers": [r[3] for r in rows]}


def _page_rows(ids: dict, start: int, now: datetime.datetime) -> tuple[list[tuple], list[tuple]]:
    """One page's record rows and event rows (without seq) as the engine writes them."""
    records, events = [], []
    for i in range(start, start + PAGE):
        customer = stripe_customer(i)
        record_id = str(uuid.uuid4())
        updated = datetime.datetime.fromtimestamp(STRIPE_CREATED + i, datetime.UTC).replace(tzinfo=None)
        data = json.dumps(customer, separators=(",", ":"), sort_keys=True)
        document = json.dumps({
            "id": record_id, "sync_id": ids["sync"], "collection_id": "bench:ceiling", "upstream_id": customer["id"],
            "upstream_updated_at": updated.isoformat() + "Z", "data": customer, "deleted": False,
            "inserted_at": now.isoformat() + "Z", "updated_at": now.isoformat() + "Z",
        }, separators=(",", ":"), sort_keys=True)
        records.append((record_id, ids["org"], ids["sync"], "bench:ceiling", customer["id"], updated, data, False, now, now))
        events.append((ids["stream"], ids["org"], ids["sync"], "bench:ceiling", record_id, "insert", document, now))
    return records, events


RECORD_COLUMNS = ["id", "org_id", "sync_id", "collection_id", "upstream_id", "upstream_updated_at", "data",
                  "deleted", "inserted_at", "updated_at"]
EVENT_COLUMNS = ["seq", "stream_id", "org_id", "sync_id", "collection_id", "record_id", "action", "record",
                 "created_at"]
MESSAGE_COLUMNS = ["consumer_id", "event_id", "record_id", "state", "deliver_count", "visible_at", "last_error",
                   "created_at"]


async def _ceiling(database_url: str, ids: dict) -> tuple[float, str]:
    """Records/s of the fastest direct bulk insert of the rows a backfilled record writes."""
    if database_url.startswith("sqlite"):
        return await asyncio.to_thread(_sqlite_ceiling, database_url.removeprefix("sqlite:///"), ids), "executemany"
    conn = await asyncpg.connect(database_url)
    try:
        best = {}
        for method in ("COPY", "unnest"):
            best[method] = await _postgres_ceiling(conn, ids, method)
    finally:
        await conn.close()
    method = max(best, key=best.get)
    return best[method], method


def _sqlite_ceiling(path: str, ids: dict) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA synchronous=normal")
    db.execute("PRAGMA foreign_keys=1")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    pages = [_page_rows(ids, start, now) for start in range(0, CEILING_RECORDS, PAGE)]
    started = time.perf_counter()
    for records, events in pages:
        db.execute("BEGIN IMMEDIATE")
        (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM event").fetchone()  # the lock is held: ours
        db.executemany(f"INSERT INTO record ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * 10)})",
                       [(*r[:5], str(r[5]), r[6], r[7], str(r[8]), str(r[9])) for r in records])
        seqs = range(seq + 1, seq + 1 + len(events))
        db.executemany(f"INSERT INTO event ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * 9)})",
                       [(s, *e[:7], str(e[7])) for s, e in zip(seqs, events)])
        db.executemany(f"INSERT INTO consumer_message ({', '.join(MESSAGE_COLUMNS)}) VALUES ({', '.join('?' * 8)})",
                       [(c, s, e[4], "available", 0, str(now), "", str(now))
                        for s, e in zip(seqs, events) for c in ids["consumers"]])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return CEILING_RECORDS / elapsed


async def _postgres_ceiling(conn: asyncpg.Connection, ids: dict, method: str) -> float:
    collection = f"bench:ceiling:{method}"
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    pages = [_page_rows(ids, start, now) for start in range(0, CEILING_RECORDS, PAGE)]
    started = time.perf_counter()
    for records, events in pages:
        records = [(*r[:3], collection, *r[4:]) for r in records]
        async with conn.transaction():
            seqs = [r[0] for r in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence('event', 'seq')) FROM generate_series(1, $1)", len(events))]
            event_rows = [(s, *e) for s, e in zip(seqs, events)]
            messages = [(c, s, e[4], "available", 0, now, "", now) for s, e in zip(seqs, events)
                        for c in ids["consumers"]]
            if method == "COPY":
                await conn.copy_records_to_table("record", records=records, columns=RECORD_COLUMNS)
                await conn.copy_records_to_table("event", records=event_rows, columns=EVENT_COLUMNS)
                await conn.copy_records_to_table("consumer_message", records=messages, columns=MESSAGE_COLUMNS)
            else:
                for table, columns, rows in (("record", RECORD_COLUMNS, records), ("event", EVENT_COLUMNS, event_rows),
                                             ("consumer_message", MESSAGE_COLUMNS, messages)):
                    await conn.execute(*_unnest_insert(table, columns, rows))
    return CEILING_RECORDS / (time.perf_counter() - started)


# The columns' types, for unnest's arrays.
_TYPES = {
    "record": ["text", "text", "text", "text", "text", "timestamp", "text", "boolean", "timestamp", "timestamp"],
    "event": ["bigint", "text", "text", "text", "text", "text", "text", "text", "timestamp"],
    "consumer_message": ["text", "bigint", "text", "text", "integer", "timestamp", "text", "timestamp"],
}


def _unnest_insert(table: str, columns: list[str], rows: list[tuple]) -> tuple:
    types = _TYPES[table]
    arrays = [list(column) for column in zip(*rows)]
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({unnest})", *arrays)


# --- change to event -------------------------------------------------------------------------------


async def _change_to_event(label: str, database_url: str, workdir: str) -> list[list]:
    stripe = await start_fake_provider("stripe")
    customers = stripe.seed("customers", n=CHANGE_SEED)
    hw = await asyncio.to_thread(
        start_headwater, workdir, f"{label}-changes", database_url, cpu=None,
        env_overrides={"HEADWATER_SYNC_ENGINE": "true", "HEADWATER_SYNC_INTERVAL": str(INTERVAL)},
    )
    try:
        async with httpx.AsyncClient(base_url=hw.http_url, headers={"authorization": f"Bearer {hw.token}"},
                                     timeout=60) as rest:
            _, sync_id = await emulated_stripe_sync(rest, stripe)
            while not (await _get(rest, sync_id))["initial_backfill_completed_at"]:
                await asyncio.sleep(0.05)
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
    return [[label, statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], latencies[-1]]]


async def _get(rest: httpx.AsyncClient, sync_id: str) -> dict:
    response = await rest.get(f"/v1/syncs/{sync_id}")
    response.raise_for_status()
    return response.json()


async def _synced(rest: httpx.AsyncClient, sync_id: str) -> int:
    return (await _get(rest, sync_id))["progress"][0]["records_synced"]
