"""Mutations and consumers: the round trip of one mutation, without and with read-your-writes.

A Headwater process (SQLite, then PostgreSQL) writes HubSpot companies to the stateful HubSpot
emulator of the tests (tests/fakes/hubspot.py, in this process). One client sends mutations one
after the other (`POST /v1/mutations/run`, one record each) and times each answer:
- plain: the upstream write, the record, its stream event and consumer message, the answer;
- awaiting one consumer: the same with `await_consumer_ids`, while a pull consumer in this process
  long-polls `/next` and acks each message at once; the answer waits for that ack;
- the upstream alone: the same create sent straight to the emulator by the same client, the
  upstream's own time, which each row's "above upstream" subtracts from its p50.

PostgreSQL needs an admin URL in BENCH_DATABASE_URL (or TEST_DATABASE_URL): see
bench._headwater.on_each_database.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid

import httpx

from bench._headwater import on_each_database, start_headwater
from bench._tools import Report, stop

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fakes import start_fake_provider  # noqa: E402 - the tests' emulators

MUTATIONS = 300  # per measurement, after WARMUP
WARMUP = 20


async def run(report: Report) -> None:
    report.text(
        f"One client, one mutation at a time (a HubSpot company create, one record), {MUTATIONS} per row "
        "after a warm-up; the HubSpot emulator runs in the client's process. \"awaiting 1 consumer\": the "
        "answer waits until a pull consumer (long-polling `/next`, acking each message at once) has acked "
        "the mutation's event. \"upstream alone\": the same create sent by the same client straight to the "
        "emulator, no Headwater in between; \"above upstream\" is a row's p50 less that one's."
    )
    with tempfile.TemporaryDirectory() as workdir:
        rows = await on_each_database(workdir, report, lambda label, url: _measure(label, url, workdir))
    report.table(["database", "mutation", "p50 ms", "p99 ms", "mutations/s", "upstream alone p50 ms",
                  "above upstream ms"], rows)


async def _measure(label: str, database_url: str, workdir: str) -> list[list]:
    hubspot = await start_fake_provider("hubspot")
    hw = await asyncio.to_thread(start_headwater, workdir, label, database_url, cpu=None)
    try:
        async with httpx.AsyncClient(base_url=hw.http_url, headers={"authorization": f"Bearer {hw.token}"},
                                     timeout=60) as rest:
            sync = await _hubspot_sync(rest, hubspot)
            alone = statistics.median(await _upstream_alone(hubspot)) * 1000
            plain = await _round_trips(rest, sync, None)
            consumer = await rest.post("/v1/http-consumers", json={"stream_id": sync["stream_id"],
                                                                     "deliver_policy": "new"})
            consumer.raise_for_status()
            consumer_id = consumer.json()["id"]
            acking = asyncio.create_task(_ack_everything(rest, consumer_id))
            try:
                awaited = await _round_trips(rest, sync, consumer_id)
            finally:
                acking.cancel()
    finally:
        await asyncio.to_thread(stop, hw.process)
        await hubspot.close()
    rows = [[label, name, *_figures(latencies)] for name, latencies in
            (("plain", plain), ("awaiting 1 consumer", awaited))]
    return [[*row, alone, row[2] - alone] for row in rows]


async def _hubspot_sync(rest: httpx.AsyncClient, hubspot) -> dict:
    stream = await rest.post("/v1/streams", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
    stream.raise_for_status()
    sync = await rest.post("/v1/syncs", json={
        "provider": "hubspot", "stream_id": stream.json()["id"], "collection_ids": ["hubspot:company"],
        "rate_limit": {"allowed_requests": 1_000_000, "interval": 1},
        "credential": {"properties": {"kind": "hubspot_private_app", "access_token": hubspot.token,
                                      "base_url": hubspot.base_url}},
    })
    sync.raise_for_status()
    return sync.json()


async def _round_trips(rest: httpx.AsyncClient, sync: dict, consumer_id: str | None) -> list[float]:
    latencies = []
    for n in range(WARMUP + MUTATIONS):
        body = {"kind": "create", "sync_id": sync["id"], "collection_id": "hubspot:company",
                "records": [{"data": {"name": f"Company {uuid.uuid4().hex}"}}]}
        if consumer_id:
            body["await_consumer_ids"] = [consumer_id]
        began = time.perf_counter()
        answer = await rest.post("/v1/mutations/run", json=body)
        elapsed = time.perf_counter() - began
        answer.raise_for_status()
        if n >= WARMUP:
            latencies.append(elapsed)
    return latencies


async def _upstream_alone(hubspot) -> list[float]:
    """The create of `_round_trips`, sent to the emulator itself (what Headwater's write sends)."""
    latencies = []
    async with httpx.AsyncClient(base_url=hubspot.base_url, headers={"authorization": f"Bearer {hubspot.token}"},
                                 timeout=60) as upstream:
        for n in range(WARMUP + MUTATIONS):
            began = time.perf_counter()
            answer = await upstream.post("/crm/v3/objects/companies",
                                         json={"properties": {"name": f"Company {uuid.uuid4().hex}"}})
            elapsed = time.perf_counter() - began
            answer.raise_for_status()
            if n >= WARMUP:
                latencies.append(elapsed)
    return latencies


async def _ack_everything(rest: httpx.AsyncClient, consumer_id: str) -> None:
    while True:
        batch = await rest.post(f"/v1/http-consumers/{consumer_id}/next", json={"batch_size": 100, "wait_for": 5000})
        batch.raise_for_status()
        tokens = [message["ack_token"] for message in batch.json()["data"]]
        if tokens:
            acked = await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": tokens})
            acked.raise_for_status()


def _figures(latencies: list[float]) -> list[float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99)] * 1000
    return [p50, p99, len(ordered) / sum(ordered)]
