"""Opening the database, migrating it, and running units of work on the event loop.

    store = Store.open("sqlite:///data/headwater.db")
    await store.migrate()
    sync = await store.run(lambda: Sync.get_by_id(sync_id))   # one transaction, loop never blocked

`Store.run` executes ordinary synchronous Peewee code inside a transaction through
playhouse.pwasyncio's greenlet bridge: each query suspends the greenlet while aiosqlite or asyncpg
does the I/O, so the event loop keeps serving other requests.

The models are bound process-wide (a Peewee DatabaseProxy), so a process has one Store per
database: opening a URL that is already open shares that Store (and its connection pool), and it
closes when the last opener closes it. Two servers started in one process (as tests do to play
two replicas) therefore share the database exactly as two processes would, each on its own
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import asyncpg
import peewee
from playhouse.migrations import Runner
from playhouse.pwasyncio import (
    AsyncPostgresqlConnection,
    AsyncPostgresqlDatabase,
    AsyncSqliteConnection,
    AsyncSqliteDatabase,
    AsyncSqlitePool,
    CursorAdapter,
)

from headwater import tracing
from headwater.store.models import database

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers never wait for the writer
    "synchronous": "normal",  # durable across process crashes; WAL makes this safe
    "foreign_keys": 1,
    "busy_timeout": 10000,  # writers queue instead of failing with "database is locked"
}


def open_database(url: str):
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or `postgresql://...`."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # BEGIN IMMEDIATE: a transaction takes the write lock when it starts, waiting its turn
        # (busy_timeout). A deferred one that reads first fails with "database is locked" when it
        # tries to write after another connection's write (the sync engine writes all the time).
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10, lock_type="IMMEDIATE")
    if scheme in ("postgresql", "postgres"):
        return PostgresqlDatabase(url, reset=_keep_session)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


class _PooledConnections:
    """How both databases below take a connection from their pool once it exists: straight from
    the pool, under `asyncio.timeout`. pwasyncio first waits for the pool under `asyncio.wait_for`,
    and the SQLite pool's acquire waits under another: on Python 3.11 each wraps the wait in a task
    of its own, two tasks and two more turns of the event loop for every unit of work."""

    async def _acquire_conn_async(self):
        pool = self._pool
        if pool is None:  # the first unit creates the pool, under pwasyncio's guard
            return await super()._acquire_conn_async()
        try:
            with peewee.__exception_wrapper__:
                conn = await self._pool_acquire(pool)
        except TimeoutError:
            raise peewee.OperationalError(
                f"Timed out acquiring connection from pool (acquire_timeout={self._acquire_timeout})."
            ) from None
        conn._pool = pool  # as pwasyncio tags it: a release after the pool was replaced closes it
        return conn


class SqliteDatabase(_PooledConnections, AsyncSqliteDatabase):
    """playhouse.pwasyncio's aiosqlite database, with each statement one trip to the connection's
    thread rather than three (see `_OneTripSqliteConnection`)."""

    async def _create_pool_async(self):
        pool = _OneTripSqlitePool(self.database, pool_size=1 if self.database == ":memory:" else self._pool_size,
                                  on_connect=self._add_conn_hooks, timeout=self._timeout, **self.connect_params)
        return await pool.initialize()


class _OneTripSqlitePool(AsyncSqlitePool):
    async def acquire(self, timeout=None):
        if self._closed:
            raise peewee.InterfaceError("Pool is closed.")
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    async def _create_connection(self):
        return _OneTripSqliteConnection((await super()._create_connection()).conn)


class _OneTripSqliteConnection(AsyncSqliteConnection):
    """A statement as one call on aiosqlite's thread: execute, fetch every row, close the cursor.

    pwasyncio awaits aiosqlite's execute, fetchall and close one after the other, each a trip to
    the thread and back (a queue put, the thread's wake-up, `call_soon_threadsafe` waking the loop
    through its self-pipe): on a busy machine those hand-overs, not SQLite, were most of a
    statement's time, and a consumer's next + ack, BEGIN and COMMIT included, made a dozen."""

    async def _execute(self, sql, params=None):
        connection = self.conn  # aiosqlite's; `_conn` is its sqlite3 connection, used on its thread only

        def statement():
            cursor = connection._conn.execute(sql, params or ())
            try:
                return cursor.fetchall(), cursor.lastrowid, cursor.rowcount, cursor.description
            finally:
                cursor.close()

        rows, lastrowid, rowcount, description = await connection._execute(statement)
        return CursorAdapter(rows, lastrowid=lastrowid, rowcount=rowcount, description=description)


class PostgresqlDatabase(_PooledConnections, AsyncPostgresqlDatabase):
    """playhouse.pwasyncio's asyncpg database, without three costs per unit of work that it pays
    for nothing here (each a round trip to the server or a task, ~10 of them for a consumer's
    next + ack before):

    - a query runs as asyncpg's cached prepared statement, one round trip, where pwasyncio prepares
      every query anew (a Parse/Describe round trip before the Bind/Execute one, and a named
      statement to close later);
    - a connection given back to the pool is not reset (`reset=_keep_session`): asyncpg's default
      sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on each release, and no
      unit leaves session state behind (advisory locks are transaction-scoped, `pg_advisory_xact_lock`,
      LISTEN has its own connection, nothing SETs a session variable);
    - a connection is taken from the pool under `asyncio.timeout`, not `asyncio.wait_for` (a task
      per acquire on Python 3.11).
    """

    async def _pool_acquire(self, pool):
        async with asyncio.timeout(self._acquire_timeout):
            return _CachedStatements(await pool.acquire())


async def _keep_session(connection) -> None:
    """The pool's reset on release: nothing to reset (see PostgresqlDatabase)."""


class _CachedStatements(AsyncPostgresqlConnection):
    async def _execute(self, sql, params=None):
        if params:
            sql = self._translate_placeholders(sql)
        # The connection's statement cache (what asyncpg's own fetch and execute use); asyncpg's
        # public prepare() bypasses it, and fetch() does not tell the rows an UPDATE changed.
        statement = await self.conn._prepare(sql, use_cache=True)
        try:
            records = await statement.fetch(*(params or ()))
        except asyncpg.InvalidCachedStatementError:
            # A table changed under the cached statement (a migration, another process's); outside
            # a transaction, prepare it again once, as asyncpg's own fetch does.
            if self.conn.is_in_transaction():
                raise
            await self.conn.reload_schema_state()
            statement = await self.conn._prepare(sql, use_cache=True)
            records = await statement.fetch(*(params or ()))
        description = [(key,) for key in records[0].keys()] if records else []
        status = (statement.get_statusmsg() or "").rsplit(" ", 1)
        rowcount = int(status[1]) if len(status) == 2 and status[1].isdigit() else len(records)
        return CursorAdapter(records, rowcount=rowcount, description=description)


class Store:
    _open: dict[str, Store] = {}  # url -> the process's Store for it (see the module docstring)

    def __init__(self, db, url: str | None = None):
        self.db = db
        self.url = url
        self.system = "postgresql" if isinstance(db, AsyncPostgresqlDatabase) else "sqlite"  # OTel's db.system
        self._openers = 1
        # SQLite has one writer at a time: this process's transactions take turns here, in order,
        # rather than in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        self._turn = asyncio.Lock() if isinstance(db, AsyncSqliteDatabase) else None
        self._units: set[asyncio.Task] = set()  # units of work running (see `run`)
        database.initialize(db)

    @classmethod
    def open(cls, url: str) -> Store:
        store = cls._open.get(url)
        if store is not None:
            store._openers += 1
            return store
        if cls._open:
            raise RuntimeError(f"this process already has a database open; cannot also open {url!r}")
        store = cls._open[url] = cls(open_database(url), url)
        return store

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.db, AsyncPostgresqlDatabase)

    async def migrate(self) -> list[str]:
        """Applies the migrations not yet applied; returns their names."""

        def up():
            runner = Runner(self.db, directory=str(MIGRATIONS_DIR))
            before = set(runner.applied())
            runner.up()
            return sorted(set(runner.applied()) - before)

        return await self.db.run(up)

    async def run(self, fn: Callable[..., T], *args, transaction: bool = True, **kwargs) -> T:
        """Runs synchronous Peewee code in one transaction and releases the connection.

        `transaction=False`: each statement commits on its own, for a unit whose statements each
        stand alone (reads, or a single write such as a consumer's claim or ack): BEGIN and COMMIT
        are two round trips to PostgreSQL, two trips to aiosqlite's thread on SQLite.

        On SQLite every transaction begins IMMEDIATE (see open_database) and this process's units
        take turns here, so a unit that reads and then writes never fails with "database is locked".

        A unit runs in a task of its own, to its end (commit or rollback): a caller cancelled
        meanwhile is cancelled at once, and its unit is not cut half-way. Cut, a unit left SQLite
        connections inside their transactions, and Python 3.11's asyncio.wait_for, which the
        connection pools use, could swallow the cancellation (CPython gh-86296), so that a loop
        catching errors (webhook delivery) never stopped and Server.stop waited for it for ever.
        """
        unit = asyncio.create_task(self._unit(fn, args, kwargs, transaction))
        self._units.add(unit)
        unit.add_done_callback(_forget_unit(self._units))
        return await asyncio.shield(unit)

    async def _unit(self, fn: Callable[..., T], args, kwargs, transaction: bool) -> T:
        def in_transaction():
            with self.db.atomic():
                return fn(*args, **kwargs)

        # A span inside a traced call (headwater.tracing), the wait for SQLite's turn included.
        with tracing.store_unit(self.system, fn):
            async with self._turn or contextlib.nullcontext():
                try:
                    if transaction:
                        return await self.db.run(in_transaction)
                    return await self.db.run(fn, *args, **kwargs)
                finally:
                    await self.db.aclose()

    async def close(self) -> None:
        """Closes the store once its last opener closes it, after the units of work still running
        (those of callers that were cancelled) have ended."""
        self._openers -= 1
        if self._openers > 0:
            return
        if self._open.get(self.url) is self:
            del self._open[self.url]
        if self._units:
            await asyncio.wait(list(self._units))
        await self.db.close_pool()


def _forget_unit(units: set[asyncio.Task]):
    """A unit's done callback: it leaves the running set; an error no caller awaited any more
    (it was cancelled) is taken, so asyncio does not report it as never retrieved."""

    def done(unit: asyncio.Task) -> None:
        units.discard(unit)
        if not unit.cancelled():
            unit.exception()

    return done
