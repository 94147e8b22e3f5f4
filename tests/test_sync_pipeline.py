"""The sync engine reads a listing's next page while it writes the page before it
(headwater.engine.sync, SyncEngine._pages): what that read ahead must never do. A page read ahead
is written only after the page before it, with the cursor past it, and only while the lease is
held; nothing is read past a listing's last page."""

from __future__ import annotations

import asyncio
import datetime

import httpx
from conftest import _client_for
from sync_support import (
    actions,
    assert_no_duplicates,
    backfilled,
    create_sync,
    engine,  # noqa: F401 (a fixture)
    eventually,
    passes,
    start_engine_server,
    stream_events,
)

from headwater.store.models import SyncCollection, utcnow

PAGE = 100  # the catalogue's page size for Stripe customers


def listing_reads(stripe) -> list[str]:
    """The queries of the customers listing's requests that reached the emulator, in order."""
    return [r.query for r in stripe.requests if r.path == "/v1/customers"]


async def state_of(running, sync_id: str) -> SyncCollection:
    return await running.server.store.run(lambda: SyncCollection.get(SyncCollection.sync == sync_id))


async def test_a_page_read_ahead_is_not_written_once_the_lease_is_lost(database_url, fake_provider):
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=3 * PAGE)
    stripe.delay = 1.0  # each page's answer takes a second: page 2 is still being read once page 1 is written
    running = await start_engine_server(database_url)
    client = await _client_for(running, "acme")
    try:
        sync = await create_sync(client, stripe, "stripe:customer")
        stream = sync["stream_id"]
        await eventually(lambda: _events_at_least(running, stream, PAGE))
        page_2_asked = any("starting_after" in query for query in listing_reads(stripe))
        cursor = (await state_of(running, sync["id"])).cursor

        # Another engine takes the collection over (as it would after this one stalled past its lease).
        taken = await running.server.store.run(lambda: SyncCollection.update(
            lease_owner="another-engine", lease_expires_at=utcnow() + datetime.timedelta(hours=1),
        ).where(SyncCollection.sync == sync["id"]).execute())
        await asyncio.sleep(stripe.delay + 0.5)  # page 2's answer arrives meanwhile

        events = await stream_events(running, stream)
        state = await state_of(running, sync["id"])
    finally:
        await running.server.stop(grace=1)
        await client.rest.aclose()
        await client.channel.close()

    assert page_2_asked  # page 2 was being read ahead when the lease went
    assert taken == 1
    assert actions(events) == {"insert": PAGE}  # page 1 only: page 2 was dropped unwritten
    assert state.cursor == cursor  # still past page 1, where the new owner resumes
    assert state.records_synced == PAGE


async def test_a_crash_while_a_page_is_read_ahead_resumes_after_the_last_page_written(database_url, fake_provider):
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=5 * PAGE)
    stripe.delay = 0.5
    first = await start_engine_server(database_url, sync_lease_seconds=1.0)
    client = await _client_for(first, "acme")
    sync = await create_sync(client, stripe, "stripe:customer")
    await eventually(lambda: _events_at_least(first, sync["stream_id"], 2 * PAGE))
    engine, first.server.engine = first.server.engine, None
    await engine.stop(release=False)  # killed: its lease is not given back, page 3's read is cut short
    await first.server.stop(grace=1)
    await client.rest.aclose()

    second = await start_engine_server(database_url, secret_key=first.settings.secret_key)
    try:
        async with httpx.AsyncClient(base_url=second.http_url, headers=client.rest.headers) as rest:
            client.rest = rest
            await eventually(lambda: backfilled(client, sync["id"]))
        events = await stream_events(second, sync["stream_id"])
        state = await state_of(second, sync["id"])
    finally:
        await second.server.stop(grace=1)
        await client.channel.close()

    assert actions(events) == {"insert": 5 * PAGE}
    assert_no_duplicates(events)
    assert state.records_synced == 5 * PAGE


async def test_nothing_is_read_past_the_last_page_of_a_backfill(engine, fake_provider):
    running, client = engine
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=2 * PAGE - 50)  # two pages, the last one short
    sync = await create_sync(client, stripe, "stripe:customer")
    await eventually(lambda: backfilled(client, sync["id"]))
    await passes(client, sync["id"], n=3)  # incremental passes read the events listing, not customers

    reads = listing_reads(stripe)
    events = await stream_events(running, sync["stream_id"])

    assert len(reads) == 2, reads
    assert "starting_after" not in reads[0] and "starting_after" in reads[1]
    assert actions(events) == {"insert": 2 * PAGE - 50}


async def _events_at_least(running, stream_id: str, n: int) -> bool:
    return len(await stream_events(running, stream_id)) >= n
