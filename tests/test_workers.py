"""`headwater serve --workers 2`: two server processes behind one REST and one gRPC address.

Real processes on PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL; skipped without them).
Which worker holds a connection is read from the kernel's socket tables (psutil), as an operator
would with `ss -p`: REST connections are accepted by the workers themselves, gRPC ones reach
them through the parent, on each worker's Unix socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import uuid

import grpc
import httpx
import psutil
import pytest
from cryptography.fernet import Fernet

from conftest import TEST_REDIS_URL, redis_unavailable_reason
from headwater_process import Headwater
from headwater.v1 import proxy_pb2, proxy_pb2_grpc, stream_pb2, stream_pb2_grpc
from headwater.workers import restart_delay

postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
async def redis_url():
    if reason := await redis_unavailable_reason():
        pytest.skip(reason)
    return TEST_REDIS_URL


@pytest.fixture
async def workers(database_url, redis_url):
    """`headwater serve` with HEADWATER_WORKERS=2 on a fresh database."""
    process = await Headwater.serve(database_url, Fernet.generate_key(), HEADWATER_WORKERS="2",
                                    HEADWATER_REDIS_URL=redis_url, HEADWATER_ALLOW_PRIVATE_NETWORKS="true")
    try:
        yield process
    finally:
        if process.running:
            process.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.process.wait(), 30)
            except TimeoutError:
                await process.kill()


async def first_token(process: Headwater) -> str:
    return (await process.printed(r"^  (hw_\S+)$")).group(1)


def worker_pids(process: Headwater) -> list[int]:
    return sorted(child.pid for child in psutil.Process(process.process.pid).children())


def rest_connections(pid: int, port: int) -> int:
    """The REST connections the process has accepted on `port`."""
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def grpc_connections(pid: int) -> int:
    """The gRPC connections forwarded to the process: its Unix socket's, but for the listening one."""
    return sum(1 for c in psutil.Process(pid).net_connections("unix") if c.laddr.endswith(".sock")) - 1


def grpc_channel(process: Headwater) -> grpc.aio.Channel:
    # A channel of its own connection (grpcio otherwise shares one between channels to one target).
    return grpc.aio.insecure_channel(process.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])


async def stripe_sync(rest: httpx.AsyncClient, base_url: str) -> str:
    stream = await rest.post("/v1/streams", json={"name": f"stream-{uuid.uuid4().hex[:8]}"})
    sync = await rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream.json()["id"], "collection_ids": ["stripe:customer"],
        "credential": {"properties": {"kind": "stripe_api_key", "secret": "sk_test_1", "base_url": base_url}},
    })
    assert sync.status_code == 200, sync.text
    return sync.json()["id"]


async def serve_once(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headwater", "serve", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


@postgres
async def test_two_workers_answer_rest_and_grpc_on_the_same_ports_and_the_parent_prints_the_start_up_lines_once(
    workers, upstream, tmp_path
):
    token = await first_token(workers)
    pids = worker_pids(workers)
    auth = {"authorization": f"Bearer {token}"}
    port = int(workers.url.rsplit(":", 1)[1])

    # REST: new connections until both workers have accepted some (the kernel picks the one).
    clients = []
    try:
        for _ in range(60):
            clients.append(client := httpx.AsyncClient(base_url=workers.url, headers=auth))
            assert (await client.get("/v1/streams")).status_code == 200
            if all(rest_connections(pid, port) for pid in pids):
                break
        accepted = {pid: rest_connections(pid, port) for pid in pids}
        sync_id = await stripe_sync(clients[0], upstream.base_url)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))

    # gRPC: two connections, one to each worker (round robin), bytes and all through the parent.
    body = os.urandom(2 * 2**20)  # past the parent's window in both directions
    channels = [grpc_channel(workers), grpc_channel(workers)]
    try:
        listed = [await stream_pb2_grpc.StreamServiceStub(channel).ListStreams(
            stream_pb2.ListStreamsRequest(), metadata=tuple(auth.items())) for channel in channels]
        forwarded = await proxy_pb2_grpc.ProxyServiceStub(channels[1]).Forward(
            proxy_pb2.ForwardRequest(sync_id=sync_id, method="PUT", path="echo/big", body=body),
            metadata=tuple(auth.items()))
        forwarded_to = {pid: grpc_connections(pid) for pid in pids}
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))

    # A second server on either address is refused, as with one process (no SO_REUSEPORT).
    env = os.environ | {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
                        "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0"}
    for variable in ("HEADWATER_DATABASE_URL", "HEADWATER_SECRET_KEY", "HEADWATER_REDIS_URL", "HEADWATER_WORKERS"):
        env.pop(variable, None)
    second_rest = await serve_once(env | {"HEADWATER_HTTP_ADDRESS": workers.url.removeprefix("http://")})
    second_grpc = await serve_once(env | {"HEADWATER_GRPC_ADDRESS": workers.grpc_target})

    assert len(pids) == 2
    assert all(accepted.values()), accepted
    assert [len(answer.data) for answer in listed] == [1, 1]
    assert forwarded.status == 200
    assert base64.b64decode(json.loads(forwarded.body)["body"]) == body
    assert forwarded_to == dict.fromkeys(pids, 1)
    assert workers.output.count("Headwater serving") == 1
    assert workers.output.count("New database: created organisation") == 1
    assert "; 2 workers" in workers.output
    assert second_rest[0] == 1
    assert second_rest[2].splitlines() == [
        f"headwater: cannot listen for REST on {workers.url.removeprefix('http://')}: address already in use"]
    assert second_grpc[0] == 1
    assert second_grpc[2].splitlines() == [
        f"headwater: cannot listen for gRPC on {workers.grpc_target}: address already in use"]


@postgres
async def test_a_worker_killed_with_sigkill_is_started_again_and_the_workers_stop_when_the_parent_is_killed(workers):
    token = await first_token(workers)
    auth = {"authorization": f"Bearer {token}"}
    killed, survivor = worker_pids(workers)

    os.kill(killed, signal.SIGKILL)
    answered = []
    # A new connection for each request: any worker may take it, the survivor while the other restarts.
    async with httpx.AsyncClient(base_url=workers.url, headers=auth, limits=httpx.Limits(max_keepalive_connections=0)) as rest:
        restarted = asyncio.create_task(workers.printed(r"worker \d serves again \(pid (\d+)\)"))
        while not restarted.done():
            answered.append((await rest.get("/v1/streams")).status_code)
            await asyncio.sleep(0.05)
        new_pid = int(restarted.result().group(1))
        after = [(await rest.get("/v1/streams")).status_code for _ in range(10)]
    channel = grpc_channel(workers)
    try:
        grpc_answers = [len((await stream_pb2_grpc.StreamServiceStub(channel).ListStreams(
            stream_pb2.ListStreamsRequest(), metadata=tuple(auth.items()))).data) for _ in range(2)]
    finally:
        await channel.close()
    workers_now = worker_pids(workers)
    [socket_path] = {c.laddr for c in psutil.Process(survivor).net_connections("unix") if c.laddr.endswith(".sock")}
    await workers.kill()  # the parent, this time
    orphans = [psutil.Process(pid) for pid in workers_now]
    _, still_running = await asyncio.to_thread(psutil.wait_procs, orphans, timeout=20)

    assert f"(pid {killed}) was killed by SIGKILL; starting it again in 0.5 s" in workers.output
    assert workers_now == sorted([survivor, new_pid])
    assert new_pid != killed
    assert answered and set(answered) == {200}
    assert set(after) == {200}
    assert grpc_answers == [0, 0]
    assert still_running == []  # each saw its parent gone (its stdin ended) and stopped
    assert not os.path.exists(os.path.dirname(socket_path))  # the last one removed the sockets' directory


@postgres
async def test_sigterm_stops_every_worker_gracefully_and_calls_in_flight_complete(workers, upstream):
    token = await first_token(workers)
    auth = {"authorization": f"Bearer {token}"}
    pids = worker_pids(workers)
    channel = grpc_channel(workers)
    async with httpx.AsyncClient(base_url=workers.url, headers=auth, timeout=30) as rest:
        sync_id = await stripe_sync(rest, upstream.base_url)
        slow_rest = asyncio.create_task(rest.get(f"/v1/proxy/sync/{sync_id}/slow", params={"seconds": "1.5"}))
        slow_grpc = asyncio.ensure_future(proxy_pb2_grpc.ProxyServiceStub(channel).Forward(
            proxy_pb2.ForwardRequest(sync_id=sync_id, method="GET", path="slow", query="seconds=1.5"),
            metadata=tuple(auth.items())))
        while len([r for r in upstream.requests if r.path == "/slow"]) < 2:
            await asyncio.sleep(0.02)
        workers.process.send_signal(signal.SIGTERM)
        rest_answer, grpc_answer = await asyncio.gather(slow_rest, slow_grpc)
    await channel.close()
    code = await asyncio.wait_for(workers.process.wait(), 30)

    assert rest_answer.status_code == 200 and rest_answer.json() == {"slow": True}
    assert grpc_answer.status == 200 and json.loads(grpc_answer.body) == {"slow": True}
    assert code == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert workers.output.count("Shutting down: finishing calls in flight") == 1


@postgres
async def test_two_workers_without_redis_refuse_to_start_naming_headwater_redis_url(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HEADWATER_REDIS_URL"}
    env |= {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
            "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0", "HEADWATER_DATABASE_URL": database_url,
            "HEADWATER_SECRET_KEY": Fernet.generate_key().decode()}

    code, out, err = await serve_once(env, "--workers", "2")

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "headwater: --workers 2 needs HEADWATER_REDIS_URL (the shared pacer: workers pacing alone would "
        "together exceed every rate limit)"]


async def test_two_workers_on_sqlite_refuse_to_start_naming_postgresql(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HEADWATER_DATABASE_URL"}
    env |= {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
            "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0", "HEADWATER_REDIS_URL": "redis://127.0.0.1:6379/0",
            "HEADWATER_WORKERS": "2"}

    code, out, err = await serve_once(env)

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "headwater: --workers 2 needs PostgreSQL in HEADWATER_DATABASE_URL (SQLite takes one writer at a time "
        "across processes)"]


def test_a_worker_that_keeps_dying_soon_after_its_start_waits_twice_as_long_each_time_up_to_30_s():
    assert [restart_delay(quick_deaths) for quick_deaths in range(9)] == [0.5, 0.5, 1, 2, 4, 8, 16, 30, 30]
