"""Consumers: how fast pull consumers take and ack what is queued for them, beside a ceiling.

A Headwater process (SQLite, then PostgreSQL) serves pull consumers of one sync's stream. This
process queues changes for them the way the sync engine does (pages of PAGE records, each page one
`apply_changes` transaction: records, events and consumer messages), then, with nothing being
written any more, measures:

- batch 100: one client long-polls `POST /v1/http-consumers/{id}/next` with batch_size 100 and
  acks every batch at once (`/ack`) until DRAIN messages are acked: events acked per second;
- batch 1: ROUND_TRIPS times one `/next` (batch_size 1) and its `/ack`, one after the other: the
  round trip's p50 and p99;
- four consumers: four consumers of the stream, FOUR_DRAIN messages queued for each, each drained
  by its own client as in the first row, all at once: their acks per second together, and that
  over the first row's;
- the ceiling: the database's own rate for the same work from one connection of this process, with
  no Headwater in between: the claim statement (one UPDATE ... RETURNING, as `queue.claim` sends
  it) and the ack statement (one DELETE ... RETURNING), 100 messages at a time. The first row over
  it is how much of the database's speed a consumer gets through Headwater;
- the floor of batch 1: the same two POSTs, from the same client, to a static upstream that answers
  at once (bench._tools: nginx, or a small asyncio server): what two HTTP exchanges cost this
  client on this machine at that moment, with no server work at all;
- CPU: the Headwater process's (from /proc) and this client process's, per 100 messages acked,
  while one consumer drains and while four do: what bounds four consumers against one on a
  machine of two cores, where the server is one process (one core at most) and so is the client.

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL); a database is made
for the run and dropped after it. Without one, only SQLite is measured.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import sqlite3
import statistics
import tempfile
import time
import uuid

import asyncpg
import httpx
from playhouse.pwasyncio import AsyncPostgresqlConnection

from bench._headwater import on_each_database, start_headwater
from bench._tools import Report, cpu_seconds, free_port, start_static_upstream, stop, wait_port
from headwater.engine import queue
from headwater.store import Store
from headwater.store.models import Sync, utcnow
from headwater.store.notify import CHANNEL
from headwater.store.records import Change, apply_changes

PAGE = 100
DRAIN = 5000
ROUND_TRIPS = 300
WARMUP = 30
FOUR = 4
FOUR_DRAIN = 2000
BATCH = 100


async def run(report: Report) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        upstream, kind = start_static_upstream(port, workdir)
        try:
            wait_port(port)
            report.text(
                f"Changes queued beforehand (new records, pages of {PAGE} in one transaction each, as the sync engine "
                f"writes them, by a second process on the same database), nothing written while measuring. "
                f"\"batch {BATCH}\": one client long-polls `/next` with batch_size {BATCH} and acks each batch before "
                f"asking for the next, {DRAIN} messages. \"batch 1\": {ROUND_TRIPS} `/next` + `/ack` round trips of "
                f"one message, one after the other. \"{FOUR} consumers\": {FOUR} consumers of the stream, {FOUR_DRAIN} "
                f"messages each, drained at once by a client each as in the batch {BATCH} row. \"ceiling\": the "
                f"database's own rate for Headwater's claim statement (`UPDATE ... RETURNING`, `queue.CLAIM`) and ack "
                f"statement (`DELETE ... RETURNING`, `queue.ACK`), {BATCH} messages at a time, sent from one connection "
                f"of the benchmark's process. On PostgreSQL the queue's table is analyzed after it is filled (see "
                f"`_queue`). \"floor\": the batch 1 row's two POSTs, same bodies, same client, {ROUND_TRIPS} times, "
                f"to a static upstream that answers at once ({kind}): what two HTTP exchanges cost this client here "
                f"and now. \"CPU\": milliseconds of CPU per {BATCH} messages acked, of the Headwater process (from "
                f"/proc) and of the benchmark's client process, while one consumer drains and while {FOUR} do."
            )
            floor = await _floor(f"http://127.0.0.1:{port}")
            rows = await on_each_database(workdir, report, lambda label, url: _measure(label, url, workdir, floor))
        finally:
            stop(upstream)
    report.table(
        ["database", f"batch {BATCH} acks/s", "batch 1 next+ack p50 ms", "p99 ms", "floor p50 ms",
         f"{FOUR} consumers acks/s", f"{FOUR} / 1", "ceiling acks/s", f"batch {BATCH} / ceiling"],
        [row[:-4] for row in rows],
    )
    report.table(
        ["database", f"server CPU ms / {BATCH}, 1 consumer", f"client CPU ms / {BATCH}, 1 consumer",
         f"server CPU ms / {BATCH}, {FOUR} consumers", f"client CPU ms / {BATCH}, {FOUR} consumers"],
        [[row[0], *row[-4:]] for row in rows],
    )


async def _measure(label: str, database_url: str, workdir: str, floor: float) -> list[list]:
    hw = await asyncio.to_thread(start_headwater, workdir, label, database_url, cpu=None)
    store = Store.open(database_url)
    try:
        headers = {"authorization": f"Bearer {hw.token}"}
        limits = httpx.Limits(max_connections=FOUR * 2)
        async with httpx.AsyncClient(base_url=hw.http_url, headers=headers, timeout=60, limits=limits) as rest:
            sync_id = await asyncio.to_thread(hw.stripe_sync, "https://api.stripe.com",
                                              {"allowed_requests": 100, "interval": 1})
            sync = await store.run(Sync.get_by_id, sync_id)

            async def consumers(count: int, queued: int) -> list[str]:
                ids = []
                for _ in range(count):
                    made = await rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync_id}],
                                                                       "deliver_policy": "new"})
                    made.raise_for_status()
                    ids.append(made.json()["id"])
                await _queue(store, sync, queued)
                return ids

            async def delete(ids: list[str]) -> None:
                for consumer_id in ids:
                    (await rest.delete(f"/v1/http-consumers/{consumer_id}")).raise_for_status()

            pid = hw.process.pid
            [one] = await consumers(1, DRAIN)
            began, cpu = time.perf_counter(), _cpu(pid)
            await _drain(rest, one, DRAIN)
            rate = DRAIN / (time.perf_counter() - began)
            cpu_one = _per_batch(_cpu(pid), cpu, DRAIN)
            await delete([one])

            [single] = await consumers(1, WARMUP + ROUND_TRIPS)
            times = await _round_trips(rest, single)
            await delete([single])

            four = await consumers(FOUR, FOUR_DRAIN)
            began, cpu = time.perf_counter(), _cpu(pid)
            await asyncio.gather(*(_drain(rest, consumer_id, FOUR_DRAIN) for consumer_id in four))
            rate_four = FOUR * FOUR_DRAIN / (time.perf_counter() - began)
            cpu_four = _per_batch(_cpu(pid), cpu, FOUR * FOUR_DRAIN)
            await delete(four)

            [raw] = await consumers(1, DRAIN)
            ceiling = await _ceiling(store, database_url, raw, DRAIN)
            await delete([raw])
    finally:
        await store.close()
        await asyncio.to_thread(stop, hw.process)
    p50, p99 = statistics.median(times), statistics.quantiles(times, n=100)[98]
    return [[label, rate, p50 * 1000, p99 * 1000, floor * 1000, rate_four, rate_four / rate, ceiling, rate / ceiling,
             *cpu_one, *cpu_four]]


def _cpu(pid: int) -> tuple[float, float]:
    """(the Headwater process's CPU seconds so far, this process's)."""
    return cpu_seconds(pid) or 0.0, time.process_time()


def _per_batch(after: tuple[float, float], before: tuple[float, float], acked: int) -> list[float]:
    """CPU milliseconds per BATCH messages acked: [the server's, the client's]."""
    return [(a - b) * 1000 * BATCH / acked for a, b in zip(after, before)]


async def _floor(url: str) -> float:
    """The p50 of the batch 1 row's two POSTs sent to the static upstream at `url` (no server work)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        times = []
        for n in range(WARMUP + ROUND_TRIPS):
            began = time.perf_counter()
            (await client.post("/next", json={"batch_size": 1, "wait_for": 5000})).raise_for_status()
            (await client.post("/ack", json={"ack_tokens": ["token"]})).raise_for_status()
            if n >= WARMUP:
                times.append(time.perf_counter() - began)
    return statistics.median(times)


async def _queue(store: Store, sync: Sync, count: int) -> None:
    """`count` new records' changes, a page per transaction: a message each for every consumer.

    On PostgreSQL the queue's table is then analyzed, as autovacuum does within a minute of a
    queue filling (migration 0015 has it look after 2% of the rows changed): without statistics
    the planner sorts a consumer's whole queue for each claim rather than walking it in order."""
    run_id = uuid.uuid4().hex[:8]
    for start in range(0, count, PAGE):
        changes = [Change(f"cus_{run_id}_{n}", {"n": n}) for n in range(start, min(count, start + PAGE))]
        await store.run(apply_changes, sync, "stripe:customer", changes)
    if store.is_postgres:
        await store.run(store.db.execute_sql, "ANALYZE consumer_message")


async def _drain(rest: httpx.AsyncClient, consumer_id: str, count: int) -> None:
    acked = 0
    while acked < count:
        batch = await rest.post(f"/v1/http-consumers/{consumer_id}/next",
                                json={"batch_size": BATCH, "wait_for": 5000})
        batch.raise_for_status()
        tokens = [message["ack_token"] for message in batch.json()["data"]]
        if tokens:
            answer = await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": tokens})
            answer.raise_for_status()
            acked += answer.json()["acked"]


async def _round_trips(rest: httpx.AsyncClient, consumer_id: str) -> list[float]:
    times = []
    for n in range(WARMUP + ROUND_TRIPS):
        began = time.perf_counter()
        batch = await rest.post(f"/v1/http-consumers/{consumer_id}/next", json={"batch_size": 1, "wait_for": 5000})
        batch.raise_for_status()
        [message] = batch.json()["data"]
        answer = await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": [message["ack_token"]]})
        answer.raise_for_status()
        if n >= WARMUP:
            times.append(time.perf_counter() - began)
    return times


async def _ceiling(store: Store, database_url: str, consumer_id: str, count: int) -> float:
    """Acks per second of Headwater's own claim and ack statements (headwater.engine.queue.CLAIM
    and ACK), sent from one connection of this process, each committing on its own."""
    if store.is_postgres:
        return await _ceiling_postgres(database_url, consumer_id, count)
    return await asyncio.to_thread(_ceiling_sqlite, database_url.removeprefix("sqlite:///"), consumer_id, count)


def _claim_params(consumer_id: str) -> tuple:
    now = utcnow()
    return now + datetime.timedelta(seconds=30), secrets.token_urlsafe(16) + ".", consumer_id, now, BATCH


async def _ceiling_postgres(database_url: str, consumer_id: str, count: int) -> float:
    claim = AsyncPostgresqlConnection._translate_placeholders(queue.sql_for(queue.CLAIM, True))
    ack = AsyncPostgresqlConnection._translate_placeholders(queue.sql_for(queue.ACK, True))
    connection = await asyncpg.connect(database_url)
    try:
        acked, began = 0, time.perf_counter()
        while acked < count:
            rows = await connection.fetch(claim, *_claim_params(consumer_id))
            tokens = [row["ack_token"] for row in rows]
            acked += len(await connection.fetch(ack, consumer_id, tokens, CHANNEL, "bench|"))
        return acked / (time.perf_counter() - began)
    finally:
        await connection.close()


def _ceiling_sqlite(path: str, consumer_id: str, count: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        acked, began = 0, time.perf_counter()
        while acked < count:
            rows = connection.execute(queue.sql_for(queue.CLAIM, False), _claim_params(consumer_id)).fetchall()
            tokens = [row[1] for row in rows]
            ack = queue.sql_for(queue.ACK, False, len(tokens))
            acked += len(connection.execute(ack, (consumer_id, *tokens)).fetchall())
        return acked / (time.perf_counter() - began)
    finally:
        connection.close()
