"""`headwater serve --workers N`: N server processes behind the same REST and gRPC addresses.

    workers = await Workers.start(settings)   # settings.workers > 1; needs PostgreSQL and Redis
    print(workers.grpc_port, workers.http_port, workers.first_token)
    await workers.stop()                      # each worker finishes its calls in flight

The parent (`Workers`) binds, the workers inherit, as in gunicorn:

- REST (and metrics): the parent binds the listening sockets and every worker serves them
  (headwater.rest.serve); the kernel gives each accepted connection to one worker. Not
  SO_REUSEPORT, which would let an unrelated server bind the same port and take part of its
  connections.
- gRPC: grpcio cannot serve an inherited socket (grpc/grpc#23760), so each worker serves gRPC on a
  Unix socket of its own, in a directory only this user may enter (0700); the parent listens on
  the gRPC address and forwards each connection's bytes to one worker, round robin (`_Pipe`). A
  gRPC connection (HTTP/2: long-lived, many calls) stays with the worker it was given.
- The parent migrates the database and makes the first organisation and its token, once, before
  any worker starts (a worker's own migration check then finds nothing to apply).
- A worker that exits is started again, with a warning naming it and its exit, RESTART_SECONDS
  later, doubled for each further time it dies within STABLE_SECONDS of its start (up to
  RESTART_MAX_SECONDS).
- `stop` (SIGTERM, SIGINT): no new gRPC connections; each worker gets SIGTERM and stops as a
  single server does (calls in flight get their grace), while the parent still forwards theirs.

Workers are `python -m headwater.workers` processes given the sockets (subprocess, `pass_fds`),
not forks of the parent: when it restarts one, the parent is running an event loop (its epoll
descriptor), a log-flushing thread and forwarded connections, and a fork would copy them all into
the child, with any lock another thread held; a fresh interpreter holds only what it is given.

Several processes need what several replicas need: PostgreSQL (SQLite takes one writer at a time
across processes, which the store's turns cannot order, and its processes do not hear each
other's acks) and the shared pacer in Redis (workers pacing alone would together exceed every
budget). `start` refuses to run without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass

from headwater import logs, tracing
from headwater.auth import Auth
from headwater.settings import Settings
from headwater.server import Server, bound_socket, settle_garbage_collector
from headwater.store import Store

log = logging.getLogger("headwater.workers")

BACKLOG = 1024  # connections the kernel queues on a listening socket before workers accept them
WINDOW = 256 * 1024  # bytes a forwarded gRPC connection holds in each direction before it stops reading
START_SECONDS = 60.0  # the longest a worker may take to serve
STOP_SECONDS = 60.0  # the longest a worker may take to stop (its own steps are bounded well within)
RESTART_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a worker that ran this long before it died is restarted without backing off
SERVING = b"serving\n"  # what a worker writes to its stdout once it serves


class CannotRunWorkers(Exception):
    """`--workers N` cannot run with these settings, or a worker would not start: one line says why."""


def refusal(settings: Settings) -> str | None:
    """Why `settings.workers` processes cannot serve these settings, or None."""
    needs = []
    if not settings.database_url.startswith(("postgresql:", "postgres:")):
        needs.append("PostgreSQL in HEADWATER_DATABASE_URL (SQLite takes one writer at a time across processes)")
    if not settings.redis_url:
        needs.append("HEADWATER_REDIS_URL (the shared pacer: workers pacing alone would together exceed every "
                     "rate limit)")
    if not needs:
        return None
    return f"--workers {settings.workers} needs " + " and ".join(needs)


@dataclass(eq=False)
class _Worker:
    index: int  # 1..N, in log lines
    grpc_path: str  # its Unix socket
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # loop time
    serving: bool = False


class Workers:
    """The parent of `settings.workers` server processes (see the module docstring)."""

    def __init__(self, settings: Settings, served: list[socket.socket], grpc_listener: socket.socket, directory: str):
        self.settings = settings
        self._served = served  # REST (and metrics): the workers serve them
        self._grpc_listener = grpc_listener
        self._directory = directory
        self.http_port = served[0].getsockname()[1]
        self.metrics_port = served[-1].getsockname()[1]
        self.grpc_port = grpc_listener.getsockname()[1]
        self.first_token: str | None = None
        self.workers = [_Worker(i, os.path.join(directory, f"worker-{i}.sock")) for i in range(1, settings.workers + 1)]
        self._next = 0  # the worker the next gRPC connection is offered to first
        self._forwarding: asyncio.Server | None = None
        self._keepers: list[asyncio.Task] = []
        self._stopping = False

    @classmethod
    async def start(cls, settings: Settings) -> Workers:
        """Binds the addresses (a taken one raises CannotListen before the database is touched),
        migrates the database, starts the workers and forwards gRPC to them once all serve.
        CannotRunWorkers without PostgreSQL and Redis, or if a worker exits before it serves."""
        if (reason := refusal(settings)) is not None:
            raise CannotRunWorkers(reason)
        sockets = [bound_socket("REST", settings.http_address)]
        directory = None
        try:
            if settings.metrics_address is not None:
                sockets.append(bound_socket("metrics", settings.metrics_address))
            sockets.append(bound_socket("gRPC", settings.grpc_address))
            for sock in sockets:
                sock.listen(BACKLOG)
            directory = tempfile.mkdtemp(prefix="headwater-")  # mode 0700: only this user reaches the workers
            workers = cls(settings, sockets[:-1], sockets[-1], directory)
            workers.first_token = await _prepare_database(settings)
            await workers._start_all()
        except BaseException:
            for sock in sockets:
                sock.close()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        return workers

    async def _start_all(self) -> None:
        started = await asyncio.gather(*(self._spawn(worker) for worker in self.workers))
        failed = [worker for worker, ok in zip(self.workers, started) if not ok]
        if failed:
            await self._stop_workers()
            worker = failed[0]
            raise CannotRunWorkers(f"worker {worker.index} {_exit(worker.process.returncode)} before it served "
                                   "(its log is above)")
        loop = asyncio.get_running_loop()
        self._forwarding = await loop.create_server(lambda: _Pipe(on_open=self._forward), sock=self._grpc_listener,
                                                    backlog=BACKLOG)
        self._keepers = [asyncio.create_task(self._keep(worker), name=f"headwater-worker-{worker.index}")
                         for worker in self.workers]

    async def _spawn(self, worker: _Worker) -> bool:
        """Starts `worker`'s process and waits until it serves; False if it exits (or hangs) first."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(worker.grpc_path)  # left by a worker killed before it could remove it
        fds = [sock.fileno() for sock in self._served]
        worker.serving = False
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "headwater.workers", str(worker.index), f"unix:{worker.grpc_path}", *map(str, fds),
            stdin=asyncio.subprocess.PIPE,  # its end of the pipe closes when the parent dies: the worker stops
            stdout=asyncio.subprocess.PIPE, pass_fds=fds,
        )
        worker.started_at = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(START_SECONDS):
                worker.serving = await worker.process.stdout.readline() == SERVING
        except TimeoutError:
            log.warning("worker %d (pid %d) did not serve within %g s; killing it", worker.index,
                        worker.process.pid, START_SECONDS)
            worker.process.kill()
        if not worker.serving:
            await worker.process.wait()
        return worker.serving

    async def _keep(self, worker: _Worker) -> None:
        """Starts `worker` again whenever it exits, until `stop`."""
        loop = asyncio.get_running_loop()
        quick_deaths = 0
        while True:
            code = await worker.process.wait()
            worker.serving = False
            if self._stopping:
                return
            quick_deaths = quick_deaths + 1 if loop.time() - worker.started_at < STABLE_SECONDS else 0
            wait = restart_delay(quick_deaths)
            log.warning("worker %d (pid %d) %s; starting it again in %g s", worker.index, worker.process.pid,
                        _exit(code), wait)
            await asyncio.sleep(wait)
            if await self._spawn(worker):
                log.info("worker %d serves again (pid %d)", worker.index, worker.process.pid)

    # gRPC: each connection accepted on the gRPC address is piped to one worker's Unix socket.

    def _forward(self, client: _Pipe) -> None:
        client.transport.pause_reading()  # until the worker's side is connected
        # Held by the connection: the loop keeps only a weak reference to a task.
        client.connecting = asyncio.get_running_loop().create_task(self._connect(client))

    async def _connect(self, client: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        count = len(self.workers)
        for attempt in range(count):
            worker = self.workers[(self._next + attempt) % count]
            if not worker.serving:
                continue
            try:
                await loop.create_unix_connection(lambda: _Pipe(peer=client), worker.grpc_path)
            except OSError:  # it is exiting: the next one
                continue
            self._next = worker.index % count  # (indexes count from 1) the one after it, next time
            if client.closed:
                client.peer.transport.close()
            else:
                client.transport.resume_reading()
            return
        log.warning("gRPC connection refused: no worker serves (all are starting again)")
        client.transport.abort()

    async def stop(self) -> None:
        """Stops taking gRPC connections and stops every worker (each finishes its calls in flight,
        as a single server does), then closes the listening sockets."""
        self._stopping = True
        if self._forwarding is not None:
            self._forwarding.close()  # the connections open go on until their worker has stopped
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        await self._stop_workers()
        for sock in [*self._served, self._grpc_listener]:
            sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(_stop_process(worker) for worker in self.workers if worker.process is not None))


async def _stop_process(worker: _Worker) -> None:
    process = worker.process
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await process.wait()
    except TimeoutError:
        log.warning("stopping: worker %d (pid %d) did not stop within %g s; killing it", worker.index,
                    process.pid, STOP_SECONDS)
        process.kill()
        await process.wait()


def restart_delay(quick_deaths: int) -> float:
    """Seconds before a worker that died is started again, given how many times in a row it has
    died within STABLE_SECONDS of its start (this time included): 0.5 s, then 0.5, 1, 2, 4, ...
    up to RESTART_MAX_SECONDS."""
    return min(RESTART_SECONDS * 2 ** max(quick_deaths - 1, 0), RESTART_MAX_SECONDS)


def _exit(code: int | None) -> str:
    """A process's exit, as a log line says it: "exited with code 1", "was killed by SIGKILL"."""
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


async def _prepare_database(settings: Settings) -> str | None:
    """Migrates the database; on an empty one, makes the first organisation: its token, or None."""
    store = Store.open(settings.database_url)
    try:
        await store.migrate()
        return await Auth(store).bootstrap()
    finally:
        await store.close()


class _Pipe(asyncio.Protocol):
    """One side of a forwarded gRPC connection: the bytes it receives are written to its peer,
    the other side. When the peer's transport holds WINDOW bytes not yet sent, this side stops
    reading until they are (so at most about WINDOW bytes wait in each direction); the end of the
    bytes is passed on (a half-close), and so is a reset (abort).

    `on_open`: called with the side just accepted, which connects its peer (Workers._forward)."""

    def __init__(self, peer: _Pipe | None = None, on_open=None):
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.on_open = on_open
        self.connecting: asyncio.Task | None = None  # a client's side: the task connecting it to a worker
        self.ended = False  # no more bytes will come from this side
        self.closed = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WINDOW)
        if self.peer is not None:  # the worker's side, of a client's
            self.peer.peer = self
        elif self.on_open is not None:
            self.on_open(self)

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.ended = True
        if self.peer.ended:
            self.transport.close()
            self.peer.transport.close()
        else:
            self.peer.transport.write_eof()
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.peer
        if peer is None or peer.closed:  # (a client lost while its worker's side connects: _connect closes that)
            return
        if exc is None:
            peer.transport.close()  # after what it still has to send
        else:
            peer.transport.abort()

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()


# The worker: `python -m headwater.workers INDEX GRPC_ADDRESS REST_FD [METRICS_FD]`, started by Workers.


async def _serve_as_worker(index: int, grpc_address: str, fds: list[int]) -> None:
    settings = dataclasses.replace(Settings.from_env(), grpc_address=grpc_address, workers=1)
    server = await Server.start(settings, [socket.socket(fileno=fd) for fd in fds])
    settle_garbage_collector()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    orphaned = False

    def parent_gone() -> None:  # stdin is a pipe from the parent: it ends when the parent exits
        nonlocal orphaned
        if not os.read(0, 4096):
            loop.remove_reader(0)
            log.warning("worker %d: the parent process is gone; stopping", index)
            orphaned = True
            stopping.set()

    loop.add_reader(0, parent_gone)
    sys.stdout.buffer.write(SERVING)
    sys.stdout.flush()
    log.info("worker %d (pid %d) serving", index, os.getpid())
    await stopping.wait()
    await server.stop()  # gRPC removes its socket
    if orphaned:  # the parent cannot remove the sockets' directory: the last worker out does
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(grpc_address.removeprefix("unix:")))


def main(argv: list[str]) -> int:
    # A terminal's Ctrl-C reaches the whole process group; the parent's SIGTERM stops the workers
    # (and the parent does not take one that stopped on its own for one that died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure()
    index, grpc_address, *fds = argv
    provider = tracing.configure()  # None unless OTEL_TRACES_EXPORTER names an exporter
    try:
        asyncio.run(_serve_as_worker(int(index), grpc_address, [int(fd) for fd in fds]))
    finally:
        if provider is not None:
            provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
