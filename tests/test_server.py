"""The process as users run it: start-up, reflection, health, the CLI, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from headwater.auth import Auth
from headwater.server import CannotListen, Server
from conftest import settings_for

ROOT = Path(__file__).resolve().parent.parent


async def test_reflection_lists_every_service(server):
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break

    assert {
        "headwater.v1.SyncService", "headwater.v1.CredentialService", "headwater.v1.StreamService",
        "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_health_reports_serving(server):
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        syncs = await stub.Check(health_pb2.HealthCheckRequest(service="headwater.v1.SyncService"))

    assert overall.status == syncs.status == health_pb2.HealthCheckResponse.SERVING


async def test_server_restarts_on_an_existing_database_and_keeps_data(database_url):
    settings = settings_for(database_url)
    first = await Server.start(settings)
    token = await Auth(first.store).bootstrap()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.http_port}",
                                 headers={"authorization": f"Bearer {token}"}) as rest:
        stream = (await rest.post("/v1/streams", json={"name": "kept"})).json()
    await first.stop()

    second = await Server.start(settings)
    try:
        assert await Auth(second.store).bootstrap() is None  # not a fresh database: no new token
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second.http_port}",
                                     headers={"authorization": f"Bearer {token}"}) as rest:
            assert (await rest.get(f"/v1/streams/{stream['id']}")).json() == stream
    finally:
        await second.stop()


async def _run_cli(env, *args) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headwater", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_serve_on_a_fresh_sqlite_file_prints_where_it_listens_and_a_first_token(tmp_path):
    env = os.environ | {
        "HEADWATER_DATA_DIR": str(tmp_path / "data"),
        "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
        "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0",
    }
    env.pop("HEADWATER_DATABASE_URL", None)
    env.pop("HEADWATER_SECRET_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headwater", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        await proc.stdout.readline()
        token = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        http_port = re.search(r"REST on http://127\.0\.0\.1:(\d+)", banner).group(1)
        assert re.search(r"gRPC on 127\.0\.0\.1:\d+", banner)
        assert token.startswith("hw_")

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as rest:
            ok = await rest.get("/v1/syncs", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.json() == {"data": [], "next_page_token": ""}
        assert (tmp_path / "data" / "headwater.db").exists()
        assert (tmp_path / "data" / "headwater.db.key").stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


@pytest.mark.parametrize("front, variable", [("gRPC", "HEADWATER_GRPC_ADDRESS"), ("REST", "HEADWATER_HTTP_ADDRESS")])
async def test_serve_on_a_busy_port_exits_with_one_line_naming_the_address(tmp_path, front, variable):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = os.environ | {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
                            "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0", variable: address}
        env.pop("HEADWATER_DATABASE_URL", None)
        env.pop("HEADWATER_SECRET_KEY", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "headwater", "serve", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)

    assert proc.returncode == 1
    assert err.decode().splitlines() == [f"headwater: cannot listen for {front} on {address}: address already in use"]
    assert out == b""


async def test_a_second_server_on_a_taken_grpc_address_does_not_start_rather_than_share_it(database_url):
    first = await Server.start(settings_for(database_url))
    try:
        taken = f"127.0.0.1:{first.grpc_port}"
        with pytest.raises(CannotListen) as refused:
            second = await Server.start(settings_for(database_url, grpc_address=taken))
            await second.stop()
    finally:
        await first.stop()

    assert str(refused.value) == f"cannot listen for gRPC on {taken}: address already in use"


async def test_cli_creates_organisations_and_tokens(tmp_path):
    env = os.environ | {"HEADWATER_DATA_DIR": str(tmp_path)}
    env.pop("HEADWATER_DATABASE_URL", None)
    env.pop("HEADWATER_SECRET_KEY", None)

    created = await _run_cli(env, "orgs", "create", "initech")
    token = (await _run_cli(env, "tokens", "create", "--org", "initech")).strip()

    assert "initech" in created
    assert token.startswith("hw_")


def _tool(path: Path, name: str) -> str:
    if not path.exists():
        pytest.skip(f"{name} is not installed at {path} (`make install` brings grpcurl, `make lint` brings buf)")
    return str(path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_grpcurl_and_buf_curl_list_the_services(server):
    grpcurl = _tool(Path(sys.executable).parent / "grpcurl", "grpcurl")
    buf = _tool(ROOT / "build" / "tools" / "node_modules" / ".bin" / "buf", "buf")

    listed = await _output(grpcurl, "-plaintext", server.grpc_target, "list")
    methods = await _output(buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods",
                            f"http://{server.grpc_target}")

    assert {"headwater.v1.SyncService", "headwater.v1.CredentialService", "headwater.v1.StreamService"} <= set(
        listed.split()
    )
    assert "headwater.v1.SyncService/CreateSync" in methods.split()


async def _output(*command: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()
