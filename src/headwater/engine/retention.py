"""The pruner: one background task that keeps every stream within its retention.

    pruner = Pruner(store, interval=60, batch_size=500)
    pruner.start()                 # the server does this (HEADWATER_RETENTION_INTERVAL_SECONDS)
    pruned = await pruner.prune()  # one pass now; tests move `pruner.clock` instead of waiting days
    await pruner.stop()

Every `interval` seconds a pass goes over every stream (headwater.store.retention says what it
deletes): first each consumer's messages older than twice the retention are dropped and its
health assessed, then the stream's events older than the retention that no consumer still owes
are deleted. Each step is one `store.run` of at most `batch_size` rows, so a pass never holds a
lock for long: acks, claims and the sync engine's writes go on between its batches.

Several processes (replicas, workers) each run a pruner: their deletes are idempotent, and a
consumer's health changes once (a conditional update), so nothing needs electing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from headwater.store import retention
from headwater.store.models import utcnow

log = logging.getLogger("headwater.retention")


@dataclass
class Pruned:
    """What one pass did."""

    events: int = 0  # events deleted
    dropped_messages: int = 0  # messages dropped unacked, past twice their stream's retention
    batches: int = 0  # units of work it took


class Pruner:
    def __init__(self, store, interval: float, batch_size: int, clock: Callable = utcnow):
        self.store = store
        self.interval = interval
        self.batch_size = batch_size
        self.clock = clock  # naive UTC now, as every timestamp column holds it
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="headwater-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                pruned = await self.prune()
            except Exception:
                log.exception("pruning the streams failed; trying again in %g s", self.interval)
                continue
            if pruned.events or pruned.dropped_messages:
                log.info("pruned %d event(s), dropped %d unacked message(s) past twice the retention",
                         pruned.events, pruned.dropped_messages)

    async def prune(self) -> Pruned:
        """One pass over every stream, as of `clock()`."""
        now = self.clock()
        pruned = Pruned()
        run = self.store.run
        for stream in await run(retention.streams_to_prune, transaction=False):
            for consumer_id in stream.consumer_ids:
                dropped, more = 0, True
                while more:
                    count, more = await run(retention.drop_expired, consumer_id, now - 2 * stream.retention,
                                            self.batch_size)
                    dropped += count
                    pruned.batches += 1
                await run(retention.assess_health, consumer_id, stream.retention, now, dropped)
                pruned.dropped_messages += dropped
            after = 0
            while after is not None:
                deleted, after = await run(retention.prune_events, stream.id, now - stream.retention, after,
                                           self.batch_size)
                pruned.events += deleted
                pruned.batches += 1
        return pruned
