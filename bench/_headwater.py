"""Headwater as a separate process, the way an operator runs it, for the benchmarks.

    hw = start_headwater(workdir, "a", database_url, cpu=1, redis_url=None)
    sync_id = hw.stripe_sync(upstream_base_url, {"allowed_requests": 1_000_000, "interval": 1})
    ...  # http://127.0.0.1:{hw.http_port}/v1/proxy/sync/{sync_id}/v1/events, "authorization: Bearer {hw.token}"
    stop(hw.process)

The process is `python -m headwater serve` (or bench._servers' unpaced variant), on ephemeral
ports, with loopback upstreams allowed and the sync engine off; its log (one line per proxied request) goes to a file in
`workdir`, not to the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
from cryptography.fernet import Fernet

from bench._tools import HOST, Report, python, stop

# One key for every process of a run, so that servers sharing a database read each other's secrets.
SECRET_KEY = Fernet.generate_key().decode()


@dataclass
class Headwater:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    token: str | None  # printed by the process that created the database; None for the others
    log_path: str

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def stripe_sync(self, base_url: str, rate_limit: dict, token: str | None = None) -> str:
        """A Stripe sync whose credential points at `base_url`, with this rate limit; its id."""
        token = token or self.token
        with httpx.Client(base_url=self.http_url, headers={"authorization": f"Bearer {token}"}) as rest:
            stream = rest.post("/v1/streams", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
            stream.raise_for_status()
            sync = rest.post("/v1/syncs", json={
                "provider": "stripe", "stream_id": stream.json()["id"], "collection_ids": ["stripe:customer"],
                "rate_limit": rate_limit,
                "credential": {"properties": {"kind": "stripe_api_key", "secret": "sk_test_bench",
                                              "base_url": base_url}},
            })
            sync.raise_for_status()
            return sync.json()["id"]


def start_headwater(
    workdir: str, name: str, database_url: str, *, cpu: int | None, redis_url: str | None = None,
    unpaced: bool = False, fresh: bool = True, env_overrides: dict[str, str] | None = None,
) -> Headwater:
    """Starts Headwater on `database_url`; `fresh`: the database is new, so this process creates
    the first organisation and prints its token (the second server on one database is not fresh)."""
    env = {
        **os.environ,
        "HEADWATER_DATABASE_URL": database_url,
        "HEADWATER_SECRET_KEY": SECRET_KEY,
        "HEADWATER_GRPC_ADDRESS": f"{HOST}:0",
        "HEADWATER_HTTP_ADDRESS": f"{HOST}:0",
        "HEADWATER_ALLOW_PRIVATE_NETWORKS": "true",
        # The syncs made here only hold a rate limit; their reads would share the budget measured.
        "HEADWATER_SYNC_ENGINE": "false",
        **(env_overrides or {}),  # e.g. the sync benchmark turns the engine on
    }
    env.pop("HEADWATER_REDIS_URL", None)
    if redis_url:
        env["HEADWATER_REDIS_URL"] = redis_url
    log_path = os.path.join(workdir, f"headwater-{name}.log")
    module, args = ("bench._servers", ["headwater-unpaced"]) if unpaced else ("headwater", ["serve"])
    with open(log_path, "w") as log:
        process = python(module, *args, cpu=cpu, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()
        ports = re.search(r"gRPC on \S+:(\d+) and REST on http://\S+:(\d+)", line)
        if not ports:
            with open(log_path) as log:
                tail = log.read()[-2000:]
            raise SystemExit(f"headwater {name} did not start: {line!r}; its log ({log_path}) ends:\n{tail}")
        token = None
        if fresh:  # "New database: created organisation 'default' with this API token ...", then it
            process.stdout.readline()
            token = process.stdout.readline().strip()
    except BaseException:
        stop(process)
        raise
    return Headwater(process, int(ports.group(2)), int(ports.group(1)), token, log_path)



async def on_each_database(workdir: str, report: Report, measure: Callable[[str, str], Awaitable[list]]) -> list:
    """`await measure(label, database_url)` on a SQLite file, then on a PostgreSQL database made for
    the run and dropped after it (admin URL in BENCH_DATABASE_URL or TEST_DATABASE_URL, else the
    local PostgreSQL of the development machines; when it cannot be reached the report says
    PostgreSQL was not measured). Returns both results' rows, concatenated."""
    rows = list(await measure("SQLite", f"sqlite:///{workdir}/headwater.db"))
    admin_url = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
                 or "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = await asyncpg.connect(admin_url, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        report.text(f"PostgreSQL not measured: cannot reach {admin_url} ({exc}); set BENCH_DATABASE_URL.")
        return rows
    name = f"headwater_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        rows += await measure("PostgreSQL", urlunparse(urlparse(admin_url)._replace(path=f"/{name}")))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return rows


async def emulated_stripe_sync(rest: httpx.AsyncClient, stripe, **stream_fields) -> tuple[str, str]:
    """A new stream (with `stream_fields`) and a Stripe customers sync on it reading the tests'
    Stripe emulator `stripe` with no rate limit to speak of: (stream id, sync id)."""
    stream = await rest.post("/v1/streams", json={"name": f"bench-{uuid.uuid4().hex[:8]}", **stream_fields})
    stream.raise_for_status()
    sync = await rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream.json()["id"], "collection_ids": ["stripe:customer"],
        "rate_limit": {"allowed_requests": 1_000_000, "interval": 1},
        "credential": {"properties": {"kind": "stripe_api_key", "secret": stripe.token, "base_url": stripe.base_url}},
    })
    sync.raise_for_status()
    return stream.json()["id"], sync.json()["id"]
