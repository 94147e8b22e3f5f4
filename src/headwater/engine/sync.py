"""The sync engine: one loop that keeps every active sync's collections flowing into its stream.

    engine = SyncEngine(backend, settings)
    engine.start()          # the server does this; HEADWATER_SYNC_ENGINE=false turns it off
    await engine.stop()     # gives its leases back

Work is done per collection of a sync (a row of `sync_collection`: cursor, progress, health,
lease). Every `sync_poll_seconds` the engine renews the leases it holds and claims due
collections up to `sync_workers` (leases.py); each claimed collection is worked a page at a time,
the next pages of a listing read while the pages before them are written (SyncEngine._pages):

  1. Backfill: the catalogue's `list` listing, page after page. Each page's records are written
     with `apply_changes`, the last of them in the same transaction as the cursor that points past
     them (a page holding more than WRITE_CHUNK records is written in chunks, one transaction
     each; pages read while a transaction ran go together into the next one), so a restart
     resumes at the page after the last whole one with nothing lost and nothing written twice.
  2. Incremental passes, right after the backfill and then every `sync_interval` seconds
     (`continuous`) or every 4 hours (`4h`): the `changes` listing from the watermark (the latest
     change time seen; the first one is the backfill's start less an overlap), then the
     `deletions` listing if the collection has one. Listings are read with ">=": the boundary
     records are read again, and an unchanged record writes nothing.
     A `newest_first` listing (Stripe's events) is read whole, each record's newest item kept,
     and applied oldest first.

Every read goes through `Upstream.send` as a background `UpstreamCall`: the credential's budget,
within the background share that leaves interactive calls at least 20% of it.

Failures: the answer's outcome (headwater.upstream.outcomes) decides the health. A rate limit
(429, GitHub's 403 with x-ratelimit-remaining: 0, ...), 5xx, timeouts and unreachable upstreams
make the collection `degraded`; 401, other 403s and answers the engine cannot use make it `error`,
with a message saying what to fix. Either way it is retried with backoff (headwater.backoff, at
most `sync_retry_max_seconds` apart; after a rate limit not before the provider's reset) and
becomes `healthy` again by itself on the next page that reads. A listing whose answer names the
page just read as the next one is an `error` too (reading on would loop on that page). A sync's health is its worst
collection's (or its credential's, if worse: headwater.store.health), and a change of it raises
`sync.health_changed`.

`max_age_days`: records whose change time is older are skipped, and at the end of every pass
the collection's stored records older than that are pruned, without events (they aged out of the
window; they were not deleted upstream).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import logging
import math
import os
import socket
import uuid
from dataclasses import dataclass

from headwater import tracing
from headwater.backoff import backoff
from headwater.engine import leases
from headwater.errors import ApiError
from headwater.settings import Settings
from headwater.store.health import refresh_sync_health
from headwater.store.models import Record, Sync, SyncCollection, utcnow
from headwater.store.records import Change, apply_changes
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.catalogue import Collection, Listing
from headwater.upstream.gateway import Priority, UpstreamCall
from headwater.upstream.outcomes import SYNC_HEALTH, Kind, Outcome, health_of
from headwater.upstream.reading import EPOCH, Page, ReadError, page_request, parse_page
from headwater.upstream.requests import UnsafeRequest

log = logging.getLogger("headwater.sync")

FOUR_HOURS = 4 * 3600.0
# Records written per transaction at most (see SyncEngine._write): on SQLite, whose one writer
# a long transaction holds, and on PostgreSQL.
WRITE_CHUNK = 200
POSTGRES_WRITE_CHUNK = 1000
# Pages read ahead of the writes at most (SyncEngine._pages).
READ_AHEAD = 4
# The first incremental pass starts this long before the backfill started: changes made while the
# backfill ran are read again, and a clock differing from the upstream's by less than this is harmless.
OVERLAP = datetime.timedelta(seconds=60)


class SyncFailure(Exception):
    """An upstream read failed: `degraded` (transient) or `error` (needs someone to act)."""

    def __init__(self, health: str, message: str, restart_listing: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.health = health
        self.message = message
        self.restart_listing = restart_listing  # the saved page position was refused
        self.retry_after = retry_after  # not before this (seconds): the provider's rate limit resets then


@dataclass
class Job:
    """What one step works on, read under the lease."""

    row: SyncCollection
    sync: Sync
    collection: Collection


@dataclass
class Step:
    """The result of reading one page (or, for `newest_first`, one whole pass)."""

    changes: list[Change]
    cursor: dict | None  # None: a chunk of a page, written before the chunk that moves the cursor
    backfill_completed: bool = False
    pass_completed: bool = False


class SyncEngine:
    def __init__(self, backend, settings: Settings):
        self.backend = backend
        self.store = backend.store
        self.metrics = backend.metrics
        self.settings = settings
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._working: dict[int, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        # Checked between steps as well as cancelling the tasks: a cancellation that arrives while
        # the database bridge runs a query may surface as an ordinary error.
        self._stopping = False
        self._wake = asyncio.Event()  # set when work falls due before the next poll

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="headwater-sync-engine")

    async def stop(self, release: bool = True) -> None:
        """Stops the loop and its workers and gives their leases back (`release=False` keeps
        them until they expire, as a killed process would)."""
        self._stopping = True
        tasks = [t for t in [self._task, *self._working.values()] if t is not None]
        held = list(self._working)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not release:
            return
        try:
            await self.store.run(leases.release_all, self.owner, held)
        except Exception:
            log.exception("could not give back the sync leases; they expire by themselves")

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:
                if self._stopping:
                    return
                log.exception("sync engine: looking for work failed; trying again")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.sync_poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> None:
        """Renews the leases held, then claims and starts due work."""
        ttl = self.settings.sync_lease_seconds
        lost = await self.store.run(leases.renew, self.owner, list(self._working), ttl)
        for unit_id in lost:  # finished, or another engine took it over: stop at once
            task = self._working.pop(unit_id, None)
            if task is not None:
                task.cancel()
        free = self.settings.sync_workers - len(self._working)
        if free <= 0:
            return
        await self.store.run(leases.ensure_rows)
        claimed = await self.store.run(leases.claim, self.owner, ttl, free, frozenset(self._working))
        for unit_id in claimed:
            self._working[unit_id] = asyncio.create_task(self._work(unit_id))

    async def _work(self, unit_id: int) -> None:
        # One trace per claim, when traces are on: its pages, their reads and writes (headwater.tracing).
        with tracing.sync_pass(unit_id) as span:
            try:
                await self._pages(unit_id, span)
            except leases.LeaseLost:
                pass
            except Exception as exc:
                if self._stopping:
                    return
                log.exception("sync engine: collection state %s failed", unit_id)
                try:
                    await self.store.run(self._fail, unit_id, SyncFailure("error", f"internal error: {exc}"))
                except Exception:
                    log.exception("sync engine: could not record the failure; the lease expires by itself")
            finally:
                self._working.pop(unit_id, None)

    # --- the pages of a claim: read ahead of their writes, written together ------------------------

    async def _pages(self, unit_id: int, pass_span) -> None:
        """Works the claimed collection until it is done for now (its pass completed, a failure,
        the sync paused) or the lease is lost (LeaseLost).

        Pipelined: a listing's pages are read one after the other (each page's answer names the
        next) by a `_Reader`, up to READ_AHEAD pages ahead of the writes, while the pages already
        read are written: the pages read while a transaction ran go together into the next one
        (up to `_chunk()` records), with the cursor past the last of them, so the guarantees of
        the module docstring hold. When a transaction says stop (the lease was lost, the sync
        paused or deleted) the pages read ahead are dropped unwritten; a failed read is recorded
        once the pages before it are written. Nothing is read past a listing's last page: the
        next listing or pass starts from the state its last write left."""
        job = await self.store.run(self._load, unit_id)
        if job is None:
            return
        tracing.working_on(pass_span, job.sync.id, job.row.collection_id)
        while job is not None and not self._stopping:
            reader = _Reader(self, job)
            try:
                job = await self._write_listing(unit_id, reader)
            finally:
                reader.stop()

    async def _write_listing(self, unit_id: int, reader: _Reader) -> Job | None:
        """Writes what `reader` reads; returns the state for the work due at once after its last
        page (the next listing or pass), else None."""
        while not self._stopping:
            pages = await reader.take(self._chunk())
            results = [page.read.result() for page in pages]
            failed = pages.pop() if isinstance(results[-1], SyncFailure) else None
            steps = [r for r in results if isinstance(r, Step)]
            job = None
            if steps:
                step = Step([c for s in steps for c in s.changes], steps[-1].cursor,
                            steps[-1].backfill_completed, steps[-1].pass_completed)
                for page in pages[:-1]:
                    page.end()  # written with the last page of the group, in its span
                job = await pages[-1].write(unit_id, step)
                if job is None:
                    if failed is not None:
                        failed.drop()
                    return None
            if failed is not None:
                await failed.fail(unit_id, results[-1])
                return None
            if not _names_next_page(step):
                return job
        return None

    def _chunk(self) -> int:
        """Records per transaction at most (a page holding more is written in several)."""
        return POSTGRES_WRITE_CHUNK if self.store.is_postgres else WRITE_CHUNK

    def _wake_after(self, seconds: float) -> None:
        """Looks for work again in `seconds` (a continuous sync's next pass) if that is before the poll."""
        if seconds <= self.settings.sync_poll_seconds:
            asyncio.get_running_loop().call_later(seconds, self._wake.set)

    async def _read_page(self, job: Job) -> Step | SyncFailure:
        """Reads the page `job`'s cursor names; a failure is returned, to be recorded (`_failed`)
        only once the pages before it are written."""
        try:
            account = await self.backend.accounts.for_sync(job.sync.org_id, job.sync.id)
            return await self._read(job, account)
        except SyncFailure as failure:
            return failure

    async def _failed(self, unit_id: int, job: Job, failure: SyncFailure, span) -> None:
        log.warning("sync %s %s: %s", job.sync.id, job.row.collection_id, failure.message)
        self.metrics.sync_failed(job.sync.provider, job.row.collection_id, job.sync.id, failure.health)
        tracing.failed(span, failure.health)
        self._wake_after(await self.store.run(self._fail, unit_id, failure))

    async def _write(self, unit_id: int, job: Job, step: Step) -> Job | None:
        """Writes a page read; returns the collection's state for the page after it when that is
        due at once, else None (done for now, or no longer ours to write: see _commit)."""
        # Written in chunks, one transaction each, so that no transaction holds SQLite's one writer
        # for long (a Salesforce page holds 2000 records); the cursor goes with the last chunk. A
        # restart between chunks reads the page again, and what was written is unchanged: no
        # record or event is written twice.
        changes, size = step.changes, self._chunk()
        while len(changes) > size:
            chunk, changes = changes[:size], changes[size:]
            due_in, _ = await self._commit_counted(job, unit_id, Step(chunk, cursor=None))
            if due_in is not None:
                return None
        due_in, after = await self._commit_counted(job, unit_id, dataclasses.replace(step, changes=changes))
        if due_in is None:
            return after
        self._wake_after(due_in)
        return None

    def _load(self, unit_id: int) -> Job | None:
        row = leases.fence(unit_id, self.owner, self.settings.sync_lease_seconds)
        sync = Sync.get_by_id(row.sync_id)
        collection = self.backend.catalogue.collection(row.collection_id)
        if sync.status != "active" or row.collection_id not in sync.collection_ids:
            leases.release(row)
            row.save()
            return None
        return Job(row, sync, collection)

    async def _read(self, job: Job, account: UpstreamAccount) -> Step:
        row, read = job.row, job.collection.read
        if read is None:
            raise SyncFailure("error", f"{job.collection.id} cannot be synced yet: the catalogue has no read spec")
        cursor = dict(row.cursor or {})
        token = cursor.get("page")
        if row.backfill_state != "completed":
            cursor.setdefault("changes_since", _iso(utcnow() - OVERLAP))
            since = self._cutoff(job.sync) or EPOCH
            page = await self._page(job, account, read.list, since, token)
            if page.next_token:
                return Step(page.changes, {**cursor, "page": page.next_token})
            return Step(page.changes, {"since": cursor["changes_since"]}, backfill_completed=True)

        since = _parse(cursor["since"])
        which = cursor.get("listing", "changes")
        listing = read.changes if which == "changes" else read.deletions
        if listing.newest_first:
            changes, newest = await self._whole_pass(job, account, listing, since)
        else:
            page = await self._page(job, account, listing, since, token)
            if page.next_token:
                return Step(page.changes, {**cursor, "page": page.next_token, "seen": _later(cursor.get("seen"), page.newest)})
            changes, newest = page.changes, page.newest
        seen = _later(cursor.get("seen"), newest if which == "changes" else None)
        if which == "changes" and read.deletions is not None:
            return Step(changes, {"since": cursor["since"], "listing": "deletions", "seen": seen})
        return Step(changes, {"since": _later(cursor["since"], _parse(seen) if seen else None)}, pass_completed=True)

    async def _whole_pass(self, job, account, listing: Listing, since) -> tuple[list[Change], datetime.datetime | None]:
        """Reads a newest-first listing to its end; each record's newest change, oldest first."""
        newest_by_id: dict[str, Change] = {}
        newest = None
        token = None
        while True:
            page = await self._page(job, account, listing, since, token)
            for change in page.changes:
                newest_by_id.setdefault(change.upstream_id, change)
            newest = _max(newest, page.newest)
            token = page.next_token
            if not token:
                return list(reversed(newest_by_id.values())), newest

    async def _page(self, job: Job, account: UpstreamAccount, listing: Listing, since, token) -> Page:
        provider = account.provider.name
        loop = asyncio.get_running_loop()
        try:
            request = page_request(listing, job.collection.read, since, job.sync.metadata or {}, token)
            sent = await self.backend.upstream.send(account, UpstreamCall(
                method=request.method, path=request.path, query=request.query,
                headers=[("Content-Type", "application/json")] if request.body else [], body=request.body,
                deadline=loop.time() + self.settings.sync_request_timeout, priority=Priority.BACKGROUND,
            ))
        except ApiError as error:
            raise SyncFailure(health_of(error), error.message) from None
        except (ReadError, UnsafeRequest) as error:
            raise SyncFailure("error", str(error)) from None
        response = sent.response
        if not 200 <= response.status < 300 or sent.outcome.kind is Kind.PAUSE:  # (a rate-limited 200: no page)
            raise _answer_failure(sent.outcome, response.status, response.body, provider, job, token is not None)
        try:
            page = parse_page(listing, response.status, response.headers, response.body)
        except ReadError as error:
            raise SyncFailure("error", f"{provider}: {error}") from None
        if token is not None and page.next_token == token:  # read on, it would ask for this page forever
            raise SyncFailure("error", (
                f"{provider} named the page it was asked for as the next one while listing {job.collection.name} "
                f"(more records share one change time than a page holds?); the listing cannot go on"
            ))
        return page

    async def _commit_counted(self, job: Job, unit_id: int, step: Step) -> tuple[float | None, Job | None]:
        """`_commit` in a transaction of its own, its changes counted once it has committed."""
        due_in, written, after = await self.store.run(self._commit, unit_id, step)
        self.metrics.sync_written(job.sync.provider, job.row.collection_id, job.sync.id, written)
        return due_in, after

    def _commit(self, unit_id: int, step: Step) -> tuple[float | None, int, Job | None]:
        """Writes a page's records, its cursor and the collection's progress in one transaction;
        returns None when the next page is due at once, else the seconds until the next pass; the
        number of changes written; and the collection's state as written (the next page's job)."""
        job = self._load(unit_id)
        if job is None:
            return math.inf, 0, None
        row, sync = job.row, job.sync
        now = utcnow()
        cutoff = self._cutoff(sync)
        changes = step.changes
        if cutoff is not None:
            changes = [c for c in changes if c.deleted or not c.upstream_updated_at or c.upstream_updated_at >= cutoff]
        written = sum(1 for w in apply_changes(sync, row.collection_id, changes) if w.event is not None)
        row.records_synced += written
        if step.cursor is None:  # a page's chunk: its last chunk carries the cursor (see _write)
            row.save()
            return None, written, job
        row.cursor = step.cursor
        was_healthy = row.health == "healthy"
        row.health, row.failures = "healthy", 0
        if row.backfill_state == "pending":
            row.backfill_state, row.backfill_started_at = "running", now
        due_in = None
        if step.backfill_completed:
            row.backfill_state, row.backfill_completed_at = "completed", now
        if step.pass_completed or step.backfill_completed:
            if cutoff is not None:
                Record.delete().where(
                    (Record.sync == sync.id) & (Record.collection_id == row.collection_id)
                    & (Record.upstream_updated_at < cutoff)
                ).execute()
        if step.pass_completed:
            row.last_synced_at = now
            interval = self.settings.sync_interval if sync.sync_frequency == "continuous" else FOUR_HOURS
            row.next_run_at = now + datetime.timedelta(seconds=interval)
            leases.release(row)
            due_in = interval
        row.save()
        if step.backfill_completed and sync.initial_backfill_completed_at is None:
            done = SyncCollection.select().where(
                (SyncCollection.sync == sync.id) & (SyncCollection.backfill_state == "completed")
                & SyncCollection.collection_id.in_(sync.collection_ids)
            ).count()
            if done == len(sync.collection_ids):
                Sync.update(initial_backfill_completed_at=now).where(Sync.id == sync.id).execute()
        if not was_healthy:
            refresh_sync_health(sync)
        return due_in, written, job

    def _fail(self, unit_id: int, failure: SyncFailure) -> float:
        """Records the failure and schedules the retry; returns the seconds until it."""
        try:
            row = leases.fence(unit_id, self.owner, self.settings.sync_lease_seconds)
        except leases.LeaseLost:
            return math.inf
        now = utcnow()
        row.health, row.last_error, row.last_error_at = failure.health, failure.message, now
        row.failures += 1
        if failure.restart_listing:
            row.cursor = {k: v for k, v in (row.cursor or {}).items() if k != "page"}
        delay = max(backoff(row.failures, base=0.5, cap=self.settings.sync_retry_max_seconds),
                    failure.retry_after or 0.0)
        row.next_run_at = now + datetime.timedelta(seconds=delay)
        leases.release(row)
        row.save()
        Sync.update(health_last_error=failure.message, health_last_error_at=now).where(Sync.id == row.sync_id).execute()
        refresh_sync_health(Sync.get_by_id(row.sync_id))
        return delay

    @staticmethod
    def _cutoff(sync: Sync) -> datetime.datetime | None:
        if not sync.max_age_days:
            return None
        return utcnow() - datetime.timedelta(days=sync.max_age_days)


class _Page:
    """One page of a claim (see SyncEngine._pages): its read, started at once in a task of its
    own, and its writes, both run in the context of the page's span (headwater.tracing.sync_page),
    so that they are the span's children though the page is read while the pages before it are
    written."""

    def __init__(self, engine: SyncEngine, job: Job):
        self.engine, self.job = engine, job
        listing = "list" if job.row.backfill_state != "completed" else (job.row.cursor or {}).get("listing", "changes")
        self.context = contextvars.copy_context()
        self._span = tracing.sync_page(job.sync.id, job.row.collection_id, listing)
        self.span = self.context.run(self._span.__enter__)
        self._ended = False
        self.read = asyncio.create_task(self._read(), context=self.context)
        self.read.add_done_callback(_retrieved)  # a dropped read's error is no one's

    async def _read(self) -> Step | SyncFailure:
        result = await self.engine._read_page(self.job)
        if isinstance(result, Step):
            tracing.page_read(self.span, len(result.changes))
        return result

    def next_job(self, step: Step) -> Job | None:
        """What reading the next page of the same listing takes, when `step` (this page's) names one."""
        if not _names_next_page(step):
            return None
        return dataclasses.replace(self.job, row=SyncCollection(**{**self.job.row.__data__, "cursor": step.cursor}))

    async def write(self, unit_id: int, step: Step) -> Job | None:
        try:
            return await asyncio.create_task(self.engine._write(unit_id, self.job, step), context=self.context)
        finally:
            self.end()

    async def fail(self, unit_id: int, failure: SyncFailure) -> None:
        try:
            await asyncio.create_task(self.engine._failed(unit_id, self.job, failure, self.span), context=self.context)
        finally:
            self.end()

    def drop(self) -> None:
        """Gives the page up unwritten (the page before it said stop); nothing once it is written."""
        self.read.cancel()
        self.end()

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.context.run(self._span.__exit__, None, None, None)


class _Reader:
    """Reads a listing's pages in order from `job`'s cursor, each page a `_Page`, at most
    READ_AHEAD of them read and not yet taken by the writer (`take`)."""

    def __init__(self, engine: SyncEngine, job: Job):
        self._engine = engine
        self._read: list[_Page] = []  # read (or failed), in order, not yet taken
        self._reading: _Page | None = None
        self._changed = asyncio.Event()  # a page was read, or one taken
        self._task = asyncio.create_task(self._run(job))
        self._task.add_done_callback(lambda _: self._changed.set())

    async def _run(self, job: Job) -> None:
        while True:
            while len(self._read) >= READ_AHEAD:
                self._changed.clear()
                await self._changed.wait()
            page = self._reading = _Page(self._engine, job)
            result = await page.read
            self._read.append(page)
            self._reading = None
            self._changed.set()
            job = page.next_job(result) if isinstance(result, Step) else None
            if job is None:
                return

    async def take(self, limit: int) -> list[_Page]:
        """The pages read so far, in order (waiting for one): the first, and those after it while
        their changes add up to at most `limit`; a failed page is the last one taken. Raises what
        made reading stop, if nothing is left to take."""
        while not self._read:
            if self._task.done():
                self._task.result()  # an error; else it stopped at a page already taken
                raise RuntimeError("the sync engine's reader stopped with nothing to take")
            self._changed.clear()
            await self._changed.wait()
        taken = [self._read.pop(0)]
        total = _size(taken[0])
        while self._read and isinstance(taken[-1].read.result(), Step) and total + _size(self._read[0]) <= limit:
            taken.append(self._read.pop(0))
            total += _size(taken[-1])
        self._changed.set()
        return taken

    def stop(self) -> None:
        """Stops reading; the pages read and not taken are dropped unwritten."""
        self._task.cancel()
        for page in [*self._read, *([self._reading] if self._reading else [])]:
            page.drop()
        self._read.clear()


def _size(page: _Page) -> int:
    result = page.read.result()
    return len(result.changes) if isinstance(result, Step) else 0


def _names_next_page(step: Step) -> bool:
    """Whether `step`'s page is followed by another page of the same listing."""
    return not (step.backfill_completed or step.pass_completed) and bool((step.cursor or {}).get("page"))


def _retrieved(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def _answer_failure(outcome: Outcome, status: int, body: bytes, provider: str, job: Job,
                    had_token: bool) -> SyncFailure:
    """What a listing's non-2xx answer means for the collection: its outcome's health
    (outcomes.SYNC_HEALTH), with a message saying what happens next or what to fix."""
    name = job.collection.name
    credential = job.sync.credential_id
    kind = Kind.PERMANENT if outcome.kind is Kind.SUCCESS else outcome.kind  # a 3xx: not a page
    if kind is Kind.PAUSE:
        wait = outcome.pause or 0.0
        return SyncFailure(SYNC_HEALTH[kind], (
            f"{provider} rate limited the listing of {name} (HTTP {status}); credential {credential}'s budget "
            f"is paused and the sync resumes in {math.ceil(wait)} s"
        ), retry_after=wait)
    if kind is Kind.REFRESH:
        return SyncFailure(SYNC_HEALTH[kind], (
            f"{provider} rejected credential {credential} (HTTP 401): update its secret or reconnect the "
            f"account; the sync resumes by itself"
        ))
    if kind is Kind.PERMANENT and status == 403:
        return SyncFailure(SYNC_HEALTH[kind], (
            f"{provider} refused to list {name} records (HTTP 403): give credential {credential} permission "
            f"to read {name} (its scopes, or the connected user's role); the sync resumes by itself"
        ))
    if SYNC_HEALTH[kind] == "degraded":
        return SyncFailure("degraded", f"{provider} answered HTTP {status} while listing {name}; retrying with backoff",
                           retry_after=outcome.pause)
    if had_token and status in (400, 404, 410):
        return SyncFailure("degraded", (
            f"{provider} no longer accepts the saved page position (HTTP {status}); reading {name} from the "
            f"start of the listing again"
        ), restart_listing=True)
    detail = body[:300].decode("utf-8", "replace").strip()
    return SyncFailure("error", f"{provider} answered HTTP {status} while listing {name}: {detail}")


def _iso(value: datetime.datetime) -> str:
    return value.isoformat()


def _parse(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


def _max(a, b):
    return b if a is None or (b is not None and b > a) else a


def _later(a: str | None, b: datetime.datetime | None) -> str | None:
    """The later of an ISO time and a datetime, as ISO (None if both are None)."""
    best = _max(_parse(a) if a else None, b)
    return _iso(best) if best else None
