"""Bounded streams: events past their stream's retention are pruned once every consumer has acked
them; a consumer that lags is told so in its health, and past twice the retention it loses its
oldest changes rather than holding the table for ever.

The pruner's clock is moved (`Clock`), or changes are written as if days ago (`written_ago`),
instead of waiting days; each test runs one pass at a time (`server.pruner.prune()`), as the
background task does every HEADWATER_RETENTION_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest
from conftest import Running, _client_for, _close_client, finish, settings_for
from sync_support import eventually
from test_consumers import ack, make_consumer, make_sync, next_batch, write
from test_webhooks import Receiver, receiver, server  # noqa: F401 (fixtures: fast webhook retries, a receiver)

from headwater.server import Server
from headwater.settings import Settings
from headwater.store.models import ConsumerMessage, Event, Stream, utcnow
from headwater.store.records import Change
from headwater.v1 import stream_pb2


class Clock:
    """The pruner's time source: now, moved on by `advance`."""

    def __init__(self):
        self.offset = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return utcnow() + self.offset

    def advance(self, **delta) -> None:
        self.offset += datetime.timedelta(**delta)


@pytest.fixture
def clock(server):
    moved = Clock()
    server.server.pruner.clock = moved
    return moved


async def prune(server):
    return await server.server.pruner.prune()


async def stream_events(server, stream_id: str) -> list[str]:
    """The upstream ids of the records whose changes the stream still holds, in order."""

    def read():
        query = Event.select(Event.record).where(Event.stream == stream_id).order_by(Event.seq)
        return [event.record["upstream_id"] for event in query]

    return await server.server.store.run(read)


async def queued(server, consumer_id: str) -> int:
    return await server.server.store.run(
        lambda: ConsumerMessage.select().where(ConsumerMessage.consumer == consumer_id).count()
    )


async def consumer_health(client, consumer_id: str) -> dict:
    response = await client.rest.get(f"/v1/http-consumers/{consumer_id}")
    assert response.status_code == 200, response.text
    return response.json()["health"]


async def customers(server, sync: dict, *ids: str) -> None:
    await write(server, sync["id"], "stripe:customer", *(Change(i, {"email": f"{i}@arrakis.org"}) for i in ids))


# --- pruning ------------------------------------------------------------------------------------


async def test_old_events_every_consumer_acked_are_pruned_and_unacked_ones_are_kept(server, client, clock):
    sync = await make_sync(client)
    reader = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    # a consumer the changes were never queued for holds nothing
    await make_consumer(client, filters=[{"sync_id": sync["id"], "collection_id": "stripe:invoice"}])
    await customers(server, sync, "cus_1", "cus_2", "cus_3")
    batch = await next_batch(client, reader["id"], batch_size=3)
    tokens = {m["record"]["upstream_id"]: m["ack_token"] for m in batch["data"]}
    await ack(client, reader["id"], tokens["cus_1"], tokens["cus_2"])

    clock.advance(days=6, hours=23)
    within = await prune(server)
    clock.advance(hours=2)  # past the default retention of 7 days
    past = await prune(server)

    assert within.events == 0
    assert past.events == 2
    assert await stream_events(server, sync["stream_id"]) == ["cus_3"]  # still owed to the reader
    assert await queued(server, reader["id"]) == 1  # acked messages left nothing behind
    late = await make_consumer(client, stream_id=sync["stream_id"], deliver_policy="all")
    assert [m["record"]["upstream_id"] for m in (await next_batch(client, late["id"], batch_size=10))["data"]] == [
        "cus_3"
    ]


async def test_an_event_is_pruned_once_its_last_consumer_acks_it(server, client, clock):
    sync = await make_sync(client)
    first = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    second = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await customers(server, sync, "cus_1")
    clock.advance(days=8)

    await ack(client, first["id"], (await next_batch(client, first["id"]))["data"][0]["ack_token"])
    await prune(server)
    held = await stream_events(server, sync["stream_id"])
    await ack(client, second["id"], (await next_batch(client, second["id"]))["data"][0]["ack_token"])
    await prune(server)

    assert held == ["cus_1"]
    assert await stream_events(server, sync["stream_id"]) == []


async def test_a_parked_message_holds_its_event_like_any_unacked_one(server, client, clock):
    sync = await make_sync(client)
    reader = await make_consumer(client, filters=[{"sync_id": sync["id"]}], max_deliver=1)
    await customers(server, sync, "cus_1")
    token = (await next_batch(client, reader["id"]))["data"][0]["ack_token"]
    nacked = await client.rest.post(f"/v1/http-consumers/{reader['id']}/nack", json={"ack_tokens": [token]})
    clock.advance(days=8)

    pruned = await prune(server)
    parked = (await client.rest.get(f"/v1/http-consumers/{reader['id']}/parked")).json()["data"]

    assert nacked.json()["nacked"] == 1
    assert pruned.events == 0
    assert [m["record"]["upstream_id"] for m in parked] == ["cus_1"]
    assert (await consumer_health(client, reader["id"]))["status"] == "lagging"


# --- lagging consumers ----------------------------------------------------------------------------


async def test_a_consumer_lagging_past_the_retention_is_told_so_and_past_twice_it_loses_its_oldest_changes(
    server, client, receiver
):
    await client.rest.post("/v1/event-endpoints", json={"url": receiver.url, "event_types": ["consumer.health_changed"]})
    sync = await make_sync(client)
    slow = await make_consumer(client, name="slow", filters=[{"sync_id": sync["id"]}])
    await customers(server, sync, "cus_1", "cus_2", "cus_3")
    healthy = await consumer_health(client, slow["id"])

    await written_ago(server, sync["stream_id"], days=8)
    await prune(server)
    lagging = await consumer_health(client, slow["id"])
    await written_ago(server, sync["stream_id"], "cus_1", "cus_2", days=15)  # past twice the retention
    dropped = await prune(server)
    after = await consumer_health(client, slow["id"])

    assert healthy == {"status": "healthy", "last_error": None, "last_error_at": None, "dropped_messages": 0}
    assert lagging["status"] == "lagging"
    assert "older than the stream's retention of 7 days" in lagging["last_error"]
    assert "changes older than 14 days are dropped unacked" in lagging["last_error"]
    assert dropped.dropped_messages == 2 and dropped.events == 2
    assert await stream_events(server, sync["stream_id"]) == ["cus_3"]
    assert after["status"] == "lagging"  # cus_3 is older than 7 days and still unacked
    assert after["dropped_messages"] == 2
    assert after["last_error"].startswith("dropped 2 unacked change(s) older than 14 days (twice the stream's retention")
    assert [m["record"]["upstream_id"] for m in (await next_batch(client, slow["id"], batch_size=10))["data"]] == [
        "cus_3"
    ]
    events = await eventually(lambda: len(receiver.bodies()) >= 2 and [
        e for body in receiver.bodies() for e in body["data"]
    ])
    assert [(e["type"], e["data"]["previous_status"], e["data"]["health"]["status"]) for e in events] == [
        ("consumer.health_changed", "healthy", "lagging"),
        ("consumer.health_changed", "lagging", "lagging"),  # the drop
    ]
    assert events[0]["data"]["consumer_id"] == slow["id"] and events[0]["data"]["stream_id"] == sync["stream_id"]
    assert events[1]["data"]["health"]["last_error"] == after["last_error"]


async def written_ago(server, stream_id: str, *upstream_ids: str, days: float) -> None:
    """Makes the stream's changes of these records (all, when none are named) `days` old."""

    def backdate():
        for event in Event.select().where(Event.stream == stream_id):
            if not upstream_ids or event.record["upstream_id"] in upstream_ids:
                Event.update(created_at=utcnow() - datetime.timedelta(days=days)).where(Event.seq == event.seq).execute()

    await server.server.store.run(backdate)


async def test_a_consumer_that_caught_up_is_healthy_again_and_keeps_its_last_error(server, client, clock):
    sync = await make_sync(client)
    reader = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await customers(server, sync, "cus_1")
    clock.advance(days=8)
    await prune(server)

    await ack(client, reader["id"], (await next_batch(client, reader["id"]))["data"][0]["ack_token"])
    await prune(server)
    health = await consumer_health(client, reader["id"])

    assert health["status"] == "healthy"
    assert "older than the stream's retention" in health["last_error"] and health["last_error_at"]
    assert await stream_events(server, sync["stream_id"]) == []


# --- retention through the API ---------------------------------------------------------------------


async def test_a_retention_changed_through_the_api_takes_effect(server, client, clock):
    sync = await make_sync(client)
    reader = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await customers(server, sync, "cus_1")
    await ack(client, reader["id"], (await next_batch(client, reader["id"]))["data"][0]["ack_token"])
    clock.advance(days=2)

    kept = await prune(server)
    changed = await client.rest.patch(f"/v1/streams/{sync['stream_id']}", json={"retention_days": 1})
    pruned = await prune(server)

    assert kept.events == 0
    assert changed.status_code == 200, changed.text
    assert changed.json()["retention_days"] == 1
    assert (await client.rest.get(f"/v1/streams/{sync['stream_id']}")).json()["retention_days"] == 1
    assert pruned.events == 1
    assert await stream_events(server, sync["stream_id"]) == []


async def test_retention_is_set_on_create_and_changed_over_grpc_with_an_update_mask(client):
    created = (await client.rest.post("/v1/streams", json={"name": "short", "retention_days": 0.5})).json()

    answer = await client.streams.UpdateStream(
        stream_pb2.UpdateStreamRequest(
            id=created["id"], stream=stream_pb2.Stream(retention_days=30, name="ignored, not in the mask"),
            update_mask={"paths": ["retention_days"]},
        ),
        metadata=client.metadata,
    )

    assert created["retention_days"] == 0.5
    assert answer.stream.retention_days == 30 and answer.stream.name == "short"


@pytest.mark.parametrize("days", [0, -1, 3651, "NaN"])
async def test_a_retention_out_of_range_is_refused_naming_the_field(client, days):
    created = await client.rest.post("/v1/streams", json={"name": f"bad-{days}", "retention_days": days})
    stream = (await client.rest.post("/v1/streams", json={"name": f"good-{days}"})).json()
    patched = await client.rest.patch(f"/v1/streams/{stream['id']}", json={"retention_days": days})

    for answer in (created, patched):
        assert answer.status_code == 400, answer.text
        assert "stream.retention_days" in answer.json()["message"]
        assert "one second" in answer.json()["message"]
    assert (await client.rest.get(f"/v1/streams/{stream['id']}")).json()["retention_days"] == 7


async def test_a_stream_update_refuses_output_only_fields_and_taken_names(client):
    one = (await client.rest.post("/v1/streams", json={"name": "one"})).json()
    await client.rest.post("/v1/streams", json={"name": "two"})

    output_only = await client.rest.patch(f"/v1/streams/{one['id']}", json={"id": "other"})
    taken = await client.rest.patch(f"/v1/streams/{one['id']}", json={"name": "two"})
    renamed = await client.rest.patch(f"/v1/streams/{one['id']}", json={"name": "uno"})

    assert output_only.status_code == 400 and "stream.id" in output_only.json()["message"]
    assert taken.status_code == 409
    assert renamed.status_code == 200 and renamed.json()["name"] == "uno"


async def test_other_organisations_streams_cannot_be_updated(client, other_client):
    stream = (await client.rest.post("/v1/streams", json={"name": "mine"})).json()

    answer = await other_client.rest.patch(f"/v1/streams/{stream['id']}", json={"retention_days": 1})

    assert answer.status_code == 404
    assert (await client.rest.get(f"/v1/streams/{stream['id']}")).json()["retention_days"] == 7


# --- batches -------------------------------------------------------------------------------------------


async def test_pruning_in_batches_does_not_block_a_concurrent_ack(server, client, clock):
    sync = await make_sync(client)
    reader = await make_consumer(client, filters=[{"sync_id": sync["id"]}], deliver_policy="new")
    await old_events(server, sync, 6000)  # acked long ago: nothing queued for them
    await customers(server, sync, "cus_new")
    delivered = (await next_batch(client, reader["id"]))["data"][0]
    clock.advance(days=8)
    server.server.pruner.batch_size = 25

    pruning = asyncio.create_task(prune(server))
    await eventually(lambda: stream_events_count(server, sync["stream_id"], below=6001), interval=0.001)
    started = time.monotonic()
    acked = await ack(client, reader["id"], delivered["ack_token"])
    ack_seconds = time.monotonic() - started
    still_pruning = not pruning.done()
    pruned = await pruning

    assert acked["acked"] == 1
    assert still_pruning, "the ack waited for the whole pass"
    assert ack_seconds < 1.0
    assert pruned.events == 6001 and pruned.batches >= 6000 / 25


async def old_events(server, sync: dict, count: int) -> None:
    """`count` changes the stream holds and no consumer owes (written in bulk, as a backfill long ago would)."""
    row = await server.server.store.run(lambda: Stream.get_by_id(sync["stream_id"]))

    def insert():
        now = utcnow()
        rows = [
            {"stream": row.id, "org": row.org_id, "sync_id": sync["id"], "collection_id": "stripe:customer",
             "record_id": f"rec_{i}", "action": "insert", "record": {"upstream_id": f"old_{i}"}, "created_at": now}
            for i in range(count)
        ]
        for start in range(0, count, 500):
            Event.insert_many(rows[start:start + 500]).execute()

    await server.server.store.run(insert)


async def stream_events_count(server, stream_id: str, below: int) -> bool:
    count = await server.server.store.run(lambda: Event.select().where(Event.stream == stream_id).count())
    return count < below


# --- the background task and its settings ---------------------------------------------------------------


async def test_the_server_prunes_every_retention_interval_by_itself(database_url):
    settings = settings_for(database_url, retention_interval=0.1)
    running = Running(await Server.start(settings), settings)
    client = await _client_for(running, "acme")
    try:
        sync = await make_sync(client)
        await customers(running, sync, "cus_1")  # no consumer: owed to nobody
        patched = await client.rest.patch(f"/v1/streams/{sync['stream_id']}", json={"retention_days": 1 / 86400})

        assert patched.status_code == 200, patched.text
        assert await eventually(lambda: _empty(running, sync["stream_id"]), timeout=10)
    finally:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))


async def _empty(running, stream_id: str) -> bool:
    return await stream_events(running, stream_id) == []


def test_the_retention_settings_come_from_the_environment(tmp_path):
    env = {"HEADWATER_DATA_DIR": str(tmp_path)}

    default = Settings.from_env(env)
    tuned = Settings.from_env({**env, "HEADWATER_RETENTION_INTERVAL_SECONDS": "5", "HEADWATER_RETENTION_BATCH": "100"})

    assert (default.retention_interval, default.retention_batch) == (60, 500)
    assert (tuned.retention_interval, tuned.retention_batch) == (5, 100)

