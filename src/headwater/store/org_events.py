"""An organisation's own events, for the event endpoints it registers (`/v1/event-endpoints`).

    emit(org_id, "connection.created",
         {"credential_id": row.id, "provider": row.provider, "end_user_id": session.end_user_id})

`emit` is the one way to raise an event. Call it inside the `store.run` transaction that makes what
the event tells (the credential stored, the health changed): the event is raised if and only if
that commits, and it is never lost between the two. With no endpoint wanting its type, it writes
nothing.

How it is delivered: an event endpoint is a webhook consumer (kind ORG_EVENTS) of the
organisation's events stream, an internal stream made with its first endpoint and shown by no API.
`emit` appends the event to that stream and queues it for each endpoint whose `event_types` name
it, exactly as `apply_changes` queues a record's change for webhook consumers; the webhook loop
(headwater.engine.delivery) then POSTs it, signed, retried with backoff and parked after
max_deliver attempts. An event's `subject` (the key of its data that EVENT_TYPES names) plays the
record's part: one subject's events are delivered in order, one at a time.

The types and their `data` (every id a string, times ISO 8601 UTC, absent values null):

    connection.created         {"credential_id", "provider", "end_user_id", ...}: an end user
                               connected an account (the connect flow stored the credential)
    connection.failed          {"provider", "end_user_id", "message", ...}: the flow ended without
                               a credential (consent denied, a wrong API key...); `message` says why
    credential.refresh_failed  {"credential_id", "provider", "external_id", "message"}: the provider
                               refused to refresh the access token (invalid_grant, or 400/401/403)
    credential.health_changed  {"credential_id", "provider", "external_id", "previous_status",
                                "health": {"status", "last_error", "last_error_at"}}
    sync.health_changed        {"sync_id", "credential_id", "provider", "external_id",
                                "previous_status", "health": {"status", "last_error", "last_error_at"}}
    consumer.health_changed    {"consumer_id", "stream_id", "previous_status",
                                "health": {"status", "last_error", "last_error_at"}}: a consumer
                               became `lagging` (its oldest unacked change is older than its
                               stream's retention) or `healthy` again (headwater.store.retention)

A type's keys listed here are its contract: more may be added, none taken away.
"""

from __future__ import annotations

import uuid

from headwater.store.models import ORG_EVENTS, Consumer, Event, Stream, iso, utcnow
from headwater.store.records import matches, queue_for_consumers, stream_consumers

# Each type, and the key of its `data` naming what it is about (its subject).
EVENT_TYPES = {
    "connection.created": "end_user_id",
    "connection.failed": "end_user_id",
    "credential.refresh_failed": "credential_id",
    "credential.health_changed": "credential_id",
    "sync.health_changed": "sync_id",
    "consumer.health_changed": "consumer_id",
}
# Streams are unique by (organisation, name); no stream the API creates is nameless, so the
# events stream never takes a name a user wants.
_EVENTS_STREAM_NAME = ""


def emit(org_id: str, type: str, data: dict) -> Event | None:
    """Raises the event `type` with `data` for the organisation's endpoints that want it (inside
    the caller's `store.run` transaction); returns it, or None when no endpoint wants it.

    `data` must carry the type's subject key (EVENT_TYPES): a ValueError otherwise, as for an
    unknown type."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; the types are {', '.join(EVENT_TYPES)}")
    subject = data.get(EVENT_TYPES[type])
    if not subject:
        raise ValueError(f"a {type} event's data needs {EVENT_TYPES[type]!r}")
    stream = Stream.get_or_none((Stream.org == org_id) & (Stream.kind == ORG_EVENTS))
    if stream is None:
        return None  # no endpoint was ever made
    endpoints = stream_consumers(stream.id)  # read so that none is being created meanwhile
    now = utcnow()
    event = Event(
        stream=stream.id, org=org_id, sync_id="", collection_id="", record_id=str(subject), action=type,
        record={"id": f"evt_{uuid.uuid4().hex}", "type": type, "created_at": iso(now), "data": data},
        created_at=now,
    )
    if not any(matches(endpoint.filters, event) for endpoint in endpoints):
        return None
    event.save(force_insert=True)
    queue_for_consumers(event, endpoints)
    return event


def events_stream(org_id: str) -> Stream:
    """The organisation's events stream, made if it has none (for its first endpoint)."""
    Stream.insert(org=org_id, name=_EVENTS_STREAM_NAME, kind=ORG_EVENTS).on_conflict_ignore().execute()
    return Stream.get((Stream.org == org_id) & (Stream.kind == ORG_EVENTS))


def endpoints_of(org_id: str):
    """The organisation's event endpoints (a query of Consumer rows)."""
    return Consumer.select().where((Consumer.org == org_id) & (Consumer.kind == ORG_EVENTS))
