"""Writing records and their events (headwater.store.records.apply_changes), the bulk write path of
syncs and mutations: what a consumer is handed is the record as each change left it."""

from __future__ import annotations

import time

from headwater.store.models import Event, Record, Sync
from headwater.store.records import Change, apply_changes, record_document


async def make_sync(client) -> dict:
    stream = await client.rest.post("/v1/streams", json={"name": f"stream-{time.monotonic_ns()}"})
    assert stream.status_code == 200, stream.text
    response = await client.rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream.json()["id"], "collection_ids": ["stripe:customer"],
        "rate_limit": {"allowed_requests": 100, "interval": 60},
        "credential": {"properties": {"kind": "stripe_oauth2", "secret": "sk_test_x"}},
    })
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_record_changed_twice_in_one_write_streams_each_state_in_order(server, client):
    sync = await make_sync(client)
    consumer = await client.rest.post("/v1/http-consumers", json={"stream_id": sync["stream_id"]})
    assert consumer.status_code == 200, consumer.text
    changes = [
        Change("cus_1", {"email": "paul@arrakis.org", "plan": "free"}),
        Change("cus_2", {"email": "chani@arrakis.org"}),
        Change("cus_1", {"email": "paul@arrakis.org", "plan": "pro"}),
    ]

    def apply():
        return apply_changes(Sync.get_by_id(sync["id"]), "stripe:customer", changes)

    def stored():
        events = list(Event.select().where(Event.stream == sync["stream_id"]).order_by(Event.seq))
        return events, {r.upstream_id: r for r in Record.select().where(Record.sync == sync["id"])}

    written = await server.server.store.run(apply)
    events, records = await server.server.store.run(stored)

    assert [(e.action, e.record["upstream_id"], e.record["data"].get("plan")) for e in events] == [
        ("insert", "cus_1", "free"), ("insert", "cus_2", None), ("update", "cus_1", "pro"),
    ]
    assert records["cus_1"].data == {"email": "paul@arrakis.org", "plan": "pro"}
    assert [e.record for e in events][1] == record_document(records["cus_2"])
    assert [w.event.seq for w in written] == [e.seq for e in events]
    batch = await client.rest.get(f"/v1/http-consumers/{consumer.json()['id']}/next", params={"batch_size": 10})
    assert batch.status_code == 200, batch.text
    assert {m["record"]["upstream_id"] for m in batch.json()["data"]} == {"cus_1", "cus_2"}  # one of each at a time
