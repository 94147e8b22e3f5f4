"""Read-your-writes: with `await_consumer_ids`, a mutation answers only once those consumers have
acked the events it produced, also when they ack on another Headwater server."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import Running, settings_for
from sync_support import create_sync, stream_events

from headwater.server import Server


async def create_consumer(rest, stream_id: str) -> str:
    response = await rest.post("/v1/http-consumers", json={"stream_id": stream_id, "deliver_policy": "new"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def receive_and_ack(rest, consumer_id: str, pause: float = 0.0) -> tuple[dict, float]:
    """Pulls one message (long-polling), waits `pause` seconds, acks it; returns the record and when
    the ack was sent (the ack's own answer may reach us after a mutation's that waited for it)."""
    answer = await rest.post(f"/v1/http-consumers/{consumer_id}/next", json={"batch_size": 1, "wait_for": 10_000})
    assert answer.status_code == 200, answer.text
    [message] = answer.json()["data"]
    await asyncio.sleep(pause)
    sent = time.monotonic()
    acked = await rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": [message["ack_token"]]})
    assert acked.status_code == 200, acked.text
    return message["record"], sent


def create_company(sync: dict, name: str, **fields) -> dict:
    return {"kind": "create", "sync_id": sync["id"], "collection_id": "hubspot:company",
            "records": [{"data": {"name": name}}], **fields}


async def test_the_mutation_answers_after_the_consumer_acked(client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    consumer_id = await create_consumer(client.rest, sync["stream_id"])

    consumer = asyncio.create_task(receive_and_ack(client.rest, consumer_id, pause=0.5))
    response = await client.rest.post("/v1/mutations/run", json=create_company(
        sync, "CHOAM", await_consumer_ids=[consumer_id], await_consumers_timeout=10_000,
    ))
    answered = time.monotonic()

    assert response.status_code == 200, response.text
    received, acked_at = await consumer
    assert acked_at <= answered
    assert received["upstream_id"] == response.json()["records"][0]["upstream_id"]


async def test_waiting_past_the_timeout_is_500_and_the_mutation_stays(server, client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    consumer_id = await create_consumer(client.rest, sync["stream_id"])

    response = await client.rest.post("/v1/mutations/run", json=create_company(
        sync, "Spacing Guild", await_consumer_ids=[consumer_id], await_consumers_timeout=300,
    ))

    assert response.status_code == 500
    assert response.json()["error"] == f"Error: Timed out waiting for consumers: {consumer_id}"
    [company] = hubspot.objects("companies").values()
    assert company["properties"]["name"] == "Spacing Guild"
    [event] = await stream_events(server, sync["stream_id"])
    assert event.record["upstream_id"] == company["id"]
    [detail] = [d for d in response.json()["details"] if d["@type"].endswith("MutationFailure")]
    assert [r["upstream_id"] for r in detail["applied"]] == [company["id"]]


async def test_consumers_to_await_are_checked_before_anything_is_sent(client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    elsewhere = await client.rest.post("/v1/streams", json={"name": "elsewhere"})
    other_consumer = await create_consumer(client.rest, elsewhere.json()["id"])

    unknown = await client.rest.post("/v1/mutations/run", json=create_company(sync, "x", await_consumer_ids=["nope"]))
    wrong_stream = await client.rest.post("/v1/mutations/run", json=create_company(
        sync, "x", await_consumer_ids=[other_consumer],
    ))

    assert unknown.status_code == 404
    assert wrong_stream.status_code == 400
    assert "never sees this mutation" in wrong_stream.json()["message"]
    assert hubspot.requests == []


async def test_a_consumer_deleted_while_awaited_ends_the_wait_at_once(client, fake_provider):
    """A consumer deleted meanwhile will never ack: the mutation answers that it timed out waiting
    for it as soon as it is gone, not when the timeout runs out."""
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    consumer_id = await create_consumer(client.rest, sync["stream_id"])
    began = time.monotonic()
    mutation = asyncio.create_task(client.rest.post("/v1/mutations/run", json=create_company(
        sync, "Ix", await_consumer_ids=[consumer_id], await_consumers_timeout=30_000,
    )))
    while not hubspot.requests:  # the write went upstream: the mutation is applying, then waits
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)

    deleted = await client.rest.delete(f"/v1/http-consumers/{consumer_id}")
    response = await mutation

    assert deleted.status_code == 200, deleted.text
    assert response.status_code == 500, response.text
    assert response.json()["message"] == f"Timed out waiting for consumers: {consumer_id}"
    assert time.monotonic() - began < 10


async def test_a_waiting_mutation_does_not_hold_up_other_requests(client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    consumer_id = await create_consumer(client.rest, sync["stream_id"])
    waiting = [
        asyncio.create_task(client.rest.post("/v1/mutations/run", json=create_company(
            sync, f"House {n}", await_consumer_ids=[consumer_id], await_consumers_timeout=1500,
        )))
        for n in range(12)  # more than a connection pool holds
    ]
    await asyncio.sleep(0.5)

    started = time.monotonic()
    listed = await client.rest.get("/v1/syncs")
    created = await client.rest.post("/v1/mutations/run", json=create_company(sync, "Ixians"))

    assert listed.status_code == created.status_code == 200
    assert time.monotonic() - started < 1.0
    assert [r.status_code for r in await asyncio.gather(*waiting)] == [500] * 12


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_consumer_acking_on_another_server(server, client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")
    consumer_id = await create_consumer(client.rest, sync["stream_id"])
    second = await Server.start(settings_for(server.settings.database_url, secret_key=server.settings.secret_key))
    try:
        async with httpx.AsyncClient(base_url=Running(second, server.settings).http_url,
                                     headers=client.rest.headers) as elsewhere:
            consumer = asyncio.create_task(receive_and_ack(elsewhere, consumer_id, pause=0.3))
            started = time.monotonic()
            response = await client.rest.post("/v1/mutations/run", json=create_company(
                sync, "Bene Gesserit", await_consumer_ids=[consumer_id], await_consumers_timeout=10_000,
            ))
            answered = time.monotonic()
            received, acked_at = await consumer
    finally:
        await second.stop(grace=1)

    assert response.status_code == 200, response.text
    assert received["upstream_id"] == response.json()["records"][0]["upstream_id"]
    assert acked_at <= answered < acked_at + 0.5  # woken by the other server's ack, not by polling late
    assert answered - started < 5
