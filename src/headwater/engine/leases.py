"""Leases: each collection of each sync is worked on by one engine at a time, across processes.

A lease is two columns of the collection's state row (`sync_collection`): `lease_owner` and
`lease_expires_at`. Every function here is synchronous Peewee code for `Store.run`.

    claimed = await store.run(claim, owner, ttl, limit)   # due collections, now leased to `owner`
    await store.run(renew, owner, ids, ttl)               # the heartbeat, every few seconds
    row = fence(unit_id, owner, ttl)                      # first statement of every write

Claiming is a compare-and-set: `UPDATE ... WHERE lease is free or expired`, which the database
applies to one row at a time, so two engines never both win (on PostgreSQL candidates are picked
with `FOR UPDATE SKIP LOCKED`, so engines do not queue behind each other's rows). A lease is held
as long as its engine renews it; when the engine dies, another claims the row once it expires and
resumes from the stored cursor.

`fence` makes every page write conditional on still holding the lease: it renews the lease in the
same transaction as the records and cursor it guards, so an engine that lost its lease (it stalled
past the expiry and another engine took over) writes nothing; its transaction rolls back.
"""

from __future__ import annotations

import datetime

from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.store.models import Sync, SyncCollection, database, utcnow


class LeaseLost(Exception):
    """Another engine holds this collection now (or the sync is gone): stop, write nothing."""


def ensure_rows() -> None:
    """Creates the state rows of active syncs' collections that have none yet."""
    wanted = {
        (sync.id, collection_id)
        for sync in Sync.select(Sync.id, Sync.collection_ids).where(Sync.status == "active")
        for collection_id in sync.collection_ids
    }
    have = set(SyncCollection.select(SyncCollection.sync, SyncCollection.collection_id).tuples())
    missing = [{"sync": s, "collection_id": c, "next_run_at": utcnow()} for s, c in wanted - have]
    if missing:
        SyncCollection.insert_many(missing).on_conflict_ignore().execute()


def claim(owner: str, ttl: float, limit: int, busy: frozenset[int] = frozenset()) -> list[int]:
    """Leases up to `limit` due collections of active syncs to `owner`; returns their ids."""
    now = utcnow()
    free = SyncCollection.lease_expires_at.is_null() | (SyncCollection.lease_expires_at < now)
    query = (
        SyncCollection.select(SyncCollection.id, SyncCollection.collection_id, Sync.collection_ids)
        .join(Sync)
        .where((Sync.status == "active") & (SyncCollection.next_run_at <= now) & free)
        .order_by(SyncCollection.next_run_at)
        .limit(limit + len(busy))
    )
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        query = query.for_update(of=SyncCollection, skip_locked=True)
    claimed = []
    for row in query:
        if len(claimed) >= limit or row.id in busy or row.collection_id not in row.sync.collection_ids:
            continue
        won = (
            SyncCollection.update(lease_owner=owner, lease_expires_at=now + _seconds(ttl))
            .where((SyncCollection.id == row.id) & free)
            .execute()
        )
        if won:
            claimed.append(row.id)
    return claimed


def renew(owner: str, ids: list[int], ttl: float) -> set[int]:
    """Extends the leases `owner` still holds among `ids`; returns the ids it no longer holds."""
    if not ids:
        return set()
    held = SyncCollection.lease_owner == owner
    SyncCollection.update(lease_expires_at=utcnow() + _seconds(ttl)).where(
        SyncCollection.id.in_(ids) & held
    ).execute()
    still = {i for (i,) in SyncCollection.select(SyncCollection.id).where(SyncCollection.id.in_(ids) & held).tuples()}
    return set(ids) - still


def fence(unit_id: int, owner: str, ttl: float) -> SyncCollection:
    """Renews the lease and returns the row, or raises LeaseLost: the first statement of a write.

    On PostgreSQL it first holds the sync row against deletion (FOR KEY SHARE, the lock the
    records' foreign keys take anyway): deleting a sync locks the sync row, then its collection
    rows; a page write would otherwise lock the collection row, then the sync row (a deadlock)."""
    row = SyncCollection.get_or_none(SyncCollection.id == unit_id)
    if row is None:
        raise LeaseLost(unit_id)
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        held = Sync.select(Sync.id).where(Sync.id == row.sync_id).for_update("FOR KEY SHARE")
        if not list(held):
            raise LeaseLost(unit_id)
    renewed = (
        SyncCollection.update(lease_expires_at=utcnow() + _seconds(ttl))
        .where((SyncCollection.id == unit_id) & (SyncCollection.lease_owner == owner))
        .execute()
    )
    if not renewed:
        raise LeaseLost(unit_id)
    return SyncCollection.get_by_id(unit_id)


def release(row: SyncCollection) -> None:
    """Gives the lease up (the caller saves the row)."""
    row.lease_owner = None
    row.lease_expires_at = None


def release_all(owner: str, ids: list[int]) -> None:
    """Gives up every lease `owner` holds among `ids` (an engine stopping), due again at once."""
    if ids:
        SyncCollection.update(lease_owner=None, lease_expires_at=None).where(
            SyncCollection.id.in_(ids) & (SyncCollection.lease_owner == owner)
        ).execute()


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)

