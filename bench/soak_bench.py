"""Soak: a stream under a steady load keeps a bounded size (its retention, headwater.store.retention).

A Headwater process (SQLite, then PostgreSQL) with its sync engine on (HEADWATER_SYNC_INTERVAL=1)
syncs Stripe customers from the tests' stateful Stripe emulator (tests/fakes/stripe.py, in this
process, no rate limit), while this process changes CHANGES_PER_SECOND customers a second upstream
for the whole run. The stream's retention is RETENTION_SECONDS (a fractional `retention_days`, as
the API allows), the pruner passes every second (HEADWATER_RETENTION_INTERVAL_SECONDS=1). Three
pull consumers read the stream: two ack every batch (batch 100, long-polling), one never acks (a
forgotten consumer: its changes are dropped past twice the retention, and its health says so).
SAMPLES times in a run the rows of the stream's events, of the consumers' messages and of the
records are counted. "Levels off": the most event rows of the run's last third are at most
LEVEL_MARGIN times those of its middle third (the first third fills the retention window).

Then, with Headwater stopped, the ack path's two ways of leaving nothing behind, on the same
database and schema: delete on ack (what `queue.ACK` does) against marking the message acked
(an UPDATE) and deleting such rows later in batches of 500, as a pruner would; ACK_ROWS
delivered messages acked 100 at a time from one connection (the median of ACK_ROUNDS rounds).

    python -m bench soak               # DEFAULT_MINUTES a database
    python -m bench soak --minutes 10  # the issue's ten minutes a database

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench._tools import Report, stop

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fakes import start_fake_provider  # noqa: E402 - the tests' emulators

DEFAULT_MINUTES = 1.0
CHANGES_PER_SECOND = 50
CUSTOMERS = 500
RETENTION_SECONDS = 10
SAMPLES = 12  # row counts taken in a run, evenly spaced (at least 5 s apart)
LEVEL_MARGIN = 1.25
BATCH = 100
ACK_ROWS = 5000
PRUNE_BATCH = 500
ACK_ROUNDS = 5
# The two ways of acking that leave nothing behind, as the ack path would send them (BATCH tokens).
ACK_BY_DELETE = ("DELETE FROM consumer_message WHERE consumer_id = ? AND state = 'delivered' "
                 "AND ack_token IN ({}) RETURNING ack_token")
ACK_BY_MARK = ("UPDATE consumer_message SET state = 'acked', ack_token = NULL "
               "WHERE consumer_id = ? AND state = 'delivered' AND ack_token IN ({}) RETURNING id")
PRUNE_MARKED = ("DELETE FROM consumer_message WHERE id IN (SELECT id FROM consumer_message "
                f"WHERE consumer_id = ? AND state = 'acked' LIMIT {PRUNE_BATCH}) RETURNING id")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"how long each database is soaked (default {DEFAULT_MINUTES:g})")
    return parser.parse_args(argv)


async def run(report: Report, argv: list[str] = ()) -> None:
    seconds = parse(list(argv)).minutes * 60
    every = max(5.0, seconds / SAMPLES)
    report.text(
        f"{seconds / 60:g} minute(s) a database: the sync engine reads Stripe customers from the tests' emulator "
        f"(in the benchmark's process; HEADWATER_SYNC_INTERVAL=1) while {CHANGES_PER_SECOND} of its {CUSTOMERS} "
        f"customers a second change upstream. The stream's `retention_days` is {RETENTION_SECONDS} seconds' worth "
        f"({RETENTION_SECONDS}/86400), the pruner runs every second; two consumers ack every batch of up to "
        f"{BATCH}, a third never acks. Rows counted every {every:g} s; \"levels off\": the last third's "
        f"most event rows at most {LEVEL_MARGIN}x the middle third's."
    )
    samples: list[list] = []
    acks: list[list] = []
    with tempfile.TemporaryDirectory() as workdir:
        rows = await on_each_database(
            workdir, report, lambda label, url: _soak(label, url, workdir, seconds, every, samples, acks)
        )
    report.table(["database", "changes written", "changes/s", "event rows: middle third max", "last third max",
                  "at the end", "levels off", "message rows at the end", "forgotten consumer"], rows)
    report.table(["database", "s", "changes written", "event rows", "message rows", "record rows"], samples)
    report.text(
        f"The ack path: {ACK_ROWS} delivered messages acked {BATCH} at a time from one connection, with Headwater "
        f"stopped, the median of {ACK_ROUNDS} rounds taking turns. \"delete on ack\" is `queue.ACK`'s DELETE ... RETURNING; \"mark, prune later\" an UPDATE "
        f"... RETURNING that sets the message acked, then the acked rows deleted {PRUNE_BATCH} at a time."
    )
    report.table(["database", "delete on ack: µs per ack", "mark: µs per ack", "prune later: µs per ack",
                  "mark + prune / delete"], acks)
    report.text(
        "Headwater deletes on ack (headwater.engine.queue.ack): one statement, and nothing left to prune. Marking "
        "would also leave rows that every claim's head-of-record probe and every queue count would have to skip, "
        "and the later DELETE is a second write of each row."
    )


async def _soak(label: str, database_url: str, workdir: str, seconds: float, every: float, samples: list,
                acks: list) -> list:
    stripe = await start_fake_provider("stripe")
    customers = [c["id"] for c in stripe.seed("customers", n=CUSTOMERS)]
    hw = await asyncio.to_thread(
        start_headwater, workdir, label, database_url, cpu=None,
        env_overrides={"HEADWATER_SYNC_ENGINE": "true", "HEADWATER_SYNC_INTERVAL": "1",
                       "HEADWATER_RETENTION_INTERVAL_SECONDS": "1"},
    )
    counter = await _Counter.open(database_url)
    stopping = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=hw.http_url, headers={"authorization": f"Bearer {hw.token}"},
                                     timeout=60) as rest:
            stream_id, sync_id = await emulated_stripe_sync(rest, stripe, retention_days=RETENTION_SECONDS / 86400)
            readers = [await _consumer(rest, sync_id, name) for name in ("reader-1", "reader-2", "forgotten")]
            forgotten = readers.pop()
            while not (await _get(rest, f"/v1/syncs/{sync_id}"))["initial_backfill_completed_at"]:
                await asyncio.sleep(0.1)
            tasks = [asyncio.create_task(_change(stripe, customers, stopping))]
            tasks += [asyncio.create_task(_drain(rest, consumer_id, stopping)) for consumer_id in readers]
            began = time.monotonic()
            first_written = await _written(rest, sync_id)
            series = []
            while (elapsed := time.monotonic() - began) < seconds:
                await asyncio.sleep(min(every, seconds - elapsed))
                events, messages, records = await counter.counts(stream_id)
                written = await _written(rest, sync_id) - first_written
                series.append((time.monotonic() - began, events))
                samples.append([label, round(time.monotonic() - began), written, events, messages, records])
            stopping.set()
            await asyncio.gather(*tasks)
            written = await _written(rest, sync_id) - first_written
            health = (await _get(rest, f"/v1/http-consumers/{forgotten}"))["health"]
            _, messages, _ = await counter.counts(stream_id)
        event_seq = await counter.any_event(stream_id)
    finally:
        stopping.set()
        await asyncio.to_thread(stop, hw.process)
        await stripe.close()
    try:
        acks.append([label, *await counter.ack_paths(forgotten, event_seq)])
    finally:
        await counter.close()
    middle = max((n for t, n in series if seconds / 3 <= t < 2 * seconds / 3), default=0)
    last = max((n for t, n in series if t >= 2 * seconds / 3), default=0)
    level = "yes" if last <= LEVEL_MARGIN * middle else "NO"
    return [[label, written, written / seconds, middle, last, series[-1][1] if series else 0, level, messages,
             f"{health['status']}, {health['dropped_messages']} dropped"]]


async def _consumer(rest: httpx.AsyncClient, sync_id: str, name: str) -> str:
    made = await rest.post("/v1/http-consumers", json={"name": name, "filters": [{"sync_id": sync_id}]})
    made.raise_for_status()
    return made.json()["id"]


async def _get(rest: httpx.AsyncClient, path: str) -> dict:
    response = await rest.get(path)
    response.raise_for_status()
    return response.json()


async def _written(rest: httpx.AsyncClient, sync_id: str) -> int:
    return (await _get(rest, f"/v1/syncs/{sync_id}"))["progress"][0]["records_synced"]


async def _change(stripe, customers: list[str], stopping: asyncio.Event) -> None:
    """CHANGES_PER_SECOND customers changed upstream a second, on a steady schedule."""
    n, began = 0, time.monotonic()
    while not stopping.is_set():
        stripe.put("customers", {"id": random.choice(customers), "name": f"Changed {n}"})
        n += 1
        await asyncio.sleep(max(0.0, began + n / CHANGES_PER_SECOND - time.monotonic()))


async def _drain(rest: httpx.AsyncClient, consumer_id: str, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        batch = await rest.post(f"/v1/http-consumers/{consumer_id}/next", json={"batch_size": BATCH, "wait_for": 500})
        batch.raise_for_status()
        tokens = [message["ack_token"] for message in batch.json()["data"]]
        if tokens:
            (await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": tokens})).raise_for_status()


class _Counter:
    """The benchmark's own connection to Headwater's database: row counts, and the ack paths."""

    def __init__(self, sqlite: sqlite3.Connection | None, postgres):
        self.sqlite = sqlite
        self.postgres = postgres

    @classmethod
    async def open(cls, database_url: str) -> _Counter:
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            return cls(sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False), None)
        return cls(None, await asyncpg.connect(database_url))

    async def close(self) -> None:
        if self.postgres is not None:
            await self.postgres.close()
        else:
            self.sqlite.close()

    async def _fetch(self, sql: str, *params) -> list[tuple]:
        """Runs one statement (`?` placeholders) on its own; its rows."""
        if self.postgres is not None:
            parts = sql.split("?")
            numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
            return [tuple(row) for row in await self.postgres.fetch(numbered, *params)]
        return await asyncio.to_thread(lambda: self.sqlite.execute(sql, params).fetchall())

    async def counts(self, stream_id: str) -> tuple[int, int, int]:
        [(events,)] = await self._fetch("SELECT COUNT(*) FROM event WHERE stream_id = ?", stream_id)
        [(messages,)] = await self._fetch("SELECT COUNT(*) FROM consumer_message")
        [(records,)] = await self._fetch("SELECT COUNT(*) FROM record")
        return events, messages, records

    async def any_event(self, stream_id: str) -> int:
        [(seq,)] = await self._fetch("SELECT MAX(seq) FROM event WHERE stream_id = ?", stream_id)
        return seq

    async def ack_paths(self, consumer_id: str, event_seq: int) -> list[float]:
        """µs per ack of: delete on ack; mark acked; the later prune of the marked rows; and the
        ratio. The median of ACK_ROUNDS rounds, the two ways taking turns."""
        deletes, marks, prunes = [], [], []
        for _ in range(ACK_ROUNDS):
            deletes.append(await self._acks(consumer_id, event_seq, ACK_BY_DELETE))
            marks.append(await self._acks(consumer_id, event_seq, ACK_BY_MARK))
            began, deleted = time.perf_counter(), 1
            while deleted:
                deleted = len(await self._fetch(PRUNE_MARKED, consumer_id))
            prunes.append((time.perf_counter() - began) * 1e6 / ACK_ROWS)
        delete, mark, prune = (statistics.median(values) for values in (deletes, marks, prunes))
        return [delete, mark, prune, (mark + prune) / delete]

    async def _acks(self, consumer_id: str, event_seq: int, statement: str) -> float:
        """µs per message of acking ACK_ROWS delivered messages, BATCH tokens a statement."""
        await self._fetch("DELETE FROM consumer_message WHERE consumer_id = ?", consumer_id)
        run = uuid.uuid4().hex
        tokens = [f"{run}.{n}" for n in range(ACK_ROWS)]
        for start in range(0, ACK_ROWS, 500):
            chunk = tokens[start:start + 500]
            values = ", ".join("(?, ?, ?, 'delivered', 1, CURRENT_TIMESTAMP, ?, '', CURRENT_TIMESTAMP)" for _ in chunk)
            params = [value for n, token in enumerate(chunk) for value in (consumer_id, event_seq, f"r{start + n}", token)]
            await self._fetch("INSERT INTO consumer_message (consumer_id, event_id, record_id, state, deliver_count, "
                              f"visible_at, ack_token, last_error, created_at) VALUES {values} RETURNING id", *params)
        began = time.perf_counter()
        for start in range(0, ACK_ROWS, BATCH):
            chunk = tokens[start:start + BATCH]
            await self._fetch(statement.format(", ".join("?" * len(chunk))), consumer_id, *chunk)
        return (time.perf_counter() - began) * 1e6 / ACK_ROWS
