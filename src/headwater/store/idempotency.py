"""Idempotency keys of mutations: which call runs a key, how far it got, and the key's answer.

A key's row (`idempotency_key`, one per organisation and key) is running until it is answered:

    running: answer NULL, `owner` (the call running it) renews `lease_expires_at`, `applied` grows
      | the owner answers (success, or an error once the upstream may have changed) -> answered, 24 h
      | the owner is refused before anything changed upstream                       -> deleted: free again
      | the owner's lease runs out (its process died, or it stalled)                 -> running, taken over
                                                                                        by a retry
Every function here is synchronous Peewee code for `Store.run`:

    claim = claim_key(org_id, key, request_hash, owner, ttl)   # or ApiError: 400 other mutation, 409 running
    claim.answer                                               # not None: the first call's answer, replay it
    renew_key(claim, ttl)                                      # the heartbeat, every third of the ttl
    record_applied(claim, applied, ttl)                        # in the transaction of each record's apply_changes
    store_answer(claim, answer) / release_key(claim) / give_up_key(claim)

Taking over is a compare-and-set on the owner (`UPDATE ... WHERE owner = <the one whose lease ran
out>`), as the sync engine's leases are (headwater.engine.leases), so of two retries one wins. The
owner's writes are conditional on still owning the key: a call that stalled past its lease and
was taken over writes nothing more (`record_applied` raises KeyTakenOver; its transaction, with the
record's apply_changes, rolls back).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import grpc
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.errors import ApiError, invalid
from headwater.store.models import IdempotencyKey, database, new_id, utcnow

IDEMPOTENCY_TTL = datetime.timedelta(hours=24)
EXPIRED_KEYS_PER_CLAIM = 100  # each new key clears up to this many expired ones of its organisation


class KeyTakenOver(Exception):
    """A retry took the key over while its owner stalled: the owner writes nothing more."""


@dataclass(frozen=True)
class Claim:
    """What claiming a key found: the answer of its first call (`answer`: replay it), or the key,
    now held by `owner`: new, or taken over from a call that died (`applied`: what that call had
    applied, {"records": [...], "event_seqs": [...]}, None if nothing)."""

    key_id: str
    owner: str
    answer: dict | None = None
    taken_over: bool = False
    applied: dict | None = None


def claim_key(org_id: str, key: str, request_hash: str, owner: str, ttl: float) -> Claim:
    """Claims the key for the call `owner`. The row is written first, so that a concurrent claim
    waits on the unique index rather than racing a read."""
    now = utcnow()
    this_key = (IdempotencyKey.org == org_id) & (IdempotencyKey.key == key)
    IdempotencyKey.delete().where(this_key & (IdempotencyKey.expires_at <= now)).execute()
    IdempotencyKey.insert(
        id=new_id(), org=org_id, key=key, request_hash=request_hash, owner=owner,
        lease_expires_at=now + _seconds(ttl), created_at=now, expires_at=now + IDEMPOTENCY_TTL,
    ).on_conflict_ignore().execute()
    row = IdempotencyKey.get(this_key)
    if row.owner == owner:
        return Claim(row.id, owner)
    if row.request_hash != request_hash:
        raise invalid("idempotency_key", "was used for another mutation within the last 24 hours; use a new key")
    if row.answer is not None:
        return Claim(row.id, owner, answer=row.answer)
    if row.lease_expires_at is not None and row.lease_expires_at > now:
        raise _still_running(row.lease_expires_at - now)
    taken = (
        IdempotencyKey.update(owner=owner, lease_expires_at=now + _seconds(ttl))
        .where((IdempotencyKey.id == row.id) & (IdempotencyKey.owner == row.owner) & IdempotencyKey.answer.is_null())
        .execute()
    )
    if not taken:  # another retry took it over first
        raise _still_running(_seconds(ttl))
    return Claim(row.id, owner, taken_over=True, applied=row.applied)


def renew_key(claim: Claim, ttl: float) -> bool:
    """Extends the owner's lease; False once the key is no longer the owner's to run."""
    return bool(IdempotencyKey.update(lease_expires_at=utcnow() + _seconds(ttl)).where(_held(claim)).execute())


def record_applied(claim: Claim, applied: dict, ttl: float, answer: dict | None = None) -> None:
    """Keeps what the owner has applied so far, and renews its lease; raises KeyTakenOver if the
    key is no longer the owner's. Call in the transaction that applied the record. `answer`: the
    call's answer, known with its last record (nothing left to wait for), stored with it as
    `store_answer` stores it: one commit fewer."""
    renewed = (
        IdempotencyKey.update(applied=applied, lease_expires_at=utcnow() + _seconds(ttl))
        if answer is None else IdempotencyKey.update(applied=applied, answer=answer, lease_expires_at=None)
    ).where(_held(claim)).execute()
    if not renewed:
        raise KeyTakenOver(claim.key_id)


def store_answer(claim: Claim, answer: dict) -> None:
    """The key's answer, replayed to every retry until the key expires."""
    IdempotencyKey.update(answer=answer, lease_expires_at=None).where(_held(claim)).execute()


def release_key(claim: Claim) -> None:
    """Frees the key (nothing changed upstream): a retry with it runs afresh."""
    IdempotencyKey.delete().where(_held(claim)).execute()


def give_up_key(claim: Claim) -> None:
    """Ends the owner's lease now (its call was interrupted): a retry takes the key over at once."""
    IdempotencyKey.update(lease_expires_at=utcnow()).where(_held(claim)).execute()


def forget_expired_keys(org_id: str) -> None:
    """Deletes some of the organisation's expired keys. On PostgreSQL rows another call is
    working on are skipped (SKIP LOCKED), so this never waits and never deadlocks."""
    expired = (
        IdempotencyKey.select(IdempotencyKey.id)
        .where((IdempotencyKey.org == org_id) & (IdempotencyKey.expires_at <= utcnow()))
        .limit(EXPIRED_KEYS_PER_CLAIM)
    )
    if isinstance(database.obj, AsyncPostgresqlDatabase):
        expired = expired.for_update("FOR UPDATE SKIP LOCKED")
    IdempotencyKey.delete().where(IdempotencyKey.id.in_(expired)).execute()


def _held(claim: Claim):
    """The key's row, while it is running and `claim.owner` owns it."""
    return (IdempotencyKey.id == claim.key_id) & (IdempotencyKey.owner == claim.owner) & IdempotencyKey.answer.is_null()


def _still_running(lease_left: datetime.timedelta) -> ApiError:
    return ApiError(
        grpc.StatusCode.ABORTED, "a mutation with this idempotency key is still running; retry later",
        headers={"Retry-After": str(max(1, math.ceil(lease_left.total_seconds())))},
    )


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)
