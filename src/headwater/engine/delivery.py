"""Webhook consumers and event endpoints: POSTing their messages, retrying with backoff, parking
what keeps failing.

An event endpoint is a webhook consumer of its organisation's events stream
(headwater.store.org_events), so both are delivered here, the same way; only the items of the body
differ (a change as `GET /next` answers it, or an event as endpoints receive it).

One loop per server process. It sleeps until a webhook consumer's queue changes (`HUB`), a retry
falls due, or a poll interval passes (a webhook consumer created meanwhile is noticed then); then,
for each webhook consumer with deliverable messages, it drains the queue, one batch at a time per
consumer:

    batch = claim(consumer, consumer.webhook_batch_size)   # the same claim as pull consumers use
    POST webhook_url  {"data": [...]}                      # the items of GET /next, or the events
        X-Headwater-Signature: sha256=<hex HMAC-SHA256 of the body with the consumer's secret>
    2xx  -> ack the batch
    else -> nack it with a delay of retry_seconds * 2^(attempt-1) (at most retry_max_seconds),
            jittered (headwater.backoff);
            a message delivered max_deliver times (default 8) is parked instead, with the error,
            where `GET /v1/http-consumers/{id}/parked` shows it and `.../redeliver` retries it.

The claim leases the batch for the consumer's ack_wait_ms, which is also the POST's timeout; a
process that dies mid-POST leaves a lease that runs out, and any process delivers the batch again
(at least once). POSTs go through the Forwarder, so `HEADWATER_ALLOW_PRIVATE_NETWORKS` rules
webhook URLs as it rules upstream calls: by default, no loopback or private addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import time

from peewee import fn

from headwater.backoff import backoff
from headwater.crypto import SecretBox
from headwater.engine import queue
from headwater.metrics import Metrics
from headwater.store import Store, utcnow
from headwater.store.models import ORG_EVENTS, Consumer, ConsumerMessage
from headwater.store.notify import HUB, POLL_SECONDS, Waiter
from headwater.upstream.forwarder import Forwarder, UpstreamError, UpstreamRequest

log = logging.getLogger("headwater.delivery")

SIGNATURE_HEADER = "X-Headwater-Signature"
MAX_CONCURRENT_CONSUMERS = 16
PUSHED_KINDS = ("webhook", ORG_EVENTS)  # the consumers this loop POSTs to


def signature(secret: str, body: bytes) -> str:
    """The X-Headwater-Signature value of a body: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(consumer: Consumer, batch: list[queue.Delivery]) -> bytes:
    """`{"data": [...]}`: the changes as `GET /next` answers them, or an endpoint's events as stored."""
    if consumer.kind == ORG_EVENTS:
        items = [d.record for d in batch]
    else:
        items = [d.to_json() for d in batch]
    return json.dumps({"data": items}, ensure_ascii=False).encode()


def _claim_next(consumer_id: str, metrics: Metrics) -> tuple[Consumer | None, list[queue.Delivery]]:
    """The consumer as it is now (its settings may have changed since the drain began) and its
    next batch (counted in `metrics`); (None, []) once it is deleted."""
    consumer = Consumer.get_or_none(Consumer.id == consumer_id)
    if consumer is None:
        return None, []
    batch = queue.claim(consumer, consumer.webhook_batch_size)
    metrics.delivered(consumer.kind, consumer.id, (d.deliver_count for d in batch))
    return consumer, batch


class WebhookDelivery:
    def __init__(
        self, store: Store, box: SecretBox, forwarder: Forwarder, retry_seconds: float, retry_max_seconds: float,
        metrics: Metrics | None = None,
    ):
        self.metrics = metrics or Metrics()
        self.store = store
        self.box = box
        self.forwarder = forwarder
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self._task: asyncio.Task | None = None
        self._draining: dict[str, asyncio.Task] = {}  # consumer id -> its drain
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_CONSUMERS)
        self._woken: Waiter | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="headwater-webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._draining.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        webhook_ids: list[str] = []  # woken by announcements for these; new ones join a pass later
        while True:
            with HUB.subscribe(webhook_ids) as woken:  # before reading, so nothing slips between
                self._woken = woken
                sleep = POLL_SECONDS
                try:
                    webhook_ids, due, next_at = await self.store.run(_due_consumers)
                    for consumer in due:
                        if consumer.id not in self._draining:
                            task = asyncio.create_task(self._drain(consumer))
                            self._draining[consumer.id] = task
                    if next_at is not None:
                        sleep = min(sleep, max(0.001, (next_at - utcnow()).total_seconds()))
                except Exception:
                    log.exception("webhook delivery: cannot read the queues; trying again")
                await woken.wait(sleep)

    async def _drain(self, consumer: Consumer) -> None:
        """Delivers the consumer's deliverable messages, batch after batch, until none is left or
        a POST fails (its retry is scheduled in the queue)."""
        consumer_id = consumer.id
        delivered = False
        try:
            async with self._slots:
                secret = self.box.decrypt(consumer.webhook_secret)
                while True:
                    consumer, batch = await self.store.run(_claim_next, consumer_id, self.metrics)
                    if not batch:
                        break
                    delivered = True
                    error = await self._post(consumer, secret, batch)
                    tokens = [d.ack_token for d in batch]
                    if error is None:
                        await self.store.run(queue.ack, consumer.id, tokens)
                        continue
                    attempt = max(d.deliver_count for d in batch)
                    delay = backoff(attempt, base=self.retry_seconds, cap=self.retry_max_seconds)
                    log.info("webhook of consumer %s failed (%s); attempt %d, next in %.1f s",
                             consumer.id, error, attempt, delay)
                    await self.store.run(queue.nack, consumer, tokens, int(delay * 1000), error)
                    return
        except Exception:
            log.exception("webhook delivery of consumer %s failed", consumer_id)
        finally:
            del self._draining[consumer_id]
            if delivered and self._woken is not None:
                self._woken.wake()  # more may have arrived while we were busy

    async def _post(self, consumer: Consumer, secret: str, batch: list[queue.Delivery]) -> str | None:
        """POSTs one batch; None when the receiver took it (2xx), else what went wrong."""
        body = webhook_body(consumer, batch)
        headers = [
            ("content-type", "application/json"),
            ("user-agent", "Headwater-Webhook/1"),
            (SIGNATURE_HEADER.lower(), signature(secret, body)),
        ]
        request = UpstreamRequest("POST", consumer.webhook_url, headers, body, timeout=consumer.ack_wait_ms / 1000)
        began = time.monotonic()
        try:
            response = await self.forwarder.send(request)
        except UpstreamError as exc:
            error = str(exc) or type(exc).__name__
        else:
            error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        self.metrics.webhook_posted(consumer.kind, consumer.id, error is None, time.monotonic() - began)
        return error


def _due_consumers() -> tuple[list[str], list[Consumer], datetime.datetime | None]:
    """The pushed consumers' ids, those with messages deliverable now, and when the next falls due."""
    now = utcnow()
    M = ConsumerMessage
    webhook_ids = [row.id for row in Consumer.select(Consumer.id).where(Consumer.kind.in_(PUSHED_KINDS))]
    if not webhook_ids:
        return [], [], None
    queued = M.select().where(M.consumer.in_(webhook_ids) & M.state.in_([queue.AVAILABLE, queue.DELIVERED]))
    due_ids = queued.where(M.visible_at <= now).select(M.consumer).distinct()
    due = list(Consumer.select().where(Consumer.id.in_(due_ids)))
    next_at = queued.where(M.visible_at > now).select(fn.MIN(M.visible_at)).scalar()
    return webhook_ids, due, queue.as_datetime(next_at)
