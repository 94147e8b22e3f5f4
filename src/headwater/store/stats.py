"""What the store says about the work in flight, for `GET /metrics` (headwater.metrics).

    figures = await store.run(operational_figures, utcnow(), False, transaction=False)
    figures.syncs        # [(("stripe", "healthy"), 3), ...]: active syncs by provider and health

Each list holds (labels, values) pairs from one aggregate query (GROUP BY), so a scrape costs
four statements whatever the number of syncs and messages; with `per_id` the groups are per
sync, credential or consumer too (the id is the labels' last value) and each query stops at
`limit` rows. Every function is synchronous Peewee code for `store.run`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from peewee import JOIN, OP, Case, Expression, Value, fn

from headwater.store.models import Consumer, ConsumerMessage, Credential, Sync, SyncCollection, as_datetime

MAX_ROWS = 10_000  # groups read per query with per_id (a series each)


@dataclass
class OperationalFigures:
    # (provider, health[, sync id]) -> active syncs
    syncs: list[tuple[tuple[str, ...], int]] = field(default_factory=list)
    # (provider, health[, credential id]) -> credentials
    credentials: list[tuple[tuple[str, ...], int]] = field(default_factory=list)
    # (provider, collection, backfill_state[, sync id]) -> (collections, records synced, seconds
    # since the oldest last pass or None when none of them has finished one)
    collections: list[tuple[tuple[str, ...], tuple[int, int, float | None]]] = field(default_factory=list)
    # (kind[, consumer id]) -> (pending, ack pending, parked) messages
    consumers: list[tuple[tuple[str, ...], tuple[int, int, int]]] = field(default_factory=list)


def operational_figures(now: datetime.datetime, per_id: bool, limit: int = MAX_ROWS) -> OperationalFigures:
    """The syncs, credentials, collections and consumer queues, counted at `now` (naive UTC)."""
    figures = OperationalFigures()

    def grouped(query, *columns):
        query = query.group_by(*columns).tuples()
        return query.limit(limit) if per_id else query

    sync_columns = [Sync.provider, Sync.health_status, *([Sync.id] if per_id else [])]
    query = Sync.select(*sync_columns, fn.COUNT(Sync.id)).where(Sync.status == "active")
    figures.syncs = [(tuple(row[:-1]), row[-1]) for row in grouped(query, *sync_columns)]

    credential_columns = [Credential.provider, Credential.health_status, *([Credential.id] if per_id else [])]
    query = Credential.select(*credential_columns, fn.COUNT(Credential.id))
    figures.credentials = [(tuple(row[:-1]), row[-1]) for row in grouped(query, *credential_columns)]

    # A collection taken out of a sync keeps its state row (the engine skips it): only the rows of
    # collections the sync still carries count. `collection_ids` is JSON text, ["a","b"].
    quoted = Value('%"', converter=False).concat(SyncCollection.collection_id).concat(Value('"%', converter=False))
    # ILIKE: Peewee writes SQLite's LIKE as GLOB, its ILIKE as LIKE (ids have no case to tell apart)
    carried = Expression(Sync.collection_ids, OP.ILIKE, quoted)  # ILIKE '%"' || collection_id || '"%'
    SC = SyncCollection
    collection_columns = [Sync.provider, SC.collection_id, SC.backfill_state, *([Sync.id] if per_id else [])]
    query = (
        SC.select(*collection_columns, fn.COUNT(SC.id), fn.SUM(SC.records_synced), fn.MIN(SC.last_synced_at))
        .join(Sync)
        .where((Sync.status == "active") & carried)
    )
    for *labels, count, records, oldest in grouped(query, *collection_columns):
        oldest = as_datetime(oldest)
        since = None if oldest is None else max(0.0, (now - oldest).total_seconds())
        figures.collections.append((tuple(labels), (count, int(records or 0), since)))

    M = ConsumerMessage
    consumer_columns = [Consumer.kind, *([Consumer.id] if per_id else [])]
    in_flight = (M.state == "delivered") & (M.visible_at > now)
    query = (
        Consumer.select(
            *consumer_columns,
            fn.COUNT(Case(None, [(M.state == "parked", M.id)])),
            fn.COUNT(Case(None, [(in_flight, M.id)])),
            fn.COUNT(M.id),
        )
        .join(M, JOIN.LEFT_OUTER, on=(M.consumer == Consumer.id))
    )
    for *labels, parked, ack_pending, total in grouped(query, *consumer_columns):
        figures.consumers.append((tuple(labels), (total - parked - ack_pending, ack_pending, parked)))
    return figures
