"""Shared fixtures: a real Headwater server on ephemeral ports, on SQLite and on PostgreSQL.

`server` starts the whole process (gRPC and REST on one loop) against a fresh database; tests talk
to it over the network exactly as users do: httpx for REST, grpc.aio stubs for gRPC.

PostgreSQL tests run against TEST_DATABASE_URL (each server gets a database of its own, created and
dropped here, so runs never collide), the shared pacer's tests against TEST_REDIS_URL; without them
they skip, and the summary of every run says why (`-rs` in pyproject.toml), naming the variable.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import asyncpg
import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from headwater.auth import Auth
from headwater.server import Server
from headwater.settings import Settings
from headwater.v1 import (
    consumer_pb2_grpc,
    credential_pb2_grpc,
    mutation_pb2_grpc,
    oauth_app_pb2_grpc,
    proxy_pb2_grpc,
    stream_pb2_grpc,
    sync_pb2_grpc,
)

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
TEARDOWN_SECONDS = 60  # the longest one teardown step may take (Server.stop bounds its own steps)


async def finish(what: str, step, seconds: float = TEARDOWN_SECONDS):
    """Awaits one teardown step for at most `seconds`: a step that hangs fails the test with its
    name rather than holding the whole run until pytest-timeout kills it.

        await finish("closing the REST client", client.rest.aclose())
    """
    try:
        async with asyncio.timeout(seconds) as limit:
            return await step
    except TimeoutError:
        if not limit.expired():
            raise
        raise TimeoutError(f"teardown: {what} did not finish within {seconds} s") from None


async def redis_unavailable_reason() -> str | None:
    """Why the Redis tests cannot run (to skip with), or None when TEST_REDIS_URL answers."""
    if not TEST_REDIS_URL:
        return "TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)"
    client = aioredis.Redis.from_url(TEST_REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return f"Redis at TEST_REDIS_URL is not reachable: {exc}"
    finally:
        await client.aclose()
    return None


async def _postgres_reachable() -> str | None:
    if not TEST_DATABASE_URL:
        return "TEST_DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)"
    try:
        conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=3)
        await conn.close(timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc}"
    return None


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'headwater.db'}"
        return
    reason = await _postgres_reachable()
    if reason:
        pytest.skip(reason)
    name = f"headwater_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(TEST_DATABASE_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"', timeout=30)
        yield urlunparse(urlparse(TEST_DATABASE_URL)._replace(path=f"/{name}"))
    finally:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
        finally:
            await admin.close(timeout=10)


@dataclass
class Client:
    """One organisation's view of the server, over both fronts."""

    token: str
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel

    @property
    def metadata(self):
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def syncs(self):
        return sync_pb2_grpc.SyncServiceStub(self.channel)

    @property
    def credentials(self):
        return credential_pb2_grpc.CredentialServiceStub(self.channel)

    @property
    def streams(self):
        return stream_pb2_grpc.StreamServiceStub(self.channel)

    @property
    def proxy(self):
        return proxy_pb2_grpc.ProxyServiceStub(self.channel)

    @property
    def mutations(self):
        return mutation_pb2_grpc.MutationServiceStub(self.channel)

    @property
    def consumers(self):
        return consumer_pb2_grpc.ConsumerServiceStub(self.channel)

    @property
    def oauth_apps(self):
        return oauth_app_pb2_grpc.OAuthAppServiceStub(self.channel)


@dataclass
class Running:
    server: Server
    settings: Settings

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"


def settings_for(database_url: str, **overrides) -> Settings:
    """Test settings: ephemeral ports, a fresh key, loopback upstreams allowed (the emulators), and
    no sync engine unless asked for (`sync_engine=True`), so other tests' syncs stay still."""
    return Settings(
        **{
            "database_url": database_url,
            "secret_key": Fernet.generate_key(),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "allow_private_networks": True,
            "sync_engine": False,  # tests of the engine turn it on (tests/test_sync_*.py)
            **overrides,
        }
    )


@pytest.fixture
async def server(database_url):
    settings = settings_for(database_url)
    server = await Server.start(settings)
    try:
        yield Running(server, settings)
    finally:
        await finish("stopping the server", server.stop(grace=1))


async def _client_for(running: Running, org_name: str):
    auth = Auth(running.server.store)
    await auth.create_org(org_name)
    token = await auth.issue_token(org_name)
    rest = httpx.AsyncClient(base_url=running.http_url, headers={"authorization": f"Bearer {token}"})
    channel = grpc.aio.insecure_channel(running.grpc_target)
    return Client(token, rest, channel)


@pytest.fixture
async def client(server):
    """A client of organisation 'acme'."""
    c = await _client_for(server, "acme")
    yield c
    await _close_client(c)


@pytest.fixture
async def other_client(server):
    """A client of another organisation, 'globex'."""
    c = await _client_for(server, "globex")
    yield c
    await _close_client(c)


async def _close_client(c: Client) -> None:
    await finish("closing the REST client", c.rest.aclose())
    await finish("closing the gRPC channel", c.channel.close())


@pytest.fixture
async def upstream():
    """A recording upstream API on loopback (see tests/emulators.py)."""
    from emulators import start_upstream

    emulator, server, task = await start_upstream()
    yield emulator
    server.should_exit = True
    await finish("stopping the upstream emulator", task)


@pytest.fixture
async def fake_provider():
    """Start stateful provider emulators (tests/fakes/), closed after the test:

        stripe = await fake_provider("stripe")   # or "salesforce", "hubspot", "github"
    """
    from fakes import start_fake_provider

    started = []

    async def start(name: str):
        fake = await start_fake_provider(name)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await finish(f"stopping the {type(fake).__name__} emulator", fake.close())


@pytest.fixture
async def oauth_server():
    """An OAuth2 authorization server and the API it guards, on loopback (tests/oauth_server.py)."""
    from oauth_server import start_oauth_server

    server = await start_oauth_server()
    yield server
    await finish("stopping the OAuth2 authorization server", server.close())
