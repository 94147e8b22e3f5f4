"""Consumers: how fast a burst of changes reaches an acking pull consumer.

A Headwater process (SQLite, then PostgreSQL) serves a pull consumer of one sync's stream. This
process writes a burst of BURST changes to the same database the way the sync engine does (pages
of PAGE records, each page one `apply_changes` transaction: records, events and consumer
messages), while one client long-polls `POST /v1/http-consumers/{id}/next` and acks every batch
at once (`/ack`). The figure is changes acked per second, from the first write to the last ack,
for a few batch sizes.

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL); a database is made
for the run and dropped after it. Without one, only SQLite is measured.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid

import httpx

from bench._headwater import on_each_database, start_headwater
from bench._tools import Report, stop
from headwater.store import Store
from headwater.store.models import Sync
from headwater.store.records import Change, apply_changes

BURST = 3000
PAGE = 100
BATCH_SIZES = (1, 10, 100)


async def run(report: Report) -> None:
    report.text(
        f"A burst of {BURST} changes (new records), written in pages of {PAGE} (one transaction each, as the "
        "sync engine writes them) by a second process on the same database; one client long-polls `/next` "
        "with the batch size shown and acks each batch before asking for the next. events/s = changes acked "
        "per second, from the first write to the last ack; the first ack comes that long after the first write."
    )
    with tempfile.TemporaryDirectory() as workdir:
        rows = await on_each_database(workdir, report, lambda label, url: _measure(label, url, workdir))
    report.table(["database", "batch_size", "events/s", "first ack ms"], rows)
    report.text(
        "On PostgreSQL the server learns of each written page at once (LISTEN/NOTIFY) and the consumer "
        "keeps pace with the writer. SQLite has one write lock and hands it out unfairly: the writer, "
        "committing page after page, keeps it for most of the burst, so the consumer's claims (which "
        "write) mostly wait until the burst is written, hence the late first ack; and a caught-up "
        "long-poll learns of another process's writes by polling (at most 1 s), while writers inside "
        "the server (syncs, mutations) wake it at once."
    )


async def _measure(label: str, database_url: str, workdir: str) -> list[list]:
    hw = await asyncio.to_thread(start_headwater, workdir, label, database_url, cpu=None)
    store = Store.open(database_url)
    rows = []
    try:
        headers = {"authorization": f"Bearer {hw.token}"}
        async with httpx.AsyncClient(base_url=hw.http_url, headers=headers, timeout=60) as rest:
            sync_id = await asyncio.to_thread(hw.stripe_sync, "https://api.stripe.com", {"allowed_requests": 100, "interval": 1})
            for batch_size in BATCH_SIZES:
                consumer = await rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync_id}],
                                                                         "deliver_policy": "new"})
                consumer.raise_for_status()
                rate, first_ack = await _burst(rest, store, sync_id, consumer.json()["id"], batch_size)
                rows.append([label, batch_size, rate, first_ack * 1000])
                await rest.delete(f"/v1/http-consumers/{consumer.json()['id']}")
    finally:
        await store.close()
        await asyncio.to_thread(stop, hw.process)
    return rows


async def _burst(rest: httpx.AsyncClient, store: Store, sync_id: str, consumer_id: str, batch_size: int):
    sync = await store.run(Sync.get_by_id, sync_id)
    run_id = uuid.uuid4().hex[:8]
    acked, first_ack = 0, None
    began = time.perf_counter()

    async def write():
        for start in range(0, BURST, PAGE):
            changes = [Change(f"cus_{run_id}_{n}", {"n": n}) for n in range(start, start + PAGE)]
            await store.run(apply_changes, sync, "stripe:customer", changes)

    writing = asyncio.create_task(write())
    while acked < BURST:
        batch = await rest.post(f"/v1/http-consumers/{consumer_id}/next",
                                json={"batch_size": batch_size, "wait_for": 5000})
        batch.raise_for_status()
        tokens = [message["ack_token"] for message in batch.json()["data"]]
        if tokens:
            answer = await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": tokens})
            answer.raise_for_status()
            acked += answer.json()["acked"]
            first_ack = first_ack or time.perf_counter() - began
    await writing
    return BURST / (time.perf_counter() - began), first_ack
