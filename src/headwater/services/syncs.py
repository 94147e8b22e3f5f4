"""SyncService: which provider account feeds which collections into which stream, how fast."""

from __future__ import annotations

from headwater.errors import not_found, raise_if_invalid, shown
from headwater.services._common import (
    Backend,
    page_violations,
    paginate,
    struct,
    struct_dict,
    timestamp,
    update_paths,
)
from headwater.services.credentials import (
    check_properties,
    credential_to_proto,
    new_credential,
    oauth_app_violations,
)
from headwater.store import Credential, Stream, Sync, utcnow
from headwater.store.models import SyncCollection
from headwater.v1 import common_pb2, sync_pb2, sync_pb2_grpc

STATUSES = ("active", "disabled")
SYNC_FREQUENCIES = ("continuous", "4h")
HEALTH_STATUSES = ("healthy", "degraded", "error")

UPDATABLE = {
    "name", "status", "collection_ids", "rate_limit", "max_age_days", "sync_frequency",
    "metadata", "external_id",
}
# May appear in an update only with the value the sync already has.
FIXED = {"provider", "stream_id", "credential_id"}
OUTPUT_ONLY = {"id", "org_id", "health", "initial_backfill_completed_at", "created_at", "updated_at", "progress"}


def progress_to_proto(collection_id: str, state: SyncCollection | None) -> sync_pb2.CollectionProgress:
    state = state or SyncCollection(collection_id=collection_id)  # not picked up by the engine yet
    return sync_pb2.CollectionProgress(
        collection_id=collection_id,
        backfill_state=state.backfill_state,
        records_synced=state.records_synced,
        cursor=struct(state.cursor or {}),
        health=state.health,
        last_error=state.last_error or None,
        last_error_at=timestamp(state.last_error_at),
        backfill_completed_at=timestamp(state.backfill_completed_at),
        last_synced_at=timestamp(state.last_synced_at),
        next_sync_at=timestamp(state.next_run_at if state.id else None),
    )


def collection_states(sync_ids: list[str]) -> dict[tuple[str, str], SyncCollection]:
    """The engine's state rows of these syncs, by (sync id, collection id)."""
    rows = SyncCollection.select().where(SyncCollection.sync.in_(sync_ids)) if sync_ids else []
    return {(r.sync_id, r.collection_id): r for r in rows}


def sync_to_proto(row: Sync, credential: Credential, apps: dict, states: dict | None = None) -> sync_pb2.Sync:
    """The answer for `row`; `apps` holds its credential's OAuth app (OAuthApps.find_all), if any."""
    states = states or {}
    return sync_pb2.Sync(
        id=row.id,
        provider=row.provider,
        stream_id=row.stream_id,
        name=row.name or None,  # unset strings answer null, not ""
        status=row.status,
        org_id=row.org_id,
        health=sync_pb2.SyncHealth(
            status=row.health_status,
            sync_id=row.id,
            last_error=row.health_last_error or None,
            last_error_at=timestamp(row.health_last_error_at),
        ),
        collection_ids=row.collection_ids,
        rate_limit=common_pb2.RateLimit(
            allowed_requests=row.rate_allowed_requests,
            interval=row.rate_interval,
            max_concurrent_requests=row.rate_max_concurrent,
            windows=[common_pb2.RateWindow(allowed_requests=n, interval=t) for n, t in row.rate_windows],
        ),
        credential_id=row.credential_id,
        credential=credential_to_proto(credential, apps),
        max_age_days=row.max_age_days,
        sync_frequency=row.sync_frequency,
        initial_backfill_completed_at=timestamp(row.initial_backfill_completed_at),
        metadata=struct(row.metadata),
        external_id=row.external_id or None,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        progress=[progress_to_proto(c, states.get((row.id, c))) for c in row.collection_ids],
    )


# --- validation: plain functions returning (field, description) pairs --------------------------


def check_collections(backend: Backend, provider: str, collection_ids) -> list[tuple[str, str]]:
    if not collection_ids:
        return [("sync.collection_ids", f"is required: at least one collection of {provider}")]
    violations = []
    for i, collection_id in enumerate(collection_ids):
        field = f"sync.collection_ids[{i}]"
        if not collection_id.startswith(f"{provider}:"):
            violations.append((field, f"{collection_id!r} is not a collection of {provider}"))
        elif backend.catalogue.collection(collection_id) is None:
            known = ", ".join(sorted(backend.catalogue.provider(provider).collections)) or "none"
            violations.append(
                (field, f"{collection_id!r} is not in the catalogue; {provider} has: {known}")
            )
    if len(set(collection_ids)) != len(collection_ids):
        violations.append(("sync.collection_ids", "lists a collection twice"))
    return violations


def check_settings(message: sync_pb2.Sync, paths: set[str]) -> list[tuple[str, str]]:
    """The plain-value fields, where `paths` says they are being set."""
    violations = []
    if "status" in paths and message.status not in STATUSES:
        violations.append(("sync.status", f"must be one of {', '.join(STATUSES)}"))
    if "sync_frequency" in paths and message.sync_frequency not in SYNC_FREQUENCIES:
        violations.append(("sync.sync_frequency", f"must be one of {', '.join(SYNC_FREQUENCIES)}"))
    if "max_age_days" in paths and message.HasField("max_age_days") and message.max_age_days < 1:
        violations.append(("sync.max_age_days", "must be at least 1 day (leave it unset for no limit)"))
    rate_paths = {p for p in paths if p.split(".")[0] == "rate_limit"}
    rate = message.rate_limit
    for sub, minimum in (("allowed_requests", 1), ("interval", 1), ("max_concurrent_requests", 0)):
        if ("rate_limit" in rate_paths or f"rate_limit.{sub}" in rate_paths) and getattr(rate, sub) < minimum:
            rule = "a positive number" if minimum else "zero (no cap) or a positive number"
            violations.append((f"sync.rate_limit.{sub}", f"must be {rule}"))
    if "rate_limit" in rate_paths or "rate_limit.windows" in rate_paths:
        windows = [(w.allowed_requests, w.interval) for w in rate.windows]
        violations += check_rate_windows(rate.interval if rate.interval >= 1 else None, windows)
    return violations


def check_rate_windows(interval: int | None, windows: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """A rate limit's further windows: each positive, no two (nor the first) with one interval."""
    violations = []
    seen = {interval}
    for i, (allowed, length) in enumerate(windows):
        field = f"sync.rate_limit.windows[{i}]"
        if allowed < 1:
            violations.append((f"{field}.allowed_requests", "must be a positive number"))
        if length < 1:
            violations.append((f"{field}.interval", "must be a positive number of seconds"))
        elif length in seen:
            violations.append((f"{field}.interval", f"{length} s is the interval of another window of the rate limit"))
        seen.add(length)
    return violations


def with_credential(backend: Backend, org_id: str, row: Sync) -> tuple:
    """What `sync_to_proto` needs besides the sync (in `store.run`): its credential, the credential's
    OAuth app and the engine's state of its collections."""
    credential = Credential.get_by_id(row.credential_id)
    return row, credential, backend.oauth_apps.find_all(org_id, [credential.oauth_app_id]), collection_states([row.id])


def get_sync(org_id: str, sync_id: str) -> Sync:
    row = Sync.get_or_none((Sync.id == sync_id) & (Sync.org == org_id))
    if row is None:
        raise not_found("sync", sync_id)
    return row


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateSync(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.sync
        backend = self.backend

        # Everything that needs no database, all reported at once.
        violations = []
        provider = backend.catalogue.provider(message.provider)
        if not message.provider:
            violations.append(("sync.provider", "is required"))
        elif provider is None:
            known = ", ".join(sorted(backend.catalogue.providers))
            violations.append(("sync.provider", f"unknown provider {message.provider!r}; use one of: {known}"))
        if not message.stream_id:
            violations.append(("sync.stream_id", "is required: create a stream first (POST /v1/streams)"))
        has_inline = message.HasField("credential")
        if has_inline == bool(message.credential_id):
            violations.append(("sync.credential", "give exactly one of `credential` or `credential_id`"))
        checked = None
        if provider is not None:
            violations += check_collections(backend, provider.key, message.collection_ids)
            if has_inline:
                if message.credential.provider not in ("", provider.key):
                    violations.append(("sync.credential.provider", f"must be {provider.key}, the sync's provider"))
                checked, more = check_properties(
                    backend.catalogue, provider.key, struct_dict(message.credential, "properties"),
                    "sync.credential.properties",
                )
                violations += more
        settings = sync_pb2.Sync()
        settings.CopyFrom(message)
        settings.status = message.status or "active"
        settings.sync_frequency = message.sync_frequency or "continuous"
        given = {"status", "sync_frequency", "max_age_days"} | ({"rate_limit"} if message.HasField("rate_limit") else set())
        violations += check_settings(settings, given)
        raise_if_invalid(violations)

        rate = message.rate_limit if message.HasField("rate_limit") else provider.default_rate_limit

        # Then, in one transaction, the checks against stored rows and the writes.
        def create():
            violations = []
            if not Stream.visible_to(org_id).where(Stream.id == message.stream_id).exists():
                violations.append(("sync.stream_id", f"no stream {shown(message.stream_id)} in this organisation"))
            credential = None
            if not has_inline:
                credential = Credential.get_or_none(
                    (Credential.id == message.credential_id) & (Credential.org == org_id)
                )
                if credential is None:
                    violations.append(
                        ("sync.credential_id", f"no credential {shown(message.credential_id)} in this organisation")
                    )
                elif credential.provider != provider.key:
                    violations.append(
                        ("sync.credential_id", f"is a {credential.provider} credential, not {provider.key}")
                    )
            else:
                violations += oauth_app_violations(
                    backend, org_id, provider.key, message.credential.oauth_app_id, "sync.credential.oauth_app_id"
                )
            raise_if_invalid(violations)
            if has_inline:
                credential = new_credential(backend, org_id, checked, message.credential)
            row = Sync.create(
                org=org_id,
                provider=provider.key,
                stream=message.stream_id,
                credential=credential,
                name=message.name,
                status=settings.status,
                collection_ids=list(message.collection_ids),
                rate_allowed_requests=rate.allowed_requests,
                rate_interval=rate.interval,
                rate_max_concurrent=rate.max_concurrent_requests,
                rate_windows=[[w.allowed_requests, w.interval] for w in rate.windows],
                max_age_days=message.max_age_days if message.HasField("max_age_days") else None,
                sync_frequency=settings.sync_frequency,
                metadata=struct_dict(message, "metadata"),
                external_id=message.external_id,
                # No collection has been read yet: the sync is as healthy as its credential.
                health_status=credential.health_status,
                health_last_error=credential.health_last_error,
                health_last_error_at=credential.health_last_error_at,
            )
            return row, credential, backend.oauth_apps.find_all(org_id, [credential.oauth_app_id])

        row, credential, apps = await backend.store.run(create)
        backend.accounts.forget()  # the credential's budget now includes this sync's rate limit
        return sync_pb2.CreateSyncResponse(sync=sync_to_proto(row, credential, apps))

    async def GetSync(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def get():
            row = get_sync(org_id, request.id)
            return with_credential(self.backend, org_id, row)

        row, credential, apps, states = await self.backend.store.run(get)
        return sync_pb2.GetSyncResponse(sync=sync_to_proto(row, credential, apps, states))

    async def ListSyncs(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        health = request.health.status
        violations = page_violations(request)
        if health and health not in HEALTH_STATUSES:
            violations.append(("health.status", f"must be one of {', '.join(HEALTH_STATUSES)}"))
        raise_if_invalid(violations)

        def page():
            query = Sync.select(Sync, Credential).join(Credential).where(Sync.org == org_id)
            for column, value in (
                (Sync.external_id, request.external_id),
                (Sync.provider, request.provider),
                (Sync.name, request.name),
                (Sync.health_status, health),
            ):
                if value:
                    query = query.where(column == value)
            rows, next_token = paginate(query, Sync, request)
            apps = self.backend.oauth_apps.find_all(org_id, [r.credential.oauth_app_id for r in rows])
            return rows, next_token, apps, collection_states([r.id for r in rows])

        rows, next_token, apps, states = await self.backend.store.run(page)
        return sync_pb2.ListSyncsResponse(
            data=[sync_to_proto(r, r.credential, apps, states) for r in rows], next_page_token=next_token
        )

    async def UpdateSync(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.sync
        paths = set(update_paths(request.update_mask, message))
        tops = {p.split(".")[0] for p in paths}
        violations = []
        for top in sorted(tops):
            if top == "credential":
                violations.append(
                    ("sync.credential", "cannot change through the sync; update it with PATCH /v1/credentials/{id}")
                )
            elif top in OUTPUT_ONLY:
                violations.append((f"sync.{top}", "is output only"))
            elif top not in UPDATABLE | FIXED:
                violations.append((f"sync.{top}", "is not a field of Sync"))
        violations += check_settings(message, paths)
        raise_if_invalid(violations)

        def update():
            row = get_sync(org_id, request.id)
            violations = [
                (f"sync.{field}", "cannot change; create a new sync instead")
                for field in sorted(FIXED & tops)
                if getattr(message, field) != getattr(row, field)
            ]
            if "collection_ids" in tops:
                violations += check_collections(self.backend, row.provider, message.collection_ids)
            raise_if_invalid(violations)
            if "collection_ids" in tops:
                row.collection_ids = list(message.collection_ids)
            for field in ("name", "status", "sync_frequency", "external_id"):
                if field in tops:
                    setattr(row, field, getattr(message, field))
            if "max_age_days" in tops:
                row.max_age_days = message.max_age_days if message.HasField("max_age_days") else None
            if "metadata" in tops:
                row.metadata = struct_dict(message, "metadata")
            rate = message.rate_limit
            for sub, column in (
                ("allowed_requests", "rate_allowed_requests"),
                ("interval", "rate_interval"),
                ("max_concurrent_requests", "rate_max_concurrent"),
            ):
                if "rate_limit" in paths or f"rate_limit.{sub}" in paths:
                    setattr(row, column, getattr(rate, sub))
            if "rate_limit" in paths or "rate_limit.windows" in paths:
                row.rate_windows = [[w.allowed_requests, w.interval] for w in rate.windows]
            # the first window's interval and the further windows may come from different requests
            raise_if_invalid(check_rate_windows(row.rate_interval, [tuple(w) for w in row.rate_windows]))
            row.updated_at = utcnow()
            row.save()
            return with_credential(self.backend, org_id, row)

        row, credential, apps, states = await self.backend.store.run(update)
        self.backend.accounts.forget()  # its rate limit may have changed
        return sync_pb2.UpdateSyncResponse(sync=sync_to_proto(row, credential, apps, states))

    async def DeleteSync(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        await self.backend.store.run(lambda: get_sync(org_id, request.id).delete_instance())
        self.backend.accounts.forget()
        return sync_pb2.DeleteSyncResponse(id=request.id, deleted=True)

