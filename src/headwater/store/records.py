"""Writing records and their events: the one write path of syncs and mutations alike.

    changes = [Change("cus_1", {"email": "paul@arrakis.org"}, updated_at), Change.delete("cus_2")]
    written = await store.run(apply_changes, sync, "stripe:customer", changes)
    for w in written: w.record, w.event   # event is None when nothing changed

In one transaction (the caller's `store.run`), for each change: the record row is inserted,
updated or marked deleted; when that changed anything, an event carrying the record as consumers
see it is appended to the sync's stream; and one message per matching consumer of that stream is
queued (fan-out on write), so an event is never lost between being written and being delivered.

An unchanged record (same data, same deleted flag) writes nothing and produces no event: a record
that a mutation wrote and the sync then reads back unchanged produces no second event.

Waiters on those consumers (long-polls, webhook delivery, mutations awaiting consumers) are woken
when the transaction commits (`headwater.store.notify.announce`): callers need do nothing more.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from peewee import chunked
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.store.models import Consumer, ConsumerMessage, Event, Record, Stream, Sync, database, iso, utcnow
from headwater.store.notify import announce

INSERT, UPDATE, DELETE = "insert", "update", "delete"
# Rows per bulk INSERT of records and events: within every database's limit of query parameters.
_ROWS_PER_STATEMENT = 200


@dataclass(frozen=True)
class Change:
    """What an upstream says one record now is."""

    upstream_id: str
    data: dict | None = None
    upstream_updated_at: datetime.datetime | None = None
    deleted: bool = False

    @classmethod
    def delete(cls, upstream_id: str, upstream_updated_at: datetime.datetime | None = None) -> Change:
        return cls(upstream_id, None, upstream_updated_at, deleted=True)


@dataclass
class Written:
    record: Record
    event: Event | None  # None: the record was already so; nothing written


def record_document(record: Record) -> dict:
    """A record as the API and consumers show it (the documented Record shape)."""
    return {
        "id": record.id,
        "sync_id": record.sync_id,
        "collection_id": record.collection_id,
        "upstream_id": record.upstream_id,
        "upstream_updated_at": iso(record.upstream_updated_at),
        "data": record.data,
        "deleted": record.deleted,
        "inserted_at": iso(record.inserted_at),
        "updated_at": iso(record.updated_at),
    }


def apply_changes(sync: Sync, collection_id: str, changes: list[Change]) -> list[Written]:
    """Applies upstream changes to the records of one collection; call inside `store.run`.

    The rows are written in bulk (new records, events and consumer messages with one statement per
    few hundred rows); only records that already existed are updated one by one."""
    if not changes:
        return []
    ids = [c.upstream_id for c in changes]
    existing = {
        r.upstream_id: r
        for r in Record.select().where(
            (Record.sync == sync.id) & (Record.collection_id == collection_id) & (Record.upstream_id.in_(ids))
        )
    }
    now = utcnow()
    new: dict[str, Record] = {}  # records to insert, by upstream id (their state after every change)
    updated: dict[str, Record] = {}  # records that existed before and changed
    outcomes: list[tuple[Record, dict | None]] = []  # each change's record and its event's row
    for change in changes:
        uid = change.upstream_id
        is_new = uid in new or uid not in existing  # not in the table yet: inserted, not updated
        record, action = _apply(sync, collection_id, new[uid] if uid in new else existing.get(uid), change, now)
        row = None
        if action is not None:
            (new if is_new else updated)[uid] = record
            row = {
                "stream": sync.stream_id, "org": sync.org_id, "sync_id": sync.id, "collection_id": collection_id,
                "record_id": record.id, "action": action, "record": record_document(record), "created_at": now,
            }
        outcomes.append((record, row))

    for chunk in chunked([r.__data__ for r in new.values()], _ROWS_PER_STATEMENT):
        Record.insert_many(chunk).execute()
    for record in updated.values():
        record.save()
    rows = [row for _, row in outcomes if row is not None]
    seqs: list[int] = []
    for chunk in chunked(rows, _ROWS_PER_STATEMENT):
        # Sequence numbers are handed out in the order of the rows (RETURNING's own order is
        # not promised, hence the sort).
        seqs += sorted(r.seq for r in Event.insert_many(chunk).returning(Event.seq).objects().execute())
    events = iter(Event(seq=seq, **row) for seq, row in zip(seqs, rows))
    written = [Written(record, None if row is None else next(events)) for record, row in outcomes]

    consumers = stream_consumers(sync.stream_id)
    _enqueue([m for w in written if w.event is not None for m in _messages(w.event, consumers)])
    return written


def _apply(
    sync: Sync, collection_id: str, record: Record | None, change: Change, now: datetime.datetime
) -> tuple[Record, str | None]:
    """The record after the change (not saved), and the event's action (None: nothing changed)."""
    if record is None:
        record = Record(
            org=sync.org_id,
            sync=sync.id,
            collection_id=collection_id,
            upstream_id=change.upstream_id,
            upstream_updated_at=change.upstream_updated_at,
            data=change.data or {},
            deleted=change.deleted,
            inserted_at=now,
            updated_at=now,
        )
        if change.deleted:
            return record, None  # never seen, already gone: nothing to keep or tell
        return record, INSERT
    if change.deleted:
        if record.deleted:
            return record, None
        record.deleted = True
        action = DELETE
    else:
        if not record.deleted and record.data == change.data:
            return record, None
        action = INSERT if record.deleted else UPDATE  # a deleted record that is back counts as new
        record.deleted = False
        record.data = change.data or {}
    if change.upstream_updated_at is not None:
        record.upstream_updated_at = change.upstream_updated_at
    record.updated_at = now
    return record, action


def matches(filters: list[dict], event: Event) -> bool:
    """Whether a consumer with these filters receives the event (no filters: every event). Event
    endpoints filter on `action`, their events' type."""
    if not filters:
        return True
    values = {"sync_id": event.sync_id, "collection_id": event.collection_id, "record_id": event.record_id,
              "action": event.action}
    return any(all(values.get(k) == v for k, v in f.items() if v) for f in filters)


def stream_consumers(stream_id: str) -> list[Consumer]:
    """The consumers of a stream, read so that none is being created meanwhile.

    On PostgreSQL the stream row is share-locked (FOR KEY SHARE) first: creating a consumer locks
    it FOR UPDATE while it queues the stream's past events, so an event is either among those or
    written after the consumer exists and queued here, never neither. (SQLite has one writer.)
    """
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        list(Stream.select(Stream.id).where(Stream.id == stream_id).for_update("FOR KEY SHARE"))
    return list(Consumer.select().where(Consumer.stream == stream_id))


def queue_for_consumers(event: Event, consumers: list[Consumer]) -> None:
    """Queues the event for every consumer of its stream whose filters it matches (and wakes them)."""
    _enqueue(_messages(event, consumers))


def _messages(event: Event, consumers: list[Consumer]) -> list[dict]:
    return [
        {"consumer": c.id, "event": event.seq, "record_id": event.record_id, "visible_at": event.created_at}
        for c in consumers
        if matches(c.filters, event)
    ]


def _enqueue(rows: list[dict]) -> None:
    for chunk in chunked(rows, 500):
        ConsumerMessage.insert_many(chunk).execute()
    announce(row["consumer"] for row in rows)
