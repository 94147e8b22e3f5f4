"""A client in another language: Node's @grpc/grpc-js, loading our .proto files, creates and reads a sync."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import google.api
import pytest

from test_syncs import make_stream

ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = Path(__file__).parent / "node_client"
INSTALL_DIR = ROOT / "build" / "node_client"  # ignored by git
GOOGLEAPIS = Path(google.api.__path__[0]).parent.parent


def install_node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node gRPC client test needs them")
    if not (INSTALL_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(CLIENT_DIR / "package.json", INSTALL_DIR / "package.json")
        result = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund"],
            cwd=INSTALL_DIR, capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            pytest.skip(f"npm could not install @grpc/grpc-js: {result.stderr[-500:]}")
    shutil.copy(CLIENT_DIR / "client.js", INSTALL_DIR / "client.js")
    return INSTALL_DIR / "client.js"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_node_grpc_client_creates_and_reads_a_sync(server, client):
    script = await asyncio.to_thread(install_node_client)
    stream_id = await make_stream(client)

    proc = await asyncio.create_subprocess_exec(
        "node", str(script), server.grpc_target, client.token, stream_id, str(ROOT / "proto"), str(GOOGLEAPIS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["created"] == answer["read"]
    assert answer["name"] == "From Node"
    assert answer["secret"] == "***********"
    listed = (await client.rest.get("/v1/syncs")).json()["data"]
    assert [s["id"] for s in listed] == [answer["created"]]
