"""StreamService: the named logs that syncs and mutations write and consumers read."""

from __future__ import annotations

import grpc
from peewee import IntegrityError

from headwater.errors import ApiError, failed_precondition, not_found, raise_if_invalid
from headwater.services._common import Backend, paginate, timestamp, update_paths
from headwater.store import Stream, Sync, utcnow
from headwater.store.models import DEFAULT_RETENTION_DAYS
from headwater.v1 import stream_pb2, stream_pb2_grpc

# retention_days: from one second to ten years.
RETENTION_DAYS_RANGE = (1 / 86400, 3650.0)
UPDATABLE = frozenset({"name", "retention_days"})
OUTPUT_ONLY = frozenset({"id", "org_id", "created_at", "updated_at"})


def stream_to_proto(row: Stream) -> stream_pb2.Stream:
    return stream_pb2.Stream(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        retention_days=row.retention_days,
    )


def retention_days_of(stream: stream_pb2.Stream) -> tuple[float, list[tuple[str, str]]]:
    """The stream's `retention_days` (the default when not given) and what is wrong with it."""
    if not stream.HasField("retention_days"):
        return DEFAULT_RETENTION_DAYS, []
    days = stream.retention_days
    low, high = RETENTION_DAYS_RANGE
    if not low <= days <= high:  # NaN too
        return days, [("stream.retention_days", f"must be between {low:.7f} (one second) and {high:g} days")]
    return days, []


def name_of(stream: stream_pb2.Stream) -> tuple[str, list[tuple[str, str]]]:
    name = stream.name.strip()
    return name, [] if name else [("stream.name", "is required")]


def get_stream(org_id: str, stream_id: str) -> Stream:
    row = Stream.visible_to(org_id).where(Stream.id == stream_id).first()
    if row is None:
        raise not_found("stream", stream_id)
    return row


def _name_taken(name: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, f"a stream named {name!r} already exists")


def _refuse_taken_name(org_id: str, name: str) -> None:
    if Stream.select().where((Stream.org == org_id) & (Stream.name == name)).exists():
        raise _name_taken(name)


class StreamServicer(stream_pb2_grpc.StreamServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateStream(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        name, violations = name_of(request.stream)
        retention_days, more = retention_days_of(request.stream)
        raise_if_invalid(violations + more)

        def create():
            _refuse_taken_name(org_id, name)
            return Stream.create(org=org_id, name=name, retention_days=retention_days)

        try:
            row = await self.backend.store.run(create)
        except IntegrityError:  # lost a race with a concurrent create of the same name
            raise _name_taken(name) from None
        return stream_pb2.CreateStreamResponse(stream=stream_to_proto(row))

    async def UpdateStream(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        given = request.stream
        tops = {path.split(".")[0] for path in update_paths(request.update_mask, given)}
        violations = []
        for top in sorted(tops - UPDATABLE):
            why = "is output only" if top in OUTPUT_ONLY else "is not a field of Stream"
            violations.append((f"stream.{top}", why))
        if "name" in tops:
            name, found = name_of(given)
            violations += found
        if "retention_days" in tops:
            retention_days, found = retention_days_of(given)  # in the mask but not given: the default
            violations += found
        raise_if_invalid(violations)

        def update():
            row = get_stream(org_id, request.id)
            if "name" in tops and name != row.name:
                _refuse_taken_name(org_id, name)
                row.name = name
            if "retention_days" in tops:
                row.retention_days = retention_days
            row.updated_at = utcnow()
            row.save()
            return row

        try:
            row = await self.backend.store.run(update)
        except IntegrityError:  # lost a race with a concurrent create or rename to the same name
            raise _name_taken(name) from None
        return stream_pb2.UpdateStreamResponse(stream=stream_to_proto(row))

    async def GetStream(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row = await self.backend.store.run(get_stream, org_id, request.id)
        return stream_pb2.GetStreamResponse(stream=stream_to_proto(row))

    async def ListStreams(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        rows, next_token = await self.backend.store.run(
            lambda: paginate(Stream.visible_to(org_id), Stream, request)
        )
        return stream_pb2.ListStreamsResponse(
            data=[stream_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def DeleteStream(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def delete():
            row = get_stream(org_id, request.id)
            writers = [s.id for s in Sync.select(Sync.id).where(Sync.stream == row.id).limit(5)]
            if writers:
                raise failed_precondition(
                    f"stream {row.id} is written by sync(s) {', '.join(writers)}; delete those syncs first"
                )
            row.delete_instance()

        await self.backend.store.run(delete)
        return stream_pb2.DeleteStreamResponse(id=request.id, deleted=True)
