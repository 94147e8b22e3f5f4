"""The consumer queue's claim, as the database runs it (headwater.engine.queue, migration 0015)."""

from __future__ import annotations

import uuid

import pytest
from peewee import Value

from headwater.engine import queue
from headwater.rest import message_json
from headwater.store import Store
from headwater.store.models import Consumer, ConsumerMessage, Event, Org, Stream, database, utcnow

QUEUED = 3000


async def test_a_claim_looks_for_older_messages_of_a_record_in_the_head_index_before_any_statistics(database_url):
    """Each candidate's "is an older message of its record still out?" is one probe of
    consumer_message_head, whatever the planner knows: the queue below was filled a moment ago
    and never analyzed (PostgreSQL answered the probe from another index then, walking the queue)."""
    store = Store.open(database_url)
    try:
        await store.migrate()
        consumer = await store.run(_queue_for_one_consumer)

        plan = await store.run(_claim_plan, consumer.id, store.is_postgres)

        assert "consumer_message_head" in plan
    finally:
        await store.close()


def _queue_for_one_consumer() -> Consumer:
    org = Org.create(id=f"org-{uuid.uuid4().hex[:8]}", name="queue")
    stream = Stream.create(org=org, name="queue")
    consumer = Consumer.create(org=org, stream=stream, deliver_policy="new")
    Event.insert_many([
        {"stream": stream.id, "org": org.id, "sync_id": "sync", "collection_id": "stripe:customer",
         "record_id": f"rec_{n}", "action": "insert", "record": {"id": f"rec_{n}"}}
        for n in range(QUEUED)
    ]).execute()
    now = utcnow()
    M = ConsumerMessage
    M.insert_from(
        Event.select(Value(consumer.id), Event.seq, Event.record_id, Value("available"), Value(0), Value(now),
                     Value(""), Value(now)),
        [M.consumer, M.event, M.record_id, M.state, M.deliver_count, M.visible_at, M.last_error, M.created_at],
    ).execute()
    return consumer


def _claim_plan(consumer_id: str, postgres: bool) -> str:
    """How the database would run a claim of 100 of the consumer's messages now."""
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    now = utcnow()
    rows = database.execute_sql(explain + queue.sql_for(queue.CLAIM, postgres), (now, "token.", consumer_id, now, 100))
    return "\n".join(" ".join(str(value) for value in row) for row in rows.fetchall())



async def test_on_postgresql_a_claim_and_an_ack_commit_without_waiting_for_the_disk_and_nothing_else_does(database_url):
    """A claim or an ack lost in a PostgreSQL crash is a redelivery (at least once), so theirs
    are asynchronous commits (`synchronous_commit` off for their own transaction only); the next
    unit of work, on the same pooled connection, commits durably again."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's commits in WAL mode (synchronous=normal) do not wait for the disk anyway")
    store = Store.open(database_url)
    try:
        await store.migrate()
        consumer = await store.run(_queue_for_one_consumer)

        def claim_and_ack():
            [delivery] = queue.claim(consumer, 1)
            after_claim = _synchronous_commit()
            acked = queue.ack(consumer.id, [delivery.ack_token])
            return after_claim, acked == {delivery.ack_token}, _synchronous_commit()

        after_claim, acked, after_ack = await store.run(claim_and_ack)
        afterwards = await store.run(_synchronous_commit)

        assert (after_claim, acked, after_ack, afterwards) == ("off", True, "off", "on")
    finally:
        await store.close()


def _synchronous_commit() -> str:
    return database.execute_sql("SELECT current_setting('synchronous_commit')").fetchone()[0]

# The REST answers of /next, webhooks and mutations are made from record documents directly
# (queue.record_json); gRPC callers get the message (queue.record_to_proto). Both must say the same.
DOCUMENT = {
    "id": "rec_1", "sync_id": "sync_1", "collection_id": "stripe:customer", "upstream_id": "cus_1",
    "upstream_updated_at": "2024-01-31T12:00:00Z", "deleted": False,
    "inserted_at": "2024-01-31T12:00:00.000100Z", "updated_at": "2024-01-31T12:00:00.123456Z",
    "data": {"name": "Ada", "count": 3, "ratio": 1.5, "big": 2**60, "huge": 1e300, "nested": [1, 2.0, True, None, {"zero": -0.0}],
             "flag": False, "text": "é\u2028"},
}


@pytest.mark.parametrize("changed", [
    {},
    {"upstream_updated_at": "2024-01-31T12:00:00.123000Z"},  # protobuf writes 3 digits of this
    {"upstream_updated_at": "2024-01-31T12:00:00.120000Z"},
    {"upstream_updated_at": "2024-01-31T14:00:00+02:00"},  # another offset: shown in UTC
    {"upstream_updated_at": "0999-01-01T00:00:00.000001Z"},
    {"upstream_updated_at": None},
    {"data": None},
    {"data": {}},
    {"deleted": True},
], ids=["as-written", "millis", "tenths", "offset", "year-999", "no-upstream-time", "no-data", "empty-data", "deleted"])
def test_a_record_reads_the_same_over_rest_and_grpc(changed):
    document = {**DOCUMENT, **changed}

    over_rest = queue.record_json(document)
    over_grpc = message_json(queue.record_to_proto(document))

    assert over_rest == over_grpc
    assert list(over_rest) == list(over_grpc)  # the keys in the message's order, too
