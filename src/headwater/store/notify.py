"""Wake-ups for whoever waits on a consumer's queue, and the ack waiter built on them.

Anything that changes a consumer's queue (events queued by `apply_changes`, acks, nacks,
redeliveries) calls `announce(consumer_ids)` inside its `store.run` transaction. Waiters
(long-polls, gRPC Receive streams, the webhook loop, mutations awaiting consumers) subscribe to
the consumer ids they care about, re-read the database when woken, and otherwise sleep:

    with HUB.subscribe([consumer_id]) as woken:
        while not (batch := await store.run(claim, ...)):
            await woken.wait(timeout=1.0)       # an announcement, or the polling fallback

How an announcement travels:
- in this process: an after-commit hook of the transaction (nothing is announced if it rolls back);
- to other processes on the same PostgreSQL: `pg_notify` inside the same transaction (PostgreSQL
  delivers it on commit), received by one dedicated LISTEN connection per process (`Listener`);
- nowhere else: waiters also re-read at least every `POLL_SECONDS`, which covers SQLite shared by
  several processes and notifications lost while the LISTEN connection was down.

A wake-up says "look again", never what changed, so a spurious or duplicate one costs one query and
a lost one costs at most a poll interval. No waiter holds a database connection while it sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

import asyncpg
import grpc
from peewee import fn
from playhouse.pwasyncio import AsyncPostgresqlDatabase

from headwater.backoff import backoff
from headwater.errors import ApiError
from headwater.store.database import Store
from headwater.store.models import Consumer, ConsumerMessage, database

log = logging.getLogger("headwater.notify")

CHANNEL = "headwater_consumers"
POLL_SECONDS = 1.0  # the longest a waiter sleeps without looking again
_PROCESS = secrets.token_hex(8)  # tags our own NOTIFYs, which the in-process hook already delivered
_IDS_PER_NOTIFY = 200  # a NOTIFY payload holds at most 8000 bytes


class Waiter:
    """One subscriber's wake-up flag (see `Hub.subscribe`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Sleeps until woken or `timeout` seconds passed; True if woken. Clears the flag."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
        except TimeoutError:
            pass
        woken = self._event.is_set()
        self._event.clear()
        return woken


class Hub:
    """The process's subscribers, by consumer id. Process-wide, like the models' database."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, keys: Iterable[str]) -> Iterator[Waiter]:
        """Subscribe before reading the state you wait on, so no announcement falls in between."""
        keys = list(keys)
        waiter = Waiter()
        for key in keys:
            self._waiters[key].add(waiter)
        try:
            yield waiter
        finally:
            for key in keys:
                self._waiters[key].discard(waiter)
                if not self._waiters[key]:
                    del self._waiters[key]

    def publish(self, keys: Iterable[str]) -> None:
        for key in keys:
            for waiter in self._waiters.get(key, ()):
                waiter.wake()

    def publish_all(self) -> None:
        """Wakes every subscriber (after announcements may have been lost)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()


HUB = Hub()


def announce(consumer_ids: Iterable[str], notified: bool = False) -> None:
    """Tells every waiter on these consumers to look again once the current transaction commits.

    Synchronous Peewee code: call it inside `store.run`. Outside a transaction it announces at once.
    `notified`: the statement that changed the queue already sent PostgreSQL's NOTIFY for them
    (`pg_notify(CHANNEL, notify_payload(...))` among the values it computes, one round trip fewer).
    """
    ids = sorted(set(consumer_ids))
    if not ids:
        return
    db = database.obj
    if isinstance(db, AsyncPostgresqlDatabase) and not notified:
        for start in range(0, len(ids), _IDS_PER_NOTIFY):
            db.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, notify_payload(ids[start : start + _IDS_PER_NOTIFY])))
    db.after_commit(lambda: HUB.publish(ids))


def notify_payload(consumer_ids: list[str]) -> str:
    """What a NOTIFY on CHANNEL carries: this process's tag and the consumer ids (at most 200)."""
    return _PROCESS + "|" + ",".join(consumer_ids)


class Listener:
    """The process's LISTEN connection to PostgreSQL, feeding other processes' announcements to HUB.

    Shared by every server of the process (like the Store); reconnects when the connection drops,
    and wakes every waiter after a reconnect, since announcements may have been missed meanwhile.
    """

    _running: dict[str, tuple[Listener, int]] = {}  # url -> (listener, users)

    def __init__(self, url: str):
        self.url = url
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    @classmethod
    async def start(cls, store: Store) -> Listener | None:
        """Starts (or shares) the listener of the store's database; None on SQLite."""
        if not store.is_postgres:
            return None
        listener, users = cls._running.get(store.url, (None, 0))
        if listener is None:
            listener = cls(store.url)
            listener._task = asyncio.create_task(listener._run(), name="headwater-listen")
        cls._running[store.url] = (listener, users + 1)
        return listener

    async def stop(self) -> None:
        listener, users = self._running[self.url]
        if users > 1:
            self._running[self.url] = (listener, users - 1)
            return
        del self._running[self.url]
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                self.connected.set()
                HUB.publish_all()  # whatever was announced while we were not listening
                failures = 0
                await lost.wait()
                log.warning("lost the LISTEN connection to PostgreSQL; reconnecting")
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot LISTEN on PostgreSQL (%s); polling until it works", exc)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            failures += 1
            await asyncio.sleep(backoff(failures, base=0.1, cap=5.0))

    @staticmethod
    def _received(_conn, _pid, _channel, payload: str) -> None:
        origin, _, ids = payload.partition("|")
        if origin != _PROCESS:
            HUB.publish(ids.split(","))


class AckWaiter:
    """Read-your-writes: waits until consumers have acked given events (`backend.acks`).

        pending = await backend.acks.wait(org_id, ["c1", "c2"], [event.seq, ...], timeout_seconds=30)
        if pending: ...   # these consumers still have some of the events unacked
    """

    def __init__(self, store: Store):
        self.store = store

    async def wait(
        self, org_id: str, consumer_ids: list[str], event_seqs: list[int], timeout_seconds: float
    ) -> list[str]:
        """The consumer ids (in the order given) that have NOT acked every one of `event_seqs`
        queued to them, once all have or `timeout_seconds` passed. An event not queued to a consumer
        (its filters did not match) needs no ack from it. A consumer deleted meanwhile never acks.
        Raises NOT_FOUND for a consumer id that is not the organisation's."""
        consumer_ids = list(dict.fromkeys(consumer_ids))
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        with HUB.subscribe(consumer_ids) as woken:
            first = True
            while True:
                pending, gone = await self.store.run(_unacked, org_id, consumer_ids, event_seqs, transaction=False)
                if first and gone:  # gone before we began: not the organisation's (or never was)
                    missing = next(c for c in consumer_ids if c in gone)
                    raise ApiError(grpc.StatusCode.NOT_FOUND, f"consumer {missing!r} not found")
                first = False
                left = deadline - time.monotonic()
                if pending <= gone or left <= 0:
                    return [c for c in consumer_ids if c in pending]
                await woken.wait(min(left, POLL_SECONDS))


def _unacked(org_id: str, consumer_ids: list[str], event_seqs: list[int]) -> tuple[set[str], set[str]]:
    """(consumers with some of the events still queued or gone altogether, those gone: deleted,
    or never the organisation's), in one statement: each of the organisation's consumers among
    them, and whether it still has one of the events queued."""
    M = ConsumerMessage
    queued = M.select(M.id).where((M.consumer == Consumer.id) & M.event.in_(event_seqs))
    rows = Consumer.select(Consumer.id, fn.EXISTS(queued)).where((Consumer.org == org_id) & Consumer.id.in_(consumer_ids))
    found = dict(rows.tuples())
    gone = set(consumer_ids) - set(found)
    return {c for c, still_queued in found.items() if still_queued} | gone, gone
