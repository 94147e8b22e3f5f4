"""Pull consumers over REST and gRPC: create them, receive changes, ack, nack, redelivery, parking.

Changes enter the stream the way syncs and mutations write them (`apply_changes` in one
`store.run` transaction); everything else goes through the public API, as a user would use it.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from headwater.store.models import Sync
from headwater.store.records import Change, apply_changes
from headwater.v1 import consumer_pb2


async def make_sync(client, collections=("stripe:customer", "stripe:invoice")) -> dict:
    stream = await client.rest.post("/v1/streams", json={"name": f"stream-{time.monotonic_ns()}"})
    assert stream.status_code == 200, stream.text
    body = {
        "provider": "stripe",
        "stream_id": stream.json()["id"],
        "collection_ids": list(collections),
        "rate_limit": {"allowed_requests": 100, "interval": 60},
        "credential": {"properties": {"kind": "stripe_oauth2", "secret": "sk_test_x"}},
    }
    response = await client.rest.post("/v1/syncs", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def write(server, sync_id: str, collection_id: str, *changes: Change):
    """What a sync or a mutation does when upstream records change."""

    def apply():
        return apply_changes(Sync.get_by_id(sync_id), collection_id, list(changes))

    return await server.server.store.run(apply)


async def make_consumer(client, **body) -> dict:
    response = await client.rest.post("/v1/http-consumers", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def next_batch(client, consumer_id: str, **params) -> dict:
    response = await client.rest.get(f"/v1/http-consumers/{consumer_id}/next", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def ack(client, consumer_id: str, *tokens: str) -> dict:
    response = await client.rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": list(tokens)})
    assert response.status_code == 200, response.text
    return response.json()


# --- managing consumers --------------------------------------------------------------------------


async def test_create_get_list_delete_over_rest(client):
    sync = await make_sync(client)

    created = await make_consumer(
        client, name="orders", filters=[{"sync_id": sync["id"], "collection_id": "stripe:customer"}]
    )

    assert created == {
        "id": created["id"],
        "org_id": created["org_id"],
        "name": "orders",
        "stream_id": sync["stream_id"],  # named by the sync in the filter
        "filters": [{"sync_id": sync["id"], "collection_id": "stripe:customer", "record_id": None}],
        "deliver_policy": "all",
        "ack_wait_ms": 30000,
        "max_deliver": 0,
        "max_ack_pending": 0,
        "kind": "pull",
        "webhook_url": None,  # a webhook consumer's settings
        "webhook_secret": None,
        "webhook_batch_size": None,
        "created_at": created["created_at"],
        "updated_at": created["updated_at"],
        "health": {"status": "healthy", "last_error": None, "last_error_at": None, "dropped_messages": 0},
        "backlog": {"num_pending": 0, "num_ack_pending": 0, "num_parked": 0},
    }
    got = await client.rest.get(f"/v1/http-consumers/{created['id']}")
    assert got.json() == created
    listed = await client.rest.get("/v1/http-consumers")
    assert [c["id"] for c in listed.json()["data"]] == [created["id"]]

    deleted = await client.rest.delete(f"/v1/http-consumers/{created['id']}")
    assert deleted.json() == {"id": created["id"], "deleted": True}
    assert (await client.rest.get(f"/v1/http-consumers/{created['id']}")).status_code == 404


async def test_a_consumer_can_name_its_stream_directly(client):
    sync = await make_sync(client)

    created = await make_consumer(client, stream_id=sync["stream_id"], deliver_policy="new")

    assert created["stream_id"] == sync["stream_id"] and created["filters"] == []


async def test_other_organisations_consumers_do_not_exist(client, other_client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])

    for call in (
        other_client.rest.get(f"/v1/http-consumers/{consumer['id']}"),
        other_client.rest.get(f"/v1/http-consumers/{consumer['id']}/next"),
        other_client.rest.post(f"/v1/http-consumers/{consumer['id']}/ack", json={"ack_tokens": ["x"]}),
        other_client.rest.delete(f"/v1/http-consumers/{consumer['id']}"),
    ):
        assert (await call).status_code == 404
    # nor their syncs, to attach to
    response = await other_client.rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync["id"]}]})
    assert response.status_code == 404
    assert (await other_client.rest.get("/v1/http-consumers")).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "consumer.stream_id"),
        ({"filters": [{}]}, "consumer.filters[0]"),
        ({"deliver_policy": "first"}, "consumer.deliver_policy"),
        ({"ack_wait_ms": 0}, "consumer.ack_wait_ms"),
        ({"max_deliver": -2}, "consumer.max_deliver"),
        ({"max_ack_pending": -2}, "consumer.max_ack_pending"),
        ({"webhook_url": "ftp://example.com/hook"}, "consumer.webhook_url"),
        ({"filter": []}, "consumer.filter"),
    ],
)
async def test_bad_fields_are_refused_naming_the_field(client, body, field):
    sync = await make_sync(client)
    body = {"filters": [{"sync_id": sync["id"]}], **body} if "filters" not in body and body else body

    response = await client.rest.post("/v1/http-consumers", json=body)

    assert response.status_code == 400, response.text
    assert field in response.json()["message"]
    assert (await client.rest.get("/v1/http-consumers")).json()["data"] == []


async def test_sequins_hosted_shape_one_filter_object_and_max_deliver_minus_one_is_accepted(client):
    sync = await make_sync(client)

    created = await make_consumer(
        client, name="orders", filters={"sync_id": sync["id"], "collection_id": "stripe:customer"}, max_deliver=-1
    )
    patched = await client.rest.patch(
        f"/v1/http-consumers/{created['id']}", json={"filters": {"collection_id": "stripe:invoice"}, "max_deliver": -1}
    )

    # The documented shape comes back: a list of one filter, and 0 for "no limit".
    assert created["filters"] == [{"sync_id": sync["id"], "collection_id": "stripe:customer", "record_id": None}]
    assert created["max_deliver"] == 0
    assert patched.status_code == 200, patched.text
    assert patched.json()["filters"] == [{"sync_id": None, "collection_id": "stripe:invoice", "record_id": None}]
    assert patched.json()["max_deliver"] == 0


async def test_max_deliver_minus_one_means_no_limit_over_grpc_too(client):
    sync = await make_sync(client)

    answer = await client.consumers.CreateConsumer(
        consumer_pb2.CreateConsumerRequest(
            consumer=consumer_pb2.Consumer(filters=[consumer_pb2.ConsumerFilter(sync_id=sync["id"])], max_deliver=-1)
        ),
        metadata=client.metadata,
    )

    assert answer.consumer.max_deliver == 0


async def test_a_filter_naming_a_collection_the_sync_does_not_carry_is_refused(client):
    sync = await make_sync(client)

    response = await client.rest.post(
        "/v1/http-consumers", json={"filters": [{"sync_id": sync["id"], "collection_id": "stripe:charge"}]}
    )

    assert response.status_code == 400
    assert "consumer.filters[0].collection_id" in response.json()["message"]


async def test_patch_changes_only_the_fields_sent(client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, name="orders", filters=[{"sync_id": sync["id"]}], max_ack_pending=5)

    response = await client.rest.patch(
        f"/v1/http-consumers/{consumer['id']}", json={"name": "invoices", "ack_wait_ms": 5000}
    )

    assert response.status_code == 200, response.text
    changed = (await client.rest.get(f"/v1/http-consumers/{consumer['id']}")).json()
    assert (changed["name"], changed["ack_wait_ms"]) == ("invoices", 5000)
    assert changed["max_ack_pending"] == 5 and changed["filters"] == consumer["filters"]
    assert changed["updated_at"] >= consumer["updated_at"]


async def test_patched_filters_choose_the_changes_queued_from_then_on(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"], "collection_id": "stripe:customer"}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))

    response = await client.rest.patch(
        f"/v1/http-consumers/{consumer['id']}",
        json={"filters": [{"sync_id": sync["id"], "collection_id": "stripe:invoice"}]},
    )
    assert response.status_code == 200, response.text
    await write(server, sync["id"], "stripe:customer", Change("cus_2", {}))
    await write(server, sync["id"], "stripe:invoice", Change("in_1", {}))

    got = await next_batch(client, consumer["id"], batch_size=10)
    # cus_1 was queued before the change and stays; cus_2 no longer matches; in_1 now does.
    assert [m["record"]["upstream_id"] for m in got["data"]] == ["cus_1", "in_1"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"deliver_policy": "new"}, "consumer.deliver_policy"),
        ({"webhook_url": "https://example.com/hook"}, "consumer.webhook_url"),
        ({"kind": "webhook"}, "consumer.kind"),
        ({"ack_wait_ms": 1}, "consumer.ack_wait_ms"),
        ({"filters": [{"collection_id": "stripe:charge", "sync_id": "SYNC"}]}, "consumer.filters[0].collection_id"),
        ({"colour": "blue"}, "consumer.colour"),
    ],
)
async def test_patch_refuses_what_cannot_change_naming_the_field(client, body, field):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    if "filters" in body:
        body["filters"][0]["sync_id"] = sync["id"]

    response = await client.rest.patch(f"/v1/http-consumers/{consumer['id']}", json=body)

    assert response.status_code == 400, response.text
    assert field in response.json()["message"]
    assert (await client.rest.get(f"/v1/http-consumers/{consumer['id']}")).json() == consumer


async def test_update_over_grpc_with_a_field_mask(client, other_client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], max_deliver=3)

    answer = await client.consumers.UpdateConsumer(
        consumer_pb2.UpdateConsumerRequest(
            id=consumer["id"],
            consumer=consumer_pb2.Consumer(max_ack_pending=7),
            update_mask={"paths": ["max_ack_pending", "max_deliver"]},  # max_deliver not given: its default
        ),
        metadata=client.metadata,
    )

    assert (answer.consumer.max_ack_pending, answer.consumer.max_deliver) == (7, 0)
    patch = other_client.rest.patch(f"/v1/http-consumers/{consumer['id']}", json={"name": "mine now"})
    assert (await patch).status_code == 404


# --- receiving ---------------------------------------------------------------------------------


async def test_next_answers_the_documented_shape_and_ack_removes_the_message(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    (written,) = await write(server, sync["id"], "stripe:customer", Change("cus_1", {"email": "paul@arrakis.org"}))

    batch = await next_batch(client, consumer["id"])

    assert batch == {
        "data": [
            {
                "ack_token": batch["data"][0]["ack_token"],
                "record": {
                    "id": written.record.id,
                    "sync_id": sync["id"],
                    "collection_id": "stripe:customer",
                    "upstream_id": "cus_1",
                    "upstream_updated_at": None,
                    "data": {"email": "paul@arrakis.org"},
                    "deleted": False,
                    "inserted_at": batch["data"][0]["record"]["inserted_at"],
                    "updated_at": batch["data"][0]["record"]["updated_at"],
                },
                "action": "insert",
            }
        ],
        "info": {"num_pending": 0, "num_ack_pending": 1},
    }
    assert await ack(client, consumer["id"], batch["data"][0]["ack_token"]) == {
        "success": True,
        "acked": 1,
        "unknown_ack_tokens": [],
    }
    assert await next_batch(client, consumer["id"]) == {"data": [], "info": {"num_pending": 0, "num_ack_pending": 0}}


async def test_next_over_post_with_a_body_and_batches(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {"n": i}) for i in range(5)))

    response = await client.rest.post(f"/v1/http-consumers/{consumer['id']}/next", json={"batch_size": 3})

    body = response.json()
    assert [m["record"]["data"]["n"] for m in body["data"]] == [0, 1, 2]
    assert body["info"] == {"num_pending": 2, "num_ack_pending": 3}


async def test_unknown_and_stale_ack_tokens_are_reported_not_refused(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))
    token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]

    answer = await ack(client, consumer["id"], token, "made-up")
    again = await ack(client, consumer["id"], token)

    assert answer == {"success": True, "acked": 1, "unknown_ack_tokens": ["made-up"]}
    assert again == {"success": True, "acked": 0, "unknown_ack_tokens": [token]}


async def test_another_organisations_ack_of_a_real_token_acks_nothing(server, client, other_client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))
    token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]

    theirs = await other_client.rest.post(f"/v1/http-consumers/{consumer['id']}/ack", json={"ack_tokens": [token]})

    assert theirs.status_code == 404
    assert await ack(client, consumer["id"], token) == {"success": True, "acked": 1, "unknown_ack_tokens": []}


async def test_the_counts_after_a_batch_count_each_redelivered_message_once(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], ack_wait_ms=100)
    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {}) for i in range(4)))
    first = await next_batch(client, consumer["id"], batch_size=2)
    assert first["info"] == {"num_pending": 2, "num_ack_pending": 2}
    await asyncio.sleep(0.3)  # their ack wait ran out: they are pending again

    again = await next_batch(client, consumer["id"], batch_size=3)

    assert [m["record"]["upstream_id"] for m in again["data"]] == ["cus_0", "cus_1", "cus_2"]
    assert again["info"] == {"num_pending": 1, "num_ack_pending": 3}


async def test_filters_choose_the_changes_a_consumer_receives(server, client):
    sync = await make_sync(client)
    customers = await make_consumer(client, filters=[{"sync_id": sync["id"], "collection_id": "stripe:customer"}])
    everything = await make_consumer(client, stream_id=sync["stream_id"])
    await write(server, sync["id"], "stripe:invoice", Change("in_1", {}))
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))

    got_customers = await next_batch(client, customers["id"], batch_size=10)
    got_everything = await next_batch(client, everything["id"], batch_size=10)

    assert [m["record"]["upstream_id"] for m in got_customers["data"]] == ["cus_1"]
    assert [m["record"]["upstream_id"] for m in got_everything["data"]] == ["in_1", "cus_1"]


async def test_one_records_changes_arrive_in_order_never_two_at_once(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 1}))
    await write(server, sync["id"], "stripe:customer", Change("cus_2", {"v": 1}))
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 2}))
    await write(server, sync["id"], "stripe:customer", Change.delete("cus_1"))

    first = await next_batch(client, consumer["id"], batch_size=10)
    assert [(m["record"]["upstream_id"], m["action"]) for m in first["data"]] == [("cus_1", "insert"), ("cus_2", "insert")]
    assert (await next_batch(client, consumer["id"], batch_size=10))["data"] == []  # cus_1's next waits for the ack

    await ack(client, consumer["id"], first["data"][0]["ack_token"])
    second = await next_batch(client, consumer["id"], batch_size=10)
    assert [(m["record"]["data"], m["action"]) for m in second["data"]] == [({"v": 2}, "update")]

    await ack(client, consumer["id"], second["data"][0]["ack_token"])
    third = await next_batch(client, consumer["id"], batch_size=10)
    assert [(m["record"]["deleted"], m["action"]) for m in third["data"]] == [(True, "delete")]


async def test_an_unacked_message_is_delivered_again_after_the_ack_wait(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], ack_wait_ms=300)
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))
    first = await next_batch(client, consumer["id"])
    assert (await next_batch(client, consumer["id"]))["data"] == []  # still within its ack wait

    again = await next_batch(client, consumer["id"], wait_for=3000)  # woken when the ack wait ends

    assert again["data"][0]["record"]["upstream_id"] == "cus_1"
    assert again["data"][0]["ack_token"] != first["data"][0]["ack_token"]
    late = await ack(client, consumer["id"], first["data"][0]["ack_token"])
    assert late["unknown_ack_tokens"] == [first["data"][0]["ack_token"]]  # that delivery is over
    assert (await ack(client, consumer["id"], again["data"][0]["ack_token"]))["acked"] == 1


async def test_nack_gives_messages_back_at_once_or_after_a_delay(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))
    token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]

    nacked = await client.rest.post(f"/v1/http-consumers/{consumer['id']}/nack", json={"ack_tokens": [token]})
    assert nacked.json() == {"success": True, "nacked": 1, "unknown_ack_tokens": []}
    token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]

    await client.rest.post(
        f"/v1/http-consumers/{consumer['id']}/nack", json={"ack_tokens": [token], "delay_ms": 400}
    )
    assert (await next_batch(client, consumer["id"]))["data"] == []
    started = time.monotonic()
    later = await next_batch(client, consumer["id"], wait_for=3000)
    assert later["data"] and 0.2 < time.monotonic() - started < 2.0


async def test_a_long_poll_wakes_as_soon_as_a_change_is_written(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])

    async def write_soon():
        await asyncio.sleep(0.3)
        await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))

    writer = asyncio.create_task(write_soon())
    started = time.monotonic()
    batch = await next_batch(client, consumer["id"], wait_for=10000)
    elapsed = time.monotonic() - started
    await writer

    assert [m["record"]["upstream_id"] for m in batch["data"]] == ["cus_1"]
    assert 0.25 < elapsed < 0.9  # not the poll interval (1 s), let alone wait_for


async def test_a_long_poll_without_changes_answers_empty_when_wait_for_ends(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])

    started = time.monotonic()
    batch = await next_batch(client, consumer["id"], wait_for=500)

    assert batch["data"] == [] and 0.45 < time.monotonic() - started < 1.5


async def test_a_server_stopping_answers_waiting_long_polls_at_once_with_their_empty_batch(database_url):
    from conftest import Running, _client_for, settings_for

    from headwater.server import Server

    settings = settings_for(database_url)
    running = Running(await Server.start(settings), settings)
    client = await _client_for(running, "acme")
    try:
        sync = await make_sync(client)
        consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
        polling = asyncio.create_task(
            client.rest.get(f"/v1/http-consumers/{consumer['id']}/next", params={"wait_for": 30000}, timeout=60)
        )
        receiving = client.consumers.Receive(consumer_pb2.ReceiveRequest(id=consumer["id"]), metadata=client.metadata)
        received = asyncio.create_task(receiving.read())
        await asyncio.sleep(0.5)

        started = time.monotonic()
        await running.server.stop()  # as SIGTERM does: calls in flight get up to 5 s
        stopped = time.monotonic() - started
        answer = await polling
        await received
        status = await receiving.code()
    finally:
        await client.rest.aclose()
        await client.channel.close()

    assert answer.status_code == 200
    assert answer.json()["data"] == []
    assert status == grpc.StatusCode.OK  # the stream ends, it is not cut
    assert stopped < 1.5


@pytest.mark.parametrize(
    ("params", "field"), [({"batch_size": 1001}, "batch_size"), ({"wait_for": 60001}, "wait_for"), ({"wait_for": -1}, "wait_for")]
)
async def test_next_refuses_bad_parameters(client, params, field):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])

    response = await client.rest.get(f"/v1/http-consumers/{consumer['id']}/next", params=params)

    assert response.status_code == 400 and field in response.json()["message"]


async def test_concurrent_receivers_never_get_the_same_message(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {}) for i in range(40)))
    received: list[str] = []

    async def receiver():
        while batch := (await next_batch(client, consumer["id"], batch_size=3))["data"]:
            received.extend(m["record"]["upstream_id"] for m in batch)
            await ack(client, consumer["id"], *(m["ack_token"] for m in batch))

    await asyncio.gather(*(receiver() for _ in range(4)))

    assert sorted(received) == sorted(f"cus_{i}" for i in range(40))  # each once, none lost


# --- where a new consumer starts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # cus_1's second change waits for its first to be acked, so it comes in the second batch
        ("all", [("cus_1", {"v": 1}), ("cus_2", {"v": 1}), ("cus_3", {"v": 1}), ("cus_1", {"v": 2})]),
        ("last", [("cus_2", {"v": 1}), ("cus_1", {"v": 2}), ("cus_3", {"v": 1})]),
        ("new", [("cus_3", {"v": 1})]),
    ],
)
async def test_deliver_policy_says_where_a_new_consumer_starts(server, client, policy, expected):
    sync = await make_sync(client)
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 1}), Change("cus_2", {"v": 1}))
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 2}))
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], deliver_policy=policy)
    await write(server, sync["id"], "stripe:customer", Change("cus_3", {"v": 1}))

    received = []
    while batch := (await next_batch(client, consumer["id"], batch_size=10))["data"]:
        received += [(m["record"]["upstream_id"], m["record"]["data"]) for m in batch]
        await ack(client, consumer["id"], *(m["ack_token"] for m in batch))

    assert received == expected


# --- limits and parking ---------------------------------------------------------------------------


async def test_max_ack_pending_caps_what_is_out_at_once(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], max_ack_pending=2)
    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {}) for i in range(3)))

    first = await next_batch(client, consumer["id"], batch_size=10)
    assert len(first["data"]) == 2
    assert (await next_batch(client, consumer["id"], batch_size=10))["data"] == []

    await ack(client, consumer["id"], first["data"][0]["ack_token"])
    assert len((await next_batch(client, consumer["id"], batch_size=10))["data"]) == 1


async def test_after_max_deliver_a_message_is_parked_and_can_be_redelivered(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}], max_deliver=2)
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 1}))
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 2}))
    url = f"/v1/http-consumers/{consumer['id']}"

    for _ in range(2):
        token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]
        await client.rest.post(f"{url}/nack", json={"ack_tokens": [token]})

    # parked: set aside, and the record's next change is no longer held up by it
    following = await next_batch(client, consumer["id"])
    assert [m["record"]["data"] for m in following["data"]] == [{"v": 2}]
    await ack(client, consumer["id"], following["data"][0]["ack_token"])
    parked = (await client.rest.get(f"{url}/parked")).json()
    assert parked == {
        "data": [
            {
                "id": parked["data"][0]["id"],
                "record": parked["data"][0]["record"],
                "action": "insert",
                "deliver_count": 2,
                "last_error": "nacked (delivered 2 times)",
            }
        ],
        "next_page_token": "",
    }
    assert parked["data"][0]["record"]["data"] == {"v": 1}
    assert (await client.rest.get(url)).json()["backlog"] == {"num_pending": 0, "num_ack_pending": 0, "num_parked": 1}

    redelivered = await client.rest.post(f"{url}/redeliver", json={"message_ids": [parked["data"][0]["id"]]})
    assert redelivered.json() == {"redelivered": 1}
    assert [m["record"]["data"] for m in (await next_batch(client, consumer["id"]))["data"]] == [{"v": 1}]
    assert (await client.rest.get(f"{url}/parked")).json()["data"] == []
    assert (await client.rest.get(url)).json()["backlog"] == {"num_pending": 0, "num_ack_pending": 1, "num_parked": 0}


# --- gRPC ------------------------------------------------------------------------------------------


async def test_receive_streams_batches_as_they_come_and_ack_over_grpc(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 1}))
    stream = client.consumers.Receive(
        consumer_pb2.ReceiveRequest(id=consumer["id"], batch_size=10), metadata=client.metadata
    )

    first = await asyncio.wait_for(stream.read(), 5)
    await write(server, sync["id"], "stripe:customer", Change("cus_2", {"v": 1}))
    second = await asyncio.wait_for(stream.read(), 5)
    acked = await client.consumers.Ack(
        consumer_pb2.AckRequest(id=consumer["id"], ack_tokens=[m.ack_token for m in [*first.data, *second.data]]),
        metadata=client.metadata,
    )
    stream.cancel()

    assert [m.record.upstream_id for m in first.data] == ["cus_1"]
    assert [m.record.upstream_id for m in second.data] == ["cus_2"]
    assert second.data[0].record.data["v"] == 1 and second.data[0].action == "insert"
    assert acked.acked == 2


async def test_receive_on_an_unknown_consumer_fails_like_a_unary_call(client):
    stream = client.consumers.Receive(consumer_pb2.ReceiveRequest(id="nope"), metadata=client.metadata)

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stream.read()

    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in failure.value.details()


async def test_next_over_grpc(server, client):
    sync = await make_sync(client)
    created = await client.consumers.CreateConsumer(
        consumer_pb2.CreateConsumerRequest(
            consumer=consumer_pb2.Consumer(filters=[consumer_pb2.ConsumerFilter(sync_id=sync["id"])])
        ),
        metadata=client.metadata,
    )
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"email": "paul@arrakis.org"}))

    answer = await client.consumers.Next(
        consumer_pb2.NextRequest(id=created.consumer.id, wait_for=1000), metadata=client.metadata
    )

    assert answer.data[0].record.data["email"] == "paul@arrakis.org"
    assert answer.info.num_ack_pending == 1


# --- read-your-writes: the ack waiter -------------------------------------------------------------


async def test_the_ack_waiter_returns_once_the_consumer_acked(server, client):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    (written,) = await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))
    acks = server.server.backend.acks
    org_id = consumer["org_id"]

    assert await acks.wait(org_id, [consumer["id"]], [written.event.seq], 0.2) == [consumer["id"]]

    async def consume():
        batch = await next_batch(client, consumer["id"], wait_for=2000)
        await asyncio.sleep(0.2)
        await ack(client, consumer["id"], batch["data"][0]["ack_token"])

    consuming = asyncio.create_task(consume())
    started = time.monotonic()
    pending = await acks.wait(org_id, [consumer["id"]], [written.event.seq], 10)
    await consuming

    assert pending == [] and time.monotonic() - started < 0.9


async def test_the_ack_waiter_needs_no_ack_for_events_a_consumer_does_not_receive(server, client):
    sync = await make_sync(client)
    invoices = await make_consumer(client, filters=[{"sync_id": sync["id"], "collection_id": "stripe:invoice"}])
    (written,) = await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))

    pending = await server.server.backend.acks.wait(invoices["org_id"], [invoices["id"]], [written.event.seq], 5)

    assert pending == []


async def test_the_ack_waiter_refuses_unknown_and_other_organisations_consumers(server, client, other_client):
    from headwater.errors import ApiError

    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    other_org = (await make_consumer(other_client, filters=[{"sync_id": (await make_sync(other_client))["id"]}]))["org_id"]

    for org_id, ids in ((consumer["org_id"], ["nope"]), (other_org, [consumer["id"]])):
        with pytest.raises(ApiError) as failure:
            await server.server.backend.acks.wait(org_id, ids, [1], 1)
        assert failure.value.code == grpc.StatusCode.NOT_FOUND and ids[0] in failure.value.message
