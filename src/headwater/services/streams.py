"""StreamService: the named logs that syncs and mutations write and consumers read."""

from __future__ import annotations

import grpc
from peewee import IntegrityError

from headwater.errors import ApiError, failed_precondition, invalid, not_found
from headwater.services._common import Backend, paginate, timestamp
from headwater.store import Stream, Sync
from headwater.v1 import stream_pb2, stream_pb2_grpc


def stream_to_proto(row: Stream) -> stream_pb2.Stream:
    return stream_pb2.Stream(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def get_stream(org_id: str, stream_id: str) -> Stream:
    row = Stream.visible_to(org_id).where(Stream.id == stream_id).first()
    if row is None:
        raise not_found("stream", stream_id)
    return row


class StreamServicer(stream_pb2_grpc.StreamServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateStream(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        name = request.stream.name.strip()
        if not name:
            raise invalid("stream.name", "is required")

        def create():
            if Stream.select().where((Stream.org == org_id) & (Stream.name == name)).exists():
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"a stream named {name!r} already exists")
            return Stream.create(org=org_id, name=name)

        try:
            row = await self.backend.store.run(create)
        except IntegrityError:  # lost a race with a concurrent create of the same name
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"a stream named {name!r} already exists") from None
        return stream_pb2.CreateStreamResponse(stream=stream_to_proto(row))

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
