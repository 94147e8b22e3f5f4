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
import functools
import json
from dataclasses import dataclass

from peewee import chunked
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.store.models import Consumer, Event, Record, Stream, Sync, database, iso, utcnow
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

    The rows are written in bulk (new records, events and consumer messages: `_insert`); only
    records that already existed are updated one by one."""
    if not changes:
        return []
    existing = {r.upstream_id: r for r in _existing(sync.id, collection_id, list({c.upstream_id: None for c in changes}))}
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

    # A record's data is encoded once, for its row and inside its event's document (by identity:
    # a record changed twice in one call has two data, each event its own).
    encoded: dict[int, str] = {}

    def encode(data: dict) -> str:
        if id(data) not in encoded:
            encoded[id(data)] = _encode(data)
        return encoded[id(data)]

    _insert(_RECORDS, [(r.id, r.org_id, r.sync_id, r.collection_id, r.upstream_id, r.upstream_updated_at,
                        encode(r.data), r.deleted, r.inserted_at, r.updated_at) for r in new.values()])
    for record in updated.values():
        record.save()
    rows = [row for _, row in outcomes if row is not None]
    # Sequence numbers are handed out in the order of the rows (RETURNING's own order is not
    # promised, hence the sort).
    seqs = sorted(seq for (seq,) in _insert(_EVENTS, [
        (row["stream"], row["org"], row["sync_id"], row["collection_id"], row["record_id"], row["action"],
         _encode_with(row["record"], "data", encode(row["record"]["data"])), row["created_at"]) for row in rows
    ], returning="seq"))
    events = iter(Event(seq=seq, **row) for seq, row in zip(seqs, rows))
    written = [Written(record, None if row is None else next(events)) for record, row in outcomes]

    consumers = stream_consumers(sync.stream_id)
    _enqueue([m for w in written if w.event is not None for m in _messages(w.event, consumers)])
    return written


# --- bulk inserts: one statement per chunk of rows, its SQL made once per shape -------------------


@dataclass(frozen=True)
class _Table:
    """The columns a bulk insert fills, with their PostgreSQL types (for unnest's arrays)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (column, PostgreSQL type)


_RECORDS = _Table("record", (
    ("id", "text"), ("org_id", "text"), ("sync_id", "text"), ("collection_id", "text"), ("upstream_id", "text"),
    ("upstream_updated_at", "timestamp"), ("data", "text"), ("deleted", "boolean"), ("inserted_at", "timestamp"),
    ("updated_at", "timestamp"),
))
_EVENTS = _Table("event", (
    ("stream_id", "text"), ("org_id", "text"), ("sync_id", "text"), ("collection_id", "text"),
    ("record_id", "text"), ("action", "text"), ("record", "text"), ("created_at", "timestamp"),
))
_MESSAGES = _Table("consumer_message", (
    ("consumer_id", "text"), ("event_id", "bigint"), ("record_id", "text"), ("state", "text"),
    ("deliver_count", "integer"), ("visible_at", "timestamp"), ("last_error", "text"), ("created_at", "timestamp"),
))


def _insert(table: _Table, rows: list[tuple], returning: str | None = None) -> list[tuple]:
    """Inserts `rows` (values in `table`'s column order, as the driver takes them); with
    `returning`, that column of the rows inserted.

    PostgreSQL: one `INSERT ... SELECT * FROM unnest($1::text[], ...)` for all the rows, a column
    an array: one statement whatever the number of rows, prepared once (the connection's cache).
    SQLite: one multi-row `INSERT ... VALUES (?, ...), (?, ...)` per _ROWS_PER_STATEMENT rows
    (within its limit of parameters), its text made once per number of rows. Both skip Peewee's
    query builder, which cost more than the database did for a page of records."""
    if not rows:
        return []
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        return list(database.execute_sql(_unnest_sql(table, returning), [list(c) for c in zip(*rows)]).fetchall())
    out: list[tuple] = []
    for chunk in chunked(rows, _ROWS_PER_STATEMENT):
        cursor = database.execute_sql(_values_sql(table, len(chunk), returning), [v for row in chunk for v in row])
        if returning:
            out += cursor.fetchall()
    return out


@functools.cache
def _unnest_sql(table: _Table, returning: str | None) -> str:
    columns = ", ".join(name for name, _ in table.columns)
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in table.columns)
    return f"INSERT INTO {table.name} ({columns}) SELECT * FROM unnest({arrays})" + _returning(returning)


@functools.cache
def _values_sql(table: _Table, n: int, returning: str | None) -> str:
    columns = ", ".join(name for name, _ in table.columns)
    row = "(" + ", ".join("?" for _ in table.columns) + ")"
    return f"INSERT INTO {table.name} ({columns}) VALUES {', '.join([row] * n)}" + _returning(returning)


def _returning(column: str | None) -> str:
    return f" RETURNING {column}" if column else ""


def _encode(value) -> str:
    """JSON as a JSONField column holds it."""
    return Record.data.db_value(value)


def _encode_with(document: dict, key: str, encoded: str) -> str:
    """`_encode(document)`, with `document[key]` given already encoded (the keys are sorted, so
    it goes between the keys before it and those after)."""
    before = _encode({k: v for k, v in document.items() if k < key})
    after = _encode({k: v for k, v in document.items() if k > key})
    return (before[:-1] + ("," if len(before) > 2 else "") + json.dumps(key) + ":" + encoded
            + ("," + after[1:] if len(after) > 2 else "}"))


def _existing(sync_id: str, collection_id: str, upstream_ids: list[str]):
    """The stored records of a collection among `upstream_ids`.

    On PostgreSQL one index probe per id (a lateral join on the array of ids, `OFFSET 0` keeping
    it a join): `upstream_id IN (...)` or `= ANY(...)` was planned as a scan of every record of
    the collection filtered by the list, a page's look-up growing with the collection (9 ms at
    50,000 records, 0.6 ms as probes)."""
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        return Record.raw(
            "SELECT r.* FROM unnest(%s::text[]) AS u(upstream_id) CROSS JOIN LATERAL (SELECT * FROM record "
            "WHERE sync_id = %s AND collection_id = %s AND upstream_id = u.upstream_id OFFSET 0) AS r",
            upstream_ids, sync_id, collection_id,
        )
    return Record.select().where(
        (Record.sync == sync_id) & (Record.collection_id == collection_id) & Record.upstream_id.in_(upstream_ids)
    )


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
    _insert(_MESSAGES, [(r["consumer"], r["event"], r["record_id"], "available", 0, r["visible_at"], "", r["visible_at"])
                        for r in rows])
    announce(row["consumer"] for row in rows)
