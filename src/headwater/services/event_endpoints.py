"""EventEndpointService: the URLs the organisation's own events are POSTed to (`/v1/event-endpoints`).

An endpoint is a webhook consumer of the organisation's events stream (headwater.store.org_events):
this module validates requests and maps endpoints to and from those Consumer rows (`url` is the
consumer's webhook_url, `event_types` its filters on the events' type). Queueing, signing, retries
and parking are the webhook consumers' own (headwater.engine.queue, headwater.engine.delivery).
"""

from __future__ import annotations

import secrets

from google.protobuf import json_format

from headwater.crypto import SECRET_MASK
from headwater.engine import queue
from headwater.errors import not_found, raise_if_invalid
from headwater.services._common import Backend, paginate, timestamp, update_paths
from headwater.services.consumers import (
    DEFAULT_ACK_WAIT_MS,
    DEFAULT_MAX_DELIVER,
    DEFAULT_WEBHOOK_BATCH_SIZE,
    parked_message_ids,
    parked_page,
    parked_page_request,
    webhook_url_problem,
)
from headwater.store import utcnow
from headwater.store.models import ORG_EVENTS, Consumer
from headwater.store.org_events import EVENT_TYPES, endpoints_of, events_stream
from headwater.v1 import event_pb2, event_pb2_grpc

UPDATABLE = frozenset({"url", "event_types"})


def endpoint_to_proto(row: Consumer, secret: str | None = None) -> event_pb2.EventEndpoint:
    """`secret`: the signing secret in clear, given only in the answer to the create."""
    return event_pb2.EventEndpoint(
        id=row.id,
        org_id=row.org_id,
        url=row.webhook_url,
        event_types=[f["action"] for f in row.filters],
        secret=secret or SECRET_MASK,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def event_to_proto(document: dict) -> event_pb2.Event:
    """An event as stored (and POSTed: org_events.emit's document) in its message."""
    return json_format.ParseDict(document, event_pb2.Event())


def get_endpoint(org_id: str, endpoint_id: str) -> Consumer:
    row = endpoints_of(org_id).where(Consumer.id == endpoint_id).first()
    if row is None:
        raise not_found("event endpoint", endpoint_id)
    return row


def _checked(endpoint: event_pb2.EventEndpoint, paths: set[str]) -> dict:
    """The consumer columns of the endpoint's fields named in `paths`, every problem reported at once."""
    violations, columns = [], {}
    if "url" in paths:
        if problem := webhook_url_problem(endpoint.url):
            violations.append(("event_endpoint.url", problem))
        columns["webhook_url"] = endpoint.url
    if "event_types" in paths:
        types = list(endpoint.event_types)
        for i, type_ in enumerate(types):
            if type_ not in EVENT_TYPES:
                violations.append((f"event_endpoint.event_types[{i}]",
                                   f"{type_!r} is not an event type; the types are " + ", ".join(EVENT_TYPES)))
        if len(set(types)) != len(types):
            violations.append(("event_endpoint.event_types", "lists a type twice"))
        columns["filters"] = [{"action": type_} for type_ in types]  # none: every type
    raise_if_invalid(violations)
    return columns


class EventEndpointServicer(event_pb2_grpc.EventEndpointServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend
        self.store = backend.store

    async def CreateEventEndpoint(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        columns = _checked(request.event_endpoint, {"url", "event_types"})
        secret = "whsec_" + secrets.token_urlsafe(32)

        def create():
            row = Consumer.create(
                org=org_id,
                stream=events_stream(org_id),
                kind=ORG_EVENTS,
                deliver_policy="new",  # the events raised from now on
                ack_wait_ms=DEFAULT_ACK_WAIT_MS,  # also the POST's timeout
                max_deliver=DEFAULT_MAX_DELIVER["webhook"],
                webhook_secret=self.backend.box.encrypt(secret),
                webhook_batch_size=DEFAULT_WEBHOOK_BATCH_SIZE,
                **columns,
            )
            queue.backfill(row)  # with "new": waits out emits under way, queues nothing
            return row

        row = await self.store.run(create)
        return event_pb2.CreateEventEndpointResponse(event_endpoint=endpoint_to_proto(row, secret))

    async def GetEventEndpoint(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row = await self.store.run(get_endpoint, org_id, request.id)
        return event_pb2.GetEventEndpointResponse(event_endpoint=endpoint_to_proto(row))

    async def ListEventEndpoints(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        rows, next_token = await self.store.run(lambda: paginate(endpoints_of(org_id), Consumer, request))
        return event_pb2.ListEventEndpointsResponse(
            data=[endpoint_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def UpdateEventEndpoint(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        given = request.event_endpoint
        tops = {path.split(".")[0] for path in update_paths(request.update_mask, given)}
        known = event_pb2.EventEndpoint.DESCRIPTOR.fields_by_name
        raise_if_invalid([
            (f"event_endpoint.{top}", "is output only" if top in known else "is not a field of EventEndpoint")
            for top in sorted(tops - UPDATABLE)
        ])
        columns = _checked(given, tops)

        def update():
            row = get_endpoint(org_id, request.id)
            for name, value in columns.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            row.save()
            return row

        row = await self.store.run(update)
        return event_pb2.UpdateEventEndpointResponse(event_endpoint=endpoint_to_proto(row))

    async def DeleteEventEndpoint(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        await self.store.run(lambda: get_endpoint(org_id, request.id).delete_instance())  # its queue goes with it
        return event_pb2.DeleteEventEndpointResponse(id=request.id, deleted=True)

    async def ListParkedEvents(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        after, size = parked_page_request(request)
        rows, next_token = await self.store.run(lambda: parked_page(get_endpoint(org_id, request.id).id, after, size))
        return event_pb2.ListParkedEventsResponse(
            data=[
                event_pb2.ParkedEvent(
                    id=str(message.id),
                    event=event_to_proto(event.record),
                    deliver_count=message.deliver_count,
                    last_error=message.last_error,
                )
                for message, event in rows
            ],
            next_page_token=next_token,
        )

    async def RedeliverParkedEvents(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        ids = parked_message_ids(request.parked_event_ids, "parked_event_ids", what="event")
        count = await self.store.run(lambda: queue.redeliver(get_endpoint(org_id, request.id).id, ids))
        return event_pb2.RedeliverParkedEventsResponse(redelivered=count)
