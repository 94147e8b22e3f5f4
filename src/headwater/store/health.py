"""Credential and sync health, and the events that tell the organisation when they change.

    refresh_refused(credential_id, note)   # the provider refused the refresh token for good
    credential_healthy(credential)         # a refresh worked, or new secrets were PATCHed in
    refresh_sync_health(sync)              # after the sync engine changed a collection's health

A credential is `healthy`, or `error` once its provider refused to refresh its access token for
good. A sync is as healthy as its least healthy collection, and never healthier than its
credential. A status that changes raises `credential.health_changed` or `sync.health_changed`
(headwater.store.org_events); the last error and its time stay visible once healthy again.

Every function is synchronous Peewee code for `store.run`: what changes and its events commit
together. A status changes with a conditional UPDATE (`... WHERE status != new`), so of two
replicas making the same change at once only one raises its event.
"""

from __future__ import annotations

import datetime

from headwater.store.models import Credential, Sync, SyncCollection, iso, utcnow
from headwater.store.org_events import emit

HEALTHY, DEGRADED, ERROR = "healthy", "degraded", "error"


def health_document(status: str, last_error: str, last_error_at: datetime.datetime | None) -> dict:
    """A health as events carry it (the API's CredentialHealth and SyncHealth, in JSON)."""
    return {"status": status, "last_error": last_error or None, "last_error_at": iso(last_error_at)}


def refresh_refused(credential_id: str, note: str) -> None:
    """Records that the provider refused the credential's refresh token (`note`: what the caller
    was told, saying what to do): the credential and its syncs are in error."""
    credential = Credential.get_by_id(credential_id)
    now = utcnow()
    changed = _set_status(Credential, credential.id, ERROR)
    Credential.update(health_last_error=note, health_last_error_at=now).where(Credential.id == credential.id).execute()
    about = _about(credential)
    emit(credential.org_id, "credential.refresh_failed", {**about, "message": note})
    if changed:
        emit(credential.org_id, "credential.health_changed", {
            **about, "previous_status": credential.health_status, "health": health_document(ERROR, note, now),
        })
    Sync.update(health_last_error=note, health_last_error_at=now).where(Sync.credential == credential.id).execute()
    for sync in Sync.select().where(Sync.credential == credential.id):
        refresh_sync_health(sync)


def credential_healthy(credential: Credential) -> None:
    """Records that the credential works again (a refresh succeeded, or new secrets came), and
    re-assesses its syncs."""
    if credential.health_status == HEALTHY or not _set_status(Credential, credential.id, HEALTHY):
        return
    previous, credential.health_status = credential.health_status, HEALTHY
    emit(credential.org_id, "credential.health_changed", {
        **_about(credential), "previous_status": previous,
        "health": health_document(HEALTHY, credential.health_last_error, credential.health_last_error_at),
    })
    for sync in Sync.select().where(Sync.credential == credential.id):
        refresh_sync_health(sync)


def refresh_sync_health(sync: Sync) -> None:
    """Sets the sync's status to its least healthy collection's, or its credential's if worse,
    and raises `sync.health_changed` when that changes it."""
    states = {
        health for collection_id, health in SyncCollection.select(SyncCollection.collection_id, SyncCollection.health)
        .where(SyncCollection.sync == sync.id).tuples()
        if collection_id in sync.collection_ids
    }
    states.add(Credential.select(Credential.health_status).where(Credential.id == sync.credential_id).scalar())
    worst = ERROR if ERROR in states else DEGRADED if DEGRADED in states else HEALTHY
    if worst == sync.health_status or not _set_status(Sync, sync.id, worst):
        return
    previous = sync.health_status
    emit(sync.org_id, "sync.health_changed", {
        "sync_id": sync.id, "credential_id": sync.credential_id, "provider": sync.provider,
        "external_id": sync.external_id or None, "previous_status": previous,
        "health": health_document(worst, sync.health_last_error, sync.health_last_error_at),
    })


def _set_status(model: type[Credential] | type[Sync], row_id: str, status: str) -> bool:
    """Sets the row's health status; whether this changed it."""
    return model.update(health_status=status).where((model.id == row_id) & (model.health_status != status)).execute() > 0


def _about(credential: Credential) -> dict:
    """What every credential event says of the credential."""
    return {"credential_id": credential.id, "provider": credential.provider,
            "external_id": credential.external_id or None}
