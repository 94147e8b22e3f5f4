"""Several Headwater processes on one database share the sync work: each collection of each sync is
leased to one engine at a time, and a dead engine's work is taken over once its lease expires."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import _client_for
from fakes import start_fake_provider
from sync_support import (
    actions,
    assert_no_duplicates,
    backfilled,
    create_sync,
    eventually,
    get_sync,
    passes,
    start_engine_server,
    stream_events,
)


@pytest.fixture
async def stripe():
    fake = await start_fake_provider("stripe")
    yield fake
    await fake.close()


async def crash(running) -> None:
    """Stops a server's engine the way a killed process would: its leases are not given back."""
    engine, running.server.engine = running.server.engine, None
    await engine.stop(release=False)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_servers_share_the_syncs_without_syncing_a_collection_twice(database_url, stripe):
    customers = stripe.seed("customers", n=1000)
    stripe.delay = 0.01
    first = await start_engine_server(database_url)
    second = await start_engine_server(database_url, secret_key=first.settings.secret_key)
    client = await _client_for(first, "acme")
    engines = [first.server.engine, second.server.engine]
    worked: list[set[int]] = [set(), set()]  # the collections each server has worked on

    async def watch():
        while True:
            now = [set(engine._working) for engine in engines]
            assert not now[0] & now[1], "one collection synced by two servers at once"
            for ids, more in zip(worked, now, strict=True):
                ids |= more
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        syncs = [await create_sync(client, stripe, "stripe:customer") for _ in range(6)]
        for sync in syncs:
            await eventually(lambda: backfilled(client, sync["id"]))
        stripe.put("customers", {"id": customers[0]["id"], "name": "Changed once"})
        for sync in syncs:
            await passes(client, sync["id"])
        assert not watcher.done(), watcher.exception()
        per_stream = [await stream_events(first, s["stream_id"]) for s in syncs]
    finally:
        watcher.cancel()
        await client.rest.aclose()
        await client.channel.close()
        await second.server.stop(grace=1)
        await first.server.stop(grace=1)

    assert worked[0] and worked[1], "both servers took a share of the work"
    for events in per_stream:
        assert actions(events) == {"insert": 1000, "update": 1}
        assert_no_duplicates(events)


async def test_a_dead_servers_work_is_taken_over_after_its_lease_expires(database_url, stripe):
    stripe.seed("customers", n=2000)
    stripe.delay = 0.03
    first = await start_engine_server(database_url, sync_lease_seconds=1.0)
    client = await _client_for(first, "acme")
    sync = await create_sync(client, stripe, "stripe:customer")
    await eventually(lambda: _synced_at_least(client, sync["id"], 300))

    await crash(first)
    second = await start_engine_server(database_url, secret_key=first.settings.secret_key)
    try:
        async with httpx.AsyncClient(base_url=second.http_url, headers=client.rest.headers) as rest:
            client.rest, old = rest, client.rest
            await old.aclose()
            done = await eventually(lambda: backfilled(client, sync["id"]))
        events = await stream_events(second, sync["stream_id"])
    finally:
        await client.channel.close()
        await second.server.stop(grace=1)
        await first.server.stop(grace=1)

    assert done["progress"][0]["records_synced"] == 2000
    assert actions(events) == {"insert": 2000}
    assert_no_duplicates(events)


async def _synced_at_least(client, sync_id, n):
    sync = await get_sync(client, sync_id)
    return sync["progress"][0]["records_synced"] >= n
