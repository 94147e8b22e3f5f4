"""Delivery survives processes: a crash between receive and ack loses nothing, and an ack made on
one Headwater process ends a read-your-writes wait on another.

Headwater runs here as users run it, `python -m headwater serve` in a subprocess configured by
environment variables; the test process writes changes to the same database the way syncs and
mutations do (`apply_changes` in a transaction).
"""

from __future__ import annotations

import asyncio
import time

import httpx
from conftest import settings_for
from headwater_process import Headwater

from headwater.auth import Auth
from headwater.server import Server
from headwater.store import Store
from headwater.store.models import Sync
from headwater.store.records import Change, apply_changes

async def prepare(store: Store, token_holder: list) -> None:
    await store.migrate()
    auth = Auth(store)
    await auth.create_org("acme")
    token_holder.append(await auth.issue_token("acme"))


async def make_sync_and_consumer(rest: httpx.AsyncClient, **consumer) -> tuple[str, str]:
    stream = (await rest.post("/v1/streams", json={"name": "main"})).json()
    sync = await rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream["id"], "collection_ids": ["stripe:customer"],
        "rate_limit": {"allowed_requests": 100, "interval": 60},
        "credential": {"properties": {"kind": "stripe_oauth2", "secret": "sk_test_x"}},
    })
    assert sync.status_code == 200, sync.text
    created = await rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync.json()["id"]}], **consumer})
    assert created.status_code == 200, created.text
    return sync.json()["id"], created.json()["id"]


async def write(store: Store, sync_id: str, *changes: Change):
    return await store.run(lambda: apply_changes(Sync.get_by_id(sync_id), "stripe:customer", list(changes)))


async def test_a_crash_between_receive_and_ack_loses_nothing(database_url):
    settings = settings_for(database_url)
    store = Store.open(database_url)
    token: list[str] = []
    first = second = None
    try:
        await prepare(store, token)
        first = await Headwater.serve(database_url, settings.secret_key)
        headers = {"authorization": f"Bearer {token[0]}"}
        async with httpx.AsyncClient(base_url=first.url, headers=headers) as rest:
            sync_id, consumer_id = await make_sync_and_consumer(rest, ack_wait_ms=1000)
            await write(store, sync_id, Change("cus_1", {"v": 1}))
            received = (await rest.get(f"/v1/http-consumers/{consumer_id}/next")).json()["data"]
            assert [m["record"]["upstream_id"] for m in received] == ["cus_1"]

        await first.kill()
        await write(store, sync_id, Change("cus_2", {"v": 1}))  # written while no server runs
        second = await Headwater.serve(database_url, settings.secret_key)

        async with httpx.AsyncClient(base_url=second.url, headers=headers) as rest:
            url = f"/v1/http-consumers/{consumer_id}"
            batch = (await rest.get(f"{url}/next", params={"batch_size": 10, "wait_for": 5000})).json()
            if len(batch["data"]) < 2:  # cus_2 at once, cus_1 when its ack wait runs out
                more = (await rest.get(f"{url}/next", params={"batch_size": 10, "wait_for": 5000})).json()
                batch["data"] += more["data"]
            assert sorted(m["record"]["upstream_id"] for m in batch["data"]) == ["cus_1", "cus_2"]
            acked = (await rest.post(f"{url}/ack", json={"ack_tokens": [m["ack_token"] for m in batch["data"]]})).json()
            assert acked["acked"] == 2
            stale = (await rest.post(f"{url}/ack", json={"ack_tokens": [received[0]["ack_token"]]})).json()
            assert stale["acked"] == 0  # the crashed delivery's token died with it
    finally:
        for process in (first, second):
            if process is not None and process.running:
                await process.kill()
        await store.close()


async def test_an_ack_on_another_process_ends_the_wait_for_it(database_url):
    """The mutation's side (this process) waits; the consumer acks on a second Headwater process."""
    settings = settings_for(database_url)
    here = await Server.start(settings)
    there = None
    try:
        auth = Auth(here.store)
        org = await auth.create_org("acme")
        token = await auth.issue_token("acme")
        there = await Headwater.serve(database_url, settings.secret_key)
        async with httpx.AsyncClient(base_url=there.url, headers={"authorization": f"Bearer {token}"}) as rest:
            sync_id, consumer_id = await make_sync_and_consumer(rest, deliver_policy="new")
            (written,) = await write(here.store, sync_id, Change("cus_1", {}))

            async def consume_there():
                batch = (await rest.get(f"/v1/http-consumers/{consumer_id}/next", params={"wait_for": 5000})).json()
                await asyncio.sleep(0.3)
                acked_at = time.monotonic()
                await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": [batch["data"][0]["ack_token"]]})
                return acked_at

            consuming = asyncio.create_task(consume_there())
            pending = await here.backend.acks.wait(org.id, [consumer_id], [written.event.seq], 10)
            returned_at = time.monotonic()
            acked_at = await consuming

        assert pending == []
        # PostgreSQL tells this process at once (LISTEN/NOTIFY); SQLite has only the polling fallback.
        limit = 0.5 if here.store.is_postgres else 1.5
        assert returned_at - acked_at < limit
    finally:
        if there is not None:
            await there.kill()
        await here.stop(grace=1)
