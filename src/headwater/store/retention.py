"""Bounded streams: what the pruner (headwater.engine.retention) does to the tables, a batch at a time.

    for stream in await store.run(streams_to_prune):
        cutoff = now - stream.retention
        after = 0
        while after is not None:
            deleted, after = await store.run(prune_events, stream.id, cutoff, after, 500)

A stream keeps its events for `retention_days` (7 unless set). Past that an event is deleted once
no consumer of the stream has a message for it: every consumer acked it (an ack deletes its
message: headwater.engine.queue) or never had it queued (filters, deliver_policy "new"). An event
a consumer has not acked stays, and holds its stream's table, until the consumer's oldest message
is older than twice the retention: then the consumer's messages older than that are dropped,
unacked (`drop_expired`), and its health says so (`assess_health`), so that one forgotten consumer
cannot make a stream grow for ever.

A consumer is `lagging` while its oldest message is older than the retention (it holds events
the stream would otherwise prune), `healthy` otherwise; a change, and every drop, raises
`consumer.health_changed` (headwater.store.org_events). `last_error` says what was last found
(the lag, or how many changes were dropped) and stays once healthy again, as for syncs.

Every function is synchronous Peewee code for one `store.run` and touches at most `limit` rows,
so no unit holds a lock for long: a consumer's ack or a sync's write waits one batch at most.
Each pass walks a stream's events from its oldest: those a consumer still owes are looked at
again on every pass (an index probe each), which the lag rule bounds to twice the retention.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from peewee import JOIN, fn
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.store.health import HEALTHY, health_document
from headwater.store.models import ORG_EVENTS, Consumer, ConsumerMessage, Event, Stream, database, iso
from headwater.store.org_events import emit

LAGGING = "lagging"
M = ConsumerMessage


@dataclass
class StreamToPrune:
    id: str
    retention: datetime.timedelta
    consumer_ids: list[str] = field(default_factory=list)


def retention_of(days: float) -> datetime.timedelta:
    return datetime.timedelta(days=days)


def describe(period: datetime.timedelta) -> str:
    """A retention as messages say it: "7 days", "1 day", "36 hours", "90 seconds"."""
    seconds = period.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def streams_to_prune() -> list[StreamToPrune]:
    """Every stream (the organisations' events streams too) with its retention and consumers."""
    streams = {
        stream_id: StreamToPrune(stream_id, retention_of(days))
        for stream_id, days in Stream.select(Stream.id, Stream.retention_days).order_by(Stream.id).tuples()
    }
    for consumer_id, stream_id in Consumer.select(Consumer.id, Consumer.stream).order_by(Consumer.id).tuples():
        if stream_id in streams:
            streams[stream_id].consumer_ids.append(consumer_id)
    return list(streams.values())


def prune_events(stream_id: str, cutoff: datetime.datetime, after_seq: int, limit: int) -> tuple[int, int | None]:
    """Deletes, among the stream's next `limit` events after `after_seq`, those written before
    `cutoff` that no consumer has a message for. Returns how many it deleted and where the next
    batch starts (None: no event of the stream older than `cutoff` lies further on).

    Events are walked in `seq` order (the index on (stream_id, seq)) and the walk stops at the
    first event not older than `cutoff`: seq and created_at grow together, but for writers
    committing out of order, whose few events wait for the next pass."""
    _hold_off_new_consumers(stream_id)
    rows = (
        Event.select(Event.seq, Event.created_at)
        .where((Event.stream == stream_id) & (Event.seq > after_seq))
        .order_by(Event.seq)
        .limit(limit)
        .tuples()
    )
    old = _leading_older(rows, cutoff)
    if not old:
        return 0, None
    owed = M.select(M.id).where(M.event == Event.seq)
    deleted = Event.delete().where(Event.seq.in_(old) & ~fn.EXISTS(owed)).execute()
    return deleted, old[-1] if len(old) == limit else None


def _leading_older(rows, cutoff: datetime.datetime) -> list:
    """The ids of the (id, created_at) rows, in order, up to the first not older than `cutoff`."""
    ids = []
    for row_id, created_at in rows:
        if created_at >= cutoff:
            break
        ids.append(row_id)
    return ids


def _hold_off_new_consumers(stream_id: str) -> None:
    """On PostgreSQL, share-locks the stream row as writers do (records.stream_consumers): a
    consumer being created (which locks it FOR UPDATE while it queues the stream's past events)
    never queues an event deleted meanwhile. (SQLite has one writer.)"""
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        list(Stream.select(Stream.id).where(Stream.id == stream_id).for_update("FOR KEY SHARE"))


def oldest_message(consumer_id: str) -> datetime.datetime | None:
    """When the event of the consumer's oldest message (any state: available, delivered, parked)
    was written; None when nothing is owed to it."""
    rows = list(_oldest_messages(consumer_id, 1))
    return rows[0][1] if rows else None


def _oldest_messages(consumer_id: str, limit: int):
    """The consumer's `limit` oldest messages, as (message id, when its event was written), in
    event order (the index on (consumer_id, event_id))."""
    return (
        M.select(M.id, Event.created_at)
        .join(Event, JOIN.INNER, on=(M.event == Event.seq))
        .where(M.consumer == consumer_id)
        .order_by(M.event)
        .limit(limit)
        .tuples()
    )


def drop_expired(consumer_id: str, cutoff: datetime.datetime, limit: int) -> tuple[int, bool]:
    """Drops, unacked, up to `limit` of the consumer's messages whose events were written before
    `cutoff` (twice the retention ago), oldest first, and counts them in its `dropped_messages`.
    Returns how many it dropped and whether more may be left."""
    expired = _leading_older(_oldest_messages(consumer_id, limit), cutoff)
    if not expired:
        return 0, False
    dropped = M.delete().where(M.id.in_(expired)).execute()
    Consumer.update(dropped_messages=Consumer.dropped_messages + dropped).where(Consumer.id == consumer_id).execute()
    return dropped, len(expired) == limit


def assess_health(consumer_id: str, retention: datetime.timedelta, now: datetime.datetime, dropped: int) -> str | None:
    """Sets the consumer's health from its oldest message, after the pruner dropped `dropped` of
    its messages (past twice the retention) this pass; raises `consumer.health_changed` when the
    status changes or messages were dropped (its `last_error` says how many). Returns the status,
    or None if the consumer is gone."""
    consumer = Consumer.get_or_none(Consumer.id == consumer_id)
    if consumer is None:
        return None
    oldest = oldest_message(consumer_id)
    lagging = oldest is not None and oldest < now - retention
    status = LAGGING if lagging else HEALTHY
    note = None
    if dropped:
        note = (
            f"dropped {dropped} unacked change(s) older than {describe(2 * retention)} (twice the stream's "
            f"retention of {describe(retention)}); ack changes sooner, or raise the stream's retention_days"
        )
    elif lagging and consumer.health_status != LAGGING:
        note = (
            f"its oldest unacked change, from {iso(oldest)}, is older than the stream's retention of "
            f"{describe(retention)}; changes older than {describe(2 * retention)} are dropped unacked"
        )
    if note is not None:
        Consumer.update(health_last_error=note, health_last_error_at=now).where(Consumer.id == consumer_id).execute()
    # Conditional, so that of two replicas' pruners making the same change only one raises the event.
    changed = Consumer.update(health_status=status).where(
        (Consumer.id == consumer_id) & (Consumer.health_status != status)
    ).execute()
    if (changed or dropped) and consumer.kind != ORG_EVENTS:
        emit(consumer.org_id, "consumer.health_changed", {
            "consumer_id": consumer.id, "stream_id": consumer.stream_id, "previous_status": consumer.health_status,
            "health": health_document(status, note or consumer.health_last_error,
                                      now if note else consumer.health_last_error_at),
        })
    return status
