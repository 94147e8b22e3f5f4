"""A consumer's queue: the `consumer_message` rows owed to it, and what delivering them does.

`apply_changes` queues one row per event per matching consumer, in the event's transaction. From
then on a row is:

    available --claim--> delivered --ack--> (deleted)
        ^                    |
        +--- nack, or the ---+--- deliver_count reached max_deliver ---> parked --redeliver--> available
             ack wait ran out       (on nack, ack-wait expiry or a failed webhook POST)

- `claim` takes the oldest deliverable rows: available or delivered-but-expired (`visible_at` passed),
  each the oldest unparked row of its record, so one record's events go out in order and never
  two at once. Each claim gives the row a fresh `ack_token` and a deadline (`ack_wait_ms`); an
  expired row is simply claimable again: nothing has to run for redelivery to happen, and a
  restart loses nothing, since the state is all in the table. On PostgreSQL claimers skip rows
  another is claiming (FOR UPDATE SKIP LOCKED), so replicas share a consumer without collisions.
- `ack` deletes rows by token; a token that no longer names a delivered row (acked before, or
  redelivered since with a new token) is reported back, not an error.
- parked rows are set aside and do not hold up their record's later events; `redeliver` makes
  them available again with a fresh count.

Every function is synchronous Peewee code for `store.run`; every change wakes the consumer's
waiters (`announce`). `claim` and `ack`, which pull consumers call for every batch, are one
statement each (written out as SQL below, with `consumer_and_queue` before a claim), so a caller
may run them without a transaction of its own (`store.run(..., transaction=False)`).
"""

from __future__ import annotations

import datetime
import functools
import json
import secrets
from dataclasses import dataclass

from peewee import JOIN, Case, Value, fn
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.store.models import Consumer, ConsumerMessage, Event, Stream, as_datetime, database, utcnow
from headwater.store.notify import CHANNEL, announce, notify_payload
from headwater.v1 import common_pb2, consumer_pb2

AVAILABLE, DELIVERED, PARKED = "available", "delivered", "parked"
M = ConsumerMessage


@dataclass
class Delivery:
    """One claimed message: what a consumer is given."""

    message_id: int
    ack_token: str
    action: str
    record: dict  # the record document (records.record_document) at the time of the change
    deliver_count: int

    def to_proto(self) -> consumer_pb2.ConsumerMessage:
        """What pull consumers receive and webhooks are sent (REST and webhooks: its JSON)."""
        return consumer_pb2.ConsumerMessage(
            ack_token=self.ack_token, record=record_to_proto(self.record), action=self.action
        )

    def to_json(self) -> dict:
        """`to_proto()`'s JSON (rest.message_json), made from the record document without the message."""
        return {"ack_token": self.ack_token, "record": record_json(self.record), "action": self.action}


_TIMESTAMPS = ("upstream_updated_at", "inserted_at", "updated_at")


def record_to_proto(document: dict) -> common_pb2.Record:
    """A record document (records.record_document) as the Record message.

    Field by field rather than google.protobuf.json_format.ParseDict, which parses the timestamps with strptime
    and walks the data in Python: that was half of a batch's CPU (~0.3 ms a record)."""
    record = common_pb2.Record(
        id=document["id"], sync_id=document["sync_id"], collection_id=document["collection_id"],
        upstream_id=document["upstream_id"], deleted=document["deleted"],
    )
    for name in _TIMESTAMPS:
        if document[name] is not None:
            getattr(record, name).FromDatetime(datetime.datetime.fromisoformat(document[name]))
    if document["data"] is not None:
        record.data.SetInParent()  # {} is data too
        record.data.update(document["data"])
    return record


def record_json(document: dict) -> dict:
    """`rest.message_json(record_to_proto(document))`, computed from the document directly: the
    timestamps as protobuf writes them (0, 3, 6 or 9 digits of fraction), the data's numbers as a
    Struct holds them (doubles, shown as integers where they are: `integral_numbers`)."""
    def moment(name: str) -> str | None:
        return None if document[name] is None else _timestamp_json(document[name])

    return {  # in the message's field order, as message_json gives them
        "id": document["id"], "sync_id": document["sync_id"], "collection_id": document["collection_id"],
        "upstream_id": document["upstream_id"], "upstream_updated_at": moment("upstream_updated_at"),
        "data": None if document["data"] is None else _struct_json(document["data"]),
        "deleted": document["deleted"], "inserted_at": moment("inserted_at"), "updated_at": moment("updated_at"),
    }


def _timestamp_json(text: str) -> str:
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    whole, micros = moment.replace(microsecond=0).isoformat(), moment.microsecond
    if not micros:
        return whole + "Z"
    if micros % 1000 == 0:
        return f"{whole}.{micros // 1000:03d}Z"
    return f"{whole}.{micros:06d}Z"


def _struct_json(value):
    """A JSON value as a Struct holds it and `message_json` shows it."""
    if isinstance(value, dict):
        return {key: _struct_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_struct_json(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


@dataclass
class QueueInfo:
    num_pending: int  # deliverable now or later (including expired deliveries), not parked
    num_ack_pending: int  # delivered, waiting for the ack
    next_visible_at: datetime.datetime | None  # when a not-yet-deliverable row becomes deliverable

    def after_claim(self, claimed: int, deadline: datetime.datetime) -> QueueInfo:
        """The counts read before a claim at the same `now` (`consumer_and_queue`) as they are
        after it: the `claimed` messages went from pending to in flight, deliverable again at
        `deadline`. (Not after a claim that parked messages: see `_park_spent`.)"""
        if not claimed:
            return self
        next_visible_at = deadline if self.next_visible_at is None else min(self.next_visible_at, deadline)
        return QueueInfo(self.num_pending - claimed, self.num_ack_pending + claimed, next_visible_at)


def _is_postgres() -> bool:
    return isinstance(database.obj, AsyncPostgresqlDatabase)


# --- filling a new consumer's queue ------------------------------------------------------------


def filter_condition(filters: list[dict]):
    """The SQL condition on Event of a consumer's filters (records.matches, in SQL)."""
    condition = None
    for f in filters:
        term = Value(True)
        for key in ("sync_id", "collection_id", "record_id", "action"):
            if f.get(key):
                term &= getattr(Event, key) == f[key]
        condition = term if condition is None else (condition | term)
    return Value(True) if condition is None else condition


def backfill(consumer: Consumer) -> None:
    """Queues the stream's past events for a consumer being created, per its deliver_policy:
    "all" every matching event, "last" the latest matching event of each record, "new" none.

    Call in the consumer's creating transaction. On PostgreSQL the stream row is locked FOR UPDATE
    first, so writers (records.stream_consumers) either finished before (their events are here)
    or see this consumer (they queue for it)."""
    if _is_postgres():
        list(Stream.select(Stream.id).where(Stream.id == consumer.stream_id).for_update())
    if consumer.deliver_policy == "new":
        return
    matching = (Event.stream == consumer.stream_id) & filter_condition(consumer.filters)
    if consumer.deliver_policy == "last":
        latest = Event.select(fn.MAX(Event.seq)).where(matching).group_by(Event.record_id)
        matching = Event.seq.in_(latest)
    now = utcnow()
    rows = Event.select(
        Value(consumer.id), Event.seq, Event.record_id, Value(AVAILABLE), Value(0), Value(now), Value(""), Value(now)
    ).where(matching)
    fields = [M.consumer, M.event, M.record_id, M.state, M.deliver_count, M.visible_at, M.last_error, M.created_at]
    M.insert_from(rows, fields).execute()
    announce([consumer.id])


# --- delivering ----------------------------------------------------------------------------------


# The statements a pull consumer's next and ack run on every call are written out as SQL, each a
# constant: building them with Peewee cost more CPU than everything else of the call (its
# expression tree is compiled again on every call). `sql_for` adapts one to the database in use.

CLAIM = """
UPDATE consumer_message SET state = 'delivered', deliver_count = deliver_count + 1,
    visible_at = %s, ack_token = %s || CAST(id AS TEXT)
WHERE {id_among} (
    SELECT m.id FROM consumer_message AS m
    WHERE m.consumer_id = %s AND m.state IN ('available', 'delivered') AND m.visible_at <= %s
      AND NOT EXISTS (SELECT 1 FROM consumer_message AS older
                      WHERE older.consumer_id || older.record_id = m.consumer_id || m.record_id
                        AND older.event_id < m.event_id AND older.state <> 'parked')
    ORDER BY m.event_id LIMIT %s {row_lock}){close}
RETURNING id, ack_token, deliver_count, event_id,
    (SELECT event.action FROM event WHERE event.seq = consumer_message.event_id),
    (SELECT event.record FROM event WHERE event.seq = consumer_message.event_id) {async_commit}
"""

ACK = """
DELETE FROM consumer_message
WHERE consumer_id = %s AND state = 'delivered' AND ack_token IN ({tokens}) {of_org}
RETURNING ack_token {notify} {async_commit}
"""
OF_ORG = "AND EXISTS (SELECT 1 FROM consumer WHERE id = %s AND org_id = %s AND kind <> 'events')"

CONSUMER_AND_QUEUE = """
SELECT c.id, c.org_id, c.kind, c.ack_wait_ms, c.max_deliver, c.max_ack_pending,
    q.num_ack_pending, q.num_unparked, q.next_visible_at
FROM consumer AS c, (
    SELECT COUNT(CASE WHEN state = 'delivered' AND visible_at > %s THEN 1 END) AS num_ack_pending,
        COUNT(*) AS num_unparked, MIN(CASE WHEN visible_at > %s THEN visible_at END) AS next_visible_at
    FROM consumer_message WHERE consumer_id = %s AND state <> 'parked') AS q
WHERE c.id = %s AND c.org_id = %s AND c.kind <> 'events'
"""


@functools.cache
def sql_for(statement: str, postgres: bool, tokens: int = 0, of_org: bool = False) -> str:
    """A statement above for PostgreSQL (the row lock; arrays of the claim's ids and of an ack's
    tokens) or SQLite (`?` placeholders; an ack's tokens one placeholder each)."""
    statement = statement.format(
        row_lock="FOR UPDATE SKIP LOCKED" if postgres else "",
        # PostgreSQL: the chosen ids as an array, so that the UPDATE finds each by its primary key
        # (with `id IN (...)` it may hash them and scan the whole table for matches).
        id_among="id = ANY(ARRAY" if postgres else "id IN",
        close=")" if postgres else "",
        tokens="SELECT unnest(%s::text[])" if postgres else ", ".join(["%s"] * tokens),
        of_org=OF_ORG if of_org else "",
        # The NOTIFY of notify.announce, sent by the ack itself (PostgreSQL sends one of a
        # transaction's identical notifications, whatever the number of rows).
        notify=", pg_notify(%s, %s)" if postgres else "",
        # PostgreSQL: the statement's own commit does not wait for the WAL to reach the disk (an
        # fsync, 0.4-4 ms on the development machines, most of a next + ack). What a PostgreSQL
        # crash may then lose is a claim or an ack of its last fraction of a second: the message
        # is delivered again, as at-least-once allows; a kill -9 of Headwater loses nothing, and
        # the records, events and queued messages themselves are still committed durably.
        async_commit=", set_config('synchronous_commit', 'off', true)" if postgres else "",
    )
    return statement if postgres else statement.replace("%s", "?")


def claim(consumer: Consumer, limit: int, now: datetime.datetime | None = None) -> list[Delivery]:
    """Delivers up to `limit` messages: marks them delivered until now + ack_wait_ms.

    The claim is one statement (`CLAIM`): an UPDATE of the oldest deliverable messages
    (available, or delivered and not acked in time, and each the oldest unparked message of its
    record: only it may go out), RETURNING each with its event; on PostgreSQL the rows are chosen
    FOR UPDATE SKIP LOCKED, so claimers of one consumer never take the same row. It needs no
    transaction of its own (`store.run(..., transaction=False)`). Before it, and only for
    consumers with these limits, a statement parks the spent deliveries (max_deliver) and one
    counts those in flight (max_ack_pending).

    "No older unparked message of the record" is an index probe per candidate on (consumer_id ||
    record_id, event_id) (migration 0015): the concatenation, which only that index holds, keeps
    PostgreSQL from answering it from another index when it has no statistics yet."""
    now = now or utcnow()
    mine = M.consumer == consumer.id
    _park_spent(mine & (M.state == DELIVERED) & (M.visible_at <= now), consumer.max_deliver,
                f"not acked within {consumer.ack_wait_ms} ms")
    if consumer.max_ack_pending:
        in_flight = M.select().where(mine & (M.state == DELIVERED) & (M.visible_at > now)).count()
        limit = min(limit, consumer.max_ack_pending - in_flight)
        if limit <= 0:
            return []
    deadline = now + datetime.timedelta(milliseconds=consumer.ack_wait_ms)
    prefix = secrets.token_urlsafe(16) + "."
    cursor = database.execute_sql(sql_for(CLAIM, _is_postgres()), (deadline, prefix, consumer.id, now, limit))
    return [
        Delivery(message_id, ack_token, action, json.loads(record), deliver_count)
        for message_id, ack_token, deliver_count, _, action, record, *_ in sorted(cursor.fetchall(), key=lambda row: row[3])
    ]


def ack(consumer_id: str, tokens: list[str], org_id: str | None = None) -> set[str] | None:
    """Deletes the delivered messages these tokens name; returns the tokens that named one. One
    statement (`ACK`).

    `org_id`: only if the consumer is one of the organisation's (as `Consumer.visible_to` shows
    them), checked by the same statement; when nothing was acked and it is not one of them, None
    (the caller answers NOT_FOUND)."""
    tokens = list(dict.fromkeys(tokens))
    if not tokens:
        return set()
    postgres = _is_postgres()
    params = [consumer_id, *([tokens] if postgres else tokens)]
    if org_id is not None:
        params += [consumer_id, org_id]
    if postgres:
        params += [CHANNEL, notify_payload([consumer_id])]
    sql = sql_for(ACK, postgres, len(tokens), org_id is not None)
    done = {row[0] for row in database.execute_sql(sql, params).fetchall()}
    if done:
        announce([consumer_id], notified=postgres)
    elif org_id is not None and not Consumer.visible_to(org_id).where(Consumer.id == consumer_id).exists():
        return None
    return done


def consumer_and_queue(org_id: str, consumer_id: str, now: datetime.datetime) -> tuple[Consumer | None, QueueInfo]:
    """The organisation's consumer (as `Consumer.visible_to` shows them; None if it is not one) with
    what a claim needs of it, and its queue's counts at `now`, in one statement. After a claim at
    the same `now`, `QueueInfo.after_claim` gives the counts as they then are."""
    row = database.execute_sql(
        sql_for(CONSUMER_AND_QUEUE, _is_postgres()), (now, now, consumer_id, consumer_id, org_id)
    ).fetchone()
    if row is None:
        return None, QueueInfo(0, 0, None)
    id_, org, kind, ack_wait_ms, max_deliver, max_ack_pending, num_ack_pending, num_unparked, next_visible_at = row
    consumer = Consumer(id=id_, org=org, kind=kind, ack_wait_ms=ack_wait_ms, max_deliver=max_deliver,
                        max_ack_pending=max_ack_pending)
    return consumer, QueueInfo(num_unparked - num_ack_pending, num_ack_pending, as_datetime(next_visible_at))


def nack(consumer: Consumer, tokens: list[str], delay_ms: int = 0, error: str = "") -> set[str]:
    """Gives delivered messages back: available again after `delay_ms`, or parked when they were
    delivered max_deliver times. Returns the tokens that named a delivered message."""
    tokens = list(dict.fromkeys(tokens))
    if not tokens:
        return set()
    query = M.select(M.id, M.ack_token).where(
        (M.consumer == consumer.id) & M.ack_token.in_(tokens) & (M.state == DELIVERED)
    )
    if _is_postgres():
        query = query.for_update()
    named = {row.id: row.ack_token for row in query}
    if not named:
        return set()
    given_back = M.id.in_(list(named))
    _park_spent(given_back, consumer.max_deliver, error or "nacked")
    M.update(
        state=AVAILABLE,
        visible_at=utcnow() + datetime.timedelta(milliseconds=delay_ms),
        ack_token=None,
        last_error=error,
    ).where(given_back & (M.state == DELIVERED)).execute()
    announce([consumer.id])
    return set(named.values())


def _park_spent(condition, max_deliver: int, reason: str) -> None:
    """Parks the messages matching `condition` that were delivered max_deliver times (0: never)."""
    if max_deliver:
        M.update(state=PARKED, ack_token=None, last_error=f"{reason} (delivered {max_deliver} times)").where(
            condition & (M.deliver_count >= max_deliver)
        ).execute()


def info(consumer_id: str) -> QueueInfo:
    now = utcnow()
    in_flight = (M.state == DELIVERED) & (M.visible_at > now)
    num_ack_pending, count, next_visible_at = (
        M.select(
            fn.COUNT(Case(None, [(in_flight, M.id)])),
            fn.COUNT(M.id),
            fn.MIN(Case(None, [(M.visible_at > now, M.visible_at)])),
        )
        .where((M.consumer == consumer_id) & (M.state != PARKED))
        .tuples()
        .get()
    )
    return QueueInfo(count - num_ack_pending, num_ack_pending, as_datetime(next_visible_at))


@dataclass(frozen=True)
class Backlog:
    """A consumer's queue as it is now: what the console and the consumer's answers show."""

    num_pending: int = 0  # deliverable now or later (including expired deliveries), not parked
    num_ack_pending: int = 0  # delivered, waiting for the ack
    num_parked: int = 0


def backlogs(consumer_ids: list[str]) -> dict[str, Backlog]:
    """The queues of these consumers, in one grouped statement (consumers with none: no entry)."""
    if not consumer_ids:
        return {}
    now = utcnow()
    in_flight = (M.state == DELIVERED) & (M.visible_at > now)
    rows = (
        M.select(
            M.consumer,
            fn.COUNT(Case(None, [(M.state == PARKED, M.id)])),
            fn.COUNT(Case(None, [(in_flight, M.id)])),
            fn.COUNT(M.id),
        )
        .where(M.consumer.in_(consumer_ids))
        .group_by(M.consumer)
        .tuples()
    )
    return {consumer: Backlog(total - parked - ack_pending, ack_pending, parked)
            for consumer, parked, ack_pending, total in rows}


# --- parked messages ---------------------------------------------------------------------------


def parked(consumer_id: str, after_id: int, limit: int) -> list[tuple[ConsumerMessage, Event]]:
    """A page of parked messages, oldest first, with their events."""
    rows = (
        M.select(M, Event)
        .join(Event, JOIN.INNER, on=(M.event == Event.seq))
        .where((M.consumer == consumer_id) & (M.state == PARKED) & (M.id > after_id))
        .order_by(M.id)
        .limit(limit)
    )
    return [(row, row.event) for row in rows]


def redeliver(consumer_id: str, message_ids: list[int]) -> int:
    """Makes parked messages (these, or all when none are named) available again."""
    condition = (M.consumer == consumer_id) & (M.state == PARKED)
    if message_ids:
        condition &= M.id.in_(message_ids)
    count = M.update(state=AVAILABLE, deliver_count=0, visible_at=utcnow(), last_error="").where(condition).execute()
    if count:
        announce([consumer_id])
    return count
