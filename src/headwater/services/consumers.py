"""ConsumerService: pull and webhook consumers of a stream (`/v1/http-consumers`).

The queue semantics (claim, ack, nack, parking, redelivery) live in `headwater.engine.queue`;
webhook pushing in `headwater.engine.delivery`. This module validates requests, checks that
everything named belongs to the caller's organisation, and waits: a long-poll (`Next` with
`wait_for`) and the `Receive` stream sleep on the consumer's wake-ups (`headwater.store.notify`)
between reads, holding no database connection while they sleep.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import secrets
import time
from urllib.parse import urlsplit

from headwater.crypto import SECRET_MASK
from headwater.engine import queue
from headwater.errors import failed_precondition, invalid, not_found, raise_if_invalid
from headwater.metrics import Metrics
from headwater.rest import JsonAnswer
from headwater.services._common import (
    DEFAULT_PAGE_SIZE,
    NOT_OUR_PAGE_TOKEN,
    Backend,
    page_size_violations,
    paginate,
    timestamp,
    update_paths,
)
from headwater.store import Stream, Sync, utcnow
from headwater.store.models import Consumer, ConsumerMessage, Event
from headwater.store.notify import HUB, POLL_SECONDS, announce
from headwater.v1 import consumer_pb2, consumer_pb2_grpc

DELIVER_POLICIES = ("all", "new", "last")
DEFAULT_ACK_WAIT_MS = 30_000
ACK_WAIT_RANGE_MS = (100, 86_400_000)  # 0.1 s to a day
DEFAULT_MAX_DELIVER = {"pull": 0, "webhook": 8}
NO_LIMIT_AS_SEQUIN_SAYS = -1  # Sequin's hosted API writes "no limit" as max_deliver -1; ours is 0
MAX_BATCH_SIZE = 1000
DEFAULT_WEBHOOK_BATCH_SIZE = 50
MAX_WAIT_FOR_MS = 60_000
DEADLINE_MARGIN = 0.25  # seconds: a long-poll answers (empty) this long before the call's deadline
FILTER_KEYS = ("sync_id", "collection_id", "record_id")
# UpdateConsumer: what may change, what may not, what is never given.
UPDATABLE = frozenset({"name", "filters", "ack_wait_ms", "max_deliver", "max_ack_pending", "webhook_batch_size"})
FIXED = frozenset({"stream_id", "deliver_policy", "webhook_url"})
OUTPUT_ONLY = frozenset({"id", "org_id", "kind", "webhook_secret", "created_at", "updated_at", "health"})


def consumer_to_proto(row: Consumer, secret: str | None = None,
                      backlog: queue.Backlog | None = None) -> consumer_pb2.Consumer:
    """`secret`: the webhook secret in clear, given only in the answer to the create; `backlog`:
    its queue's counts (queue.backlogs: none there is an empty queue)."""
    return consumer_pb2.Consumer(
        id=row.id,
        org_id=row.org_id,
        name=row.name or None,  # unset strings answer null, not ""
        stream_id=row.stream_id,
        filters=[consumer_pb2.ConsumerFilter(**f) for f in row.filters],
        deliver_policy=row.deliver_policy,
        ack_wait_ms=row.ack_wait_ms,
        max_deliver=row.max_deliver,
        max_ack_pending=row.max_ack_pending,
        kind=row.kind,
        webhook_url=row.webhook_url or None,
        webhook_secret=secret or (SECRET_MASK if row.webhook_secret else None),
        webhook_batch_size=row.webhook_batch_size if row.kind == "webhook" else None,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        health=consumer_pb2.ConsumerHealth(
            status=row.health_status,
            last_error=row.health_last_error or None,
            last_error_at=timestamp(row.health_last_error_at),
            dropped_messages=min(row.dropped_messages, 2**31 - 1),
        ),
        backlog=consumer_pb2.ConsumerBacklog(**dataclasses.asdict(backlog or queue.Backlog())),
    )


def get_consumer(org_id: str, consumer_id: str) -> Consumer:
    row = Consumer.visible_to(org_id).where(Consumer.id == consumer_id).first()
    if row is None:
        raise not_found("consumer", consumer_id)
    return row


def webhook_url_problem(url: str) -> str | None:
    """What is wrong with a URL Headwater is to POST to (a webhook consumer's, an event
    endpoint's), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials: verify the X-Headwater-Signature header instead"
    return None


def _settings(consumer: consumer_pb2.Consumer, kind: str, found: list[tuple[str, str]] = ()) -> dict:
    """The consumer's own fields, validated; every problem reported at once, after those `found`
    already."""
    violations = list(found)
    deliver_policy = consumer.deliver_policy or "all"
    if deliver_policy not in DELIVER_POLICIES:
        violations.append(("consumer.deliver_policy", "must be one of " + ", ".join(DELIVER_POLICIES)))
    ack_wait_ms = consumer.ack_wait_ms if consumer.HasField("ack_wait_ms") else DEFAULT_ACK_WAIT_MS
    low, high = ACK_WAIT_RANGE_MS
    if not low <= ack_wait_ms <= high:
        violations.append(("consumer.ack_wait_ms", f"must be between {low} and {high} milliseconds"))
    max_deliver = consumer.max_deliver if consumer.HasField("max_deliver") else DEFAULT_MAX_DELIVER[kind]
    if max_deliver == NO_LIMIT_AS_SEQUIN_SAYS:
        max_deliver = 0
    if max_deliver < 0:
        violations.append(("consumer.max_deliver", "must not be negative (0 or -1: no limit)"))
    if consumer.max_ack_pending < 0:
        violations.append(("consumer.max_ack_pending", "must not be negative (0: no limit)"))
    if kind == "webhook" and (problem := webhook_url_problem(consumer.webhook_url)):
        violations.append(("consumer.webhook_url", problem))
    webhook_batch_size = DEFAULT_WEBHOOK_BATCH_SIZE
    if consumer.HasField("webhook_batch_size"):
        webhook_batch_size = consumer.webhook_batch_size
        if kind != "webhook":
            violations.append(
                ("consumer.webhook_batch_size", "is for webhook consumers (pull consumers give batch_size to /next)")
            )
        elif not 1 <= webhook_batch_size <= MAX_BATCH_SIZE:
            violations.append(("consumer.webhook_batch_size", f"must be between 1 and {MAX_BATCH_SIZE}"))
    filters = []
    for i, f in enumerate(consumer.filters):
        values = {k: getattr(f, k).strip() for k in FILTER_KEYS if getattr(f, k).strip()}
        if not values:
            violations.append((f"consumer.filters[{i}]", "must name at least one of " + ", ".join(FILTER_KEYS)))
        filters.append(values)
    raise_if_invalid(violations)
    return {
        "name": consumer.name.strip(),
        "kind": kind,
        "filters": filters,
        "deliver_policy": deliver_policy,
        "ack_wait_ms": ack_wait_ms,
        "max_deliver": max_deliver,
        "max_ack_pending": consumer.max_ack_pending,
        "webhook_url": consumer.webhook_url if kind == "webhook" else "",
        "webhook_batch_size": webhook_batch_size,
    }


def _stream_of(org_id: str, stream_id: str, filters: list[dict]) -> str:
    """The stream a consumer reads: `stream_id`, or the one stream of the syncs its filters name."""
    streams = set()
    if stream_id:
        if not Stream.visible_to(org_id).where(Stream.id == stream_id).exists():
            raise not_found("stream", stream_id)
        streams.add(stream_id)
    for i, f in enumerate(filters):
        if "sync_id" not in f:
            continue
        sync = Sync.get_or_none((Sync.id == f["sync_id"]) & (Sync.org == org_id))
        if sync is None:
            raise not_found("sync", f["sync_id"])
        if stream_id and sync.stream_id != stream_id:
            raise invalid(f"consumer.filters[{i}].sync_id",
                          f"sync {sync.id} writes to stream {sync.stream_id}, not to stream_id {stream_id}")
        if "collection_id" in f and f["collection_id"] not in sync.collection_ids:
            raise invalid(f"consumer.filters[{i}].collection_id",
                          f"sync {sync.id} does not carry {f['collection_id']!r} (it carries "
                          + ", ".join(sync.collection_ids) + ")")
        streams.add(sync.stream_id)
    if not streams:
        raise invalid("consumer.stream_id", "is required unless the filters name a sync (whose stream is read)")
    if len(streams) > 1:
        raise invalid("consumer.filters", "name syncs of different streams; a consumer reads one stream")
    return streams.pop()


def _take(org_id: str, consumer_id: str, batch_size: int,
          metrics: Metrics) -> tuple[list[queue.Delivery], queue.QueueInfo]:
    """A batch and the queue's counts after it, in two statements that each stand alone (no
    transaction: see queue.claim), so `store.run(_take, ..., transaction=False)`: the consumer
    with its queue's counts, then the claim (counted in `metrics`)."""
    now = utcnow()
    consumer, before = queue.consumer_and_queue(org_id, consumer_id, now)
    if consumer is None:
        raise not_found("consumer", consumer_id)
    if consumer.kind != "pull":
        raise failed_precondition(
            f"consumer {consumer.id} is a webhook consumer: Headwater POSTs its messages to its webhook_url"
        )
    batch = queue.claim(consumer, batch_size, now)
    metrics.delivered(consumer.kind, consumer.id, (d.deliver_count for d in batch))
    if consumer.max_deliver:  # the claim may have parked messages: count again
        return batch, queue.info(consumer.id)
    return batch, before.after_claim(len(batch), now + datetime.timedelta(milliseconds=consumer.ack_wait_ms))


def _batch_size_violations(value: int) -> list[tuple[str, str]]:
    if not 0 <= value <= MAX_BATCH_SIZE:
        return [("batch_size", f"must be between 1 and {MAX_BATCH_SIZE} (default 1)")]
    return []


class ConsumerServicer(consumer_pb2_grpc.ConsumerServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend
        self.store = backend.store
        self._stopping = False

    def stop(self) -> None:
        """The server is stopping: a long-poll waiting now answers its (empty) batch at once and a
        Receive stream ends with OK, rather than being cut when the server's grace runs out;
        later calls do not wait."""
        self._stopping = True
        HUB.publish_all()  # a spurious wake-up for other servers' waiters in this process: one query

    async def CreateConsumer(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        kind = "webhook" if request.consumer.webhook_url else "pull"
        settings = _settings(request.consumer, kind)
        secret = "whsec_" + secrets.token_urlsafe(32) if kind == "webhook" else ""

        def create():
            stream_id = _stream_of(org_id, request.consumer.stream_id.strip(), settings["filters"])
            row = Consumer.create(
                org=org_id,
                stream=stream_id,
                webhook_secret=self.backend.box.encrypt(secret) if secret else "",
                **settings,
            )
            queue.backfill(row)
            return row, queue.backlogs([row.id])

        row, backlogs = await self.store.run(create)
        return consumer_pb2.CreateConsumerResponse(consumer=consumer_to_proto(row, secret, backlogs.get(row.id)))

    async def GetConsumer(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def get():
            row = get_consumer(org_id, request.id)
            return row, queue.backlogs([row.id])

        row, backlogs = await self.store.run(get)
        return consumer_pb2.GetConsumerResponse(consumer=consumer_to_proto(row, backlog=backlogs.get(row.id)))

    async def ListConsumers(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def page():
            rows, next_token = paginate(Consumer.visible_to(org_id), Consumer, request)
            return rows, next_token, queue.backlogs([r.id for r in rows])

        rows, next_token, backlogs = await self.store.run(page)
        return consumer_pb2.ListConsumersResponse(
            data=[consumer_to_proto(r, backlog=backlogs.get(r.id)) for r in rows],
            next_page_token=next_token,
        )

    async def UpdateConsumer(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        given = request.consumer
        tops = {path.split(".")[0] for path in update_paths(request.update_mask, given)}
        violations = []
        for top in sorted(tops - UPDATABLE):
            if top in OUTPUT_ONLY:
                violations.append((f"consumer.{top}", "is output only"))
            elif top not in FIXED:
                violations.append((f"consumer.{top}", "is not a field of Consumer"))
        raise_if_invalid(violations)

        def update():
            row = get_consumer(org_id, request.id)
            # The consumer as it would be, validated whole, as on create.
            merged = consumer_to_proto(row)
            fixed = [
                (f"consumer.{name}", "cannot change; create a new consumer instead")
                for name in sorted(FIXED & tops)
                if getattr(given, name) != getattr(merged, name)
            ]
            for name in sorted(UPDATABLE & tops):
                merged.ClearField(name)  # in the mask but not given: back to the default
                if name == "filters":
                    merged.filters.extend(given.filters)
                elif not merged.DESCRIPTOR.fields_by_name[name].has_presence or given.HasField(name):
                    setattr(merged, name, getattr(given, name))
            settings = _settings(merged, row.kind, fixed)
            _stream_of(org_id, row.stream_id, settings["filters"])  # the filters' syncs write to its stream
            for name in UPDATABLE:
                setattr(row, name, settings[name])
            row.updated_at = utcnow()
            row.save()
            announce([row.id])  # waiters look again (a higher max_ack_pending lets more through)
            return row, queue.backlogs([row.id])

        row, backlogs = await self.store.run(update)
        return consumer_pb2.UpdateConsumerResponse(consumer=consumer_to_proto(row, backlog=backlogs.get(row.id)))

    async def DeleteConsumer(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def delete():
            get_consumer(org_id, request.id).delete_instance()  # its queued messages go with it
            announce([request.id])  # waiters look again and find it gone

        await self.store.run(delete)
        return consumer_pb2.DeleteConsumerResponse(id=request.id, deleted=True)

    async def Next(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        violations = _batch_size_violations(request.batch_size)
        if not 0 <= request.wait_for <= MAX_WAIT_FOR_MS:
            violations.append(("wait_for", f"must be between 0 and {MAX_WAIT_FOR_MS} milliseconds"))
        raise_if_invalid(violations)
        batch_size = request.batch_size or 1
        wait = request.wait_for / 1000
        remaining = context.time_remaining()
        if remaining is not None:
            wait = max(0.0, min(wait, remaining - DEADLINE_MARGIN))
        deadline = time.monotonic() + wait
        with HUB.subscribe([request.id]) as woken:
            while True:
                batch, info = await self.store.run(_take, org_id, request.id, batch_size, self.backend.metrics,
                                                   transaction=False)
                left = deadline - time.monotonic()
                if batch or left <= 0 or self._stopping:
                    return _next_answer(batch, info)
                await woken.wait(min(left, _until(info)))

    async def Receive(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        raise_if_invalid(_batch_size_violations(request.batch_size))
        batch_size = request.batch_size or 1
        with HUB.subscribe([request.id]) as woken:
            while not self._stopping:
                batch, info = await self.store.run(_take, org_id, request.id, batch_size, self.backend.metrics,
                                                   transaction=False)
                if batch:
                    yield consumer_pb2.ReceiveResponse(data=[d.to_proto() for d in batch], info=_info(info))
                else:
                    await woken.wait(_until(info))

    async def Ack(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        raise_if_invalid(_token_violations(request.ack_tokens))
        tokens = list(request.ack_tokens)

        done = await self.store.run(queue.ack, request.id, tokens, org_id, transaction=False)  # one statement
        if done is None:
            raise not_found("consumer", request.id)
        return consumer_pb2.AckResponse(
            success=True, acked=len(done), unknown_ack_tokens=[t for t in tokens if t not in done]
        )

    async def Nack(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        violations = _token_violations(request.ack_tokens)
        if not 0 <= request.delay_ms <= ACK_WAIT_RANGE_MS[1]:
            violations.append(("delay_ms", f"must be between 0 and {ACK_WAIT_RANGE_MS[1]} milliseconds"))
        raise_if_invalid(violations)
        tokens = list(request.ack_tokens)

        def nack():
            return queue.nack(get_consumer(org_id, request.id), tokens, request.delay_ms)

        done = await self.store.run(nack)
        return consumer_pb2.NackResponse(
            success=True, nacked=len(done), unknown_ack_tokens=[t for t in tokens if t not in done]
        )

    async def ListParkedMessages(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        after, size = parked_page_request(request)

        def page():
            return parked_page(get_consumer(org_id, request.id).id, after, size)

        rows, next_token = await self.store.run(page)
        return consumer_pb2.ListParkedMessagesResponse(
            data=[
                consumer_pb2.ParkedMessage(
                    id=str(message.id),
                    record=queue.record_to_proto(event.record),
                    action=event.action,
                    deliver_count=message.deliver_count,
                    last_error=message.last_error,
                )
                for message, event in rows
            ],
            next_page_token=next_token,
        )

    async def RedeliverParkedMessages(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        ids = parked_message_ids(request.message_ids, "message_ids")

        def redeliver():
            return queue.redeliver(get_consumer(org_id, request.id).id, ids)

        count = await self.store.run(redeliver)
        return consumer_pb2.RedeliverParkedMessagesResponse(redelivered=count)


def _token_violations(values) -> list[tuple[str, str]]:
    if not values:
        return [("ack_tokens", "give at least one ack_token")]
    if len(values) > MAX_BATCH_SIZE:
        return [("ack_tokens", f"at most {MAX_BATCH_SIZE} at once")]
    return []


# --- parked messages: what consumers and event endpoints share ------------------------------------


def parked_page_request(request) -> tuple[int, int]:
    """(the id a page of parked messages starts after, its size) from the request's `page_token`
    and `page_size`, or INVALID_ARGUMENT."""
    after = _message_id(request.page_token) if request.page_token else 0
    violations = page_size_violations(request)
    if after is None:
        violations.append(("page_token", NOT_OUR_PAGE_TOKEN))
    raise_if_invalid(violations)
    return after, request.page_size or DEFAULT_PAGE_SIZE


def parked_page(consumer_id: str, after: int, size: int) -> tuple[list[tuple[ConsumerMessage, Event]], str]:
    """One page of the consumer's parked messages, with their events, and the next page's token."""
    rows = queue.parked(consumer_id, after, size + 1)
    return rows[:size], str(rows[size - 1][0].id) if len(rows) > size else ""


def parked_message_ids(values, field: str, what: str = "message") -> list[int]:
    """The parked messages' ids that `values` name (all of them when empty), or INVALID_ARGUMENT
    naming each one that is not such an id (`what`: "message", "event")."""
    ids = [_message_id(value) for value in values]
    raise_if_invalid([(f"{field}[{i}]", f"is not the id of a parked {what}") for i, id_ in enumerate(ids) if id_ is None])
    return ids


def _message_id(text: str) -> int | None:
    """A parked message's id (a positive 64-bit row id) from its decimal text, else None."""
    if not re.fullmatch(r"[0-9]{1,18}", text):
        return None
    return int(text)


def _next_answer(batch: list[queue.Delivery], info: queue.QueueInfo) -> JsonAnswer:
    """Next's answer: its JSON made from the record documents as they are (a batch of 100 went
    document, message, JSON before), its message for gRPC callers."""
    return JsonAnswer(
        {"data": [d.to_json() for d in batch],
         "info": {"num_pending": info.num_pending, "num_ack_pending": info.num_ack_pending}},
        lambda: consumer_pb2.NextResponse(data=[d.to_proto() for d in batch], info=_info(info)),
    )


def _info(info: queue.QueueInfo) -> consumer_pb2.ConsumerInfo:
    return consumer_pb2.ConsumerInfo(num_pending=info.num_pending, num_ack_pending=info.num_ack_pending)


def _until(info: queue.QueueInfo) -> float:
    """How long to sleep at most: until a message becomes deliverable again, or a poll interval."""
    if info.next_visible_at is None:
        return POLL_SECONDS
    seconds = (info.next_visible_at - utcnow()).total_seconds()
    return min(POLL_SECONDS, max(0.001, seconds))
