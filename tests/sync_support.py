"""What the sync engine tests share: a server with a fast engine, syncs against the fake providers,
and reading a stream's events.

    running = await start_engine_server(database_url)
    sync = await create_sync(client, fake, "stripe:customer")
    await eventually(lambda: backfilled(client, sync["id"]))
    events = await stream_events(running, sync["stream_id"])
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from conftest import Running, _client_for, _close_client, finish, settings_for

from headwater.server import Server
from headwater.store.models import Event, Record

# Short intervals so that a test sees several passes within a second or two.
FAST_ENGINE = {
    "sync_engine": True,
    "sync_interval": 0.2,
    "sync_poll_seconds": 0.05,
    "sync_lease_seconds": 2.0,
    "sync_retry_max_seconds": 0.3,
    "sync_request_timeout": 10.0,
}

CREDENTIAL_KINDS = {
    "stripe": ("stripe_api_key", "secret"),
    "salesforce": ("salesforce_oauth2", "access_token"),
    "hubspot": ("hubspot_private_app", "access_token"),
    "github": ("github_token", "token"),
}


async def start_engine_server(database_url: str, **overrides) -> Running:
    settings = settings_for(database_url, **{**FAST_ENGINE, **overrides})
    return Running(await Server.start(settings), settings)


@pytest.fixture
async def engine(database_url):
    """A server with a fast sync engine, and a client of organisation 'acme'."""
    running = await start_engine_server(database_url)
    client = await _client_for(running, "acme")
    yield running, client
    await _close_client(client)
    await finish("stopping the server", running.server.stop(grace=1))


def credential_for(fake, token: str | None = None) -> dict:
    if fake.name not in CREDENTIAL_KINDS:
        return {"properties": {"base_url": fake.base_url, **fake.credential_properties(token or fake.token)}}
    kind, secret = CREDENTIAL_KINDS[fake.name]
    properties = {"kind": kind, secret: token or fake.token, "base_url": fake.base_url}
    if fake.name == "salesforce":
        properties["instance_url"] = fake.base_url
    return {"properties": properties}


async def create_sync(client, fake, *collection_ids: str, token: str | None = None, **fields) -> dict:
    stream = await client.rest.post("/v1/streams", json={"name": f"stream-{time.monotonic_ns()}"})
    assert stream.status_code == 200, stream.text
    body = {
        "provider": fake.name,
        "stream_id": stream.json()["id"],
        "collection_ids": list(collection_ids),
        "credential": credential_for(fake, token),
        "rate_limit": {"allowed_requests": 10_000, "interval": 1},
        **fields,
    }
    response = await client.rest.post("/v1/syncs", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def get_sync(client, sync_id: str) -> dict:
    response = await client.rest.get(f"/v1/syncs/{sync_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def eventually(check, timeout: float = 30.0, interval: float = 0.05):
    """Awaits `check()` (sync or async) until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not so after {timeout} s: {check}")
        await asyncio.sleep(interval)


async def backfilled(client, sync_id: str) -> dict | None:
    """The sync once its initial backfill is complete, else None."""
    sync = await get_sync(client, sync_id)
    return sync if sync["initial_backfill_completed_at"] else None


async def passes(client, sync_id: str, n: int = 2) -> None:
    """Waits until every collection of the sync has finished n more incremental passes."""
    seen = []

    async def check():
        sync = await get_sync(client, sync_id)
        stamp = [p["last_synced_at"] for p in sync["progress"]]
        if not seen or seen[-1] != stamp:
            seen.append(stamp)
        return len(seen) > n

    await eventually(check)


async def stream_events(running: Running, stream_id: str) -> list[Event]:
    """The stream's events, in order."""
    return await running.server.store.run(
        lambda: list(Event.select().where(Event.stream == stream_id).order_by(Event.seq))
    )


async def stored_records(running: Running, sync_id: str) -> list[Record]:
    return await running.server.store.run(lambda: list(Record.select().where(Record.sync == sync_id)))


def actions(events: list[Event]) -> Counter:
    return Counter(e.action for e in events)


def assert_no_duplicates(events: list[Event]) -> None:
    """Each record has at most one insert, and no two consecutive events carry the same state."""
    inserts = Counter(e.record_id for e in events if e.action == "insert")
    assert max(inserts.values(), default=1) == 1, [r for r, n in inserts.items() if n > 1][:5]
    last: dict[str, tuple] = {}
    for e in events:
        state = (e.record["deleted"], e.record["data"])
        assert last.get(e.record_id) != state, f"event {e.seq} repeats record {e.record_id}"
        last[e.record_id] = state
