"""Webhook consumers: Headwater POSTs signed batches, retries with backoff, parks what keeps failing.

The receiver is a real HTTP server on loopback that records each POST (with its arrival time) and
answers the statuses a test scripts for it (`receiver.failures = [503, 503]`: two 503s, then 200s).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import socket
from dataclasses import dataclass, field

import pytest
import uvicorn
from conftest import Running, _client_for, settings_for
from emulators import Received, read_request
from sync_support import eventually
from test_consumers import make_sync, write

from headwater.server import Server
from headwater.store.records import Change


@dataclass
class Receiver:
    """A webhook endpoint: records POSTs, answers `failures` in turn, then 200."""

    failures: list[int] = field(default_factory=list)
    posts: list[tuple[float, Received]] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.posts.append((time.monotonic(), await read_request(scope, receive)))
        status = self.failures.pop(0) if self.failures else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def bodies(self) -> list[dict]:
        return [json.loads(post.body) for _, post in self.posts]


@pytest.fixture
async def receiver():
    app = Receiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/headwater"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield app
    server.should_exit = True
    await task


@pytest.fixture
async def server(database_url):
    """A server whose webhook retries come quickly (50 ms, doubling), so tests need not wait."""
    settings = settings_for(database_url, webhook_retry_seconds=0.05)
    server = await Server.start(settings)
    try:
        yield Running(server, settings)
    finally:
        await server.stop(grace=1)


async def make_webhook(client, url: str, sync_id: str, **fields) -> dict:
    response = await client.rest.post(
        "/v1/http-consumers", json={"filters": [{"sync_id": sync_id}], "webhook_url": url, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_batches_are_posted_signed_with_the_secret_shown_once(server, client, receiver):
    sync = await make_sync(client)
    consumer = await make_webhook(client, receiver.url, sync["id"])
    secret = consumer["webhook_secret"]
    assert consumer["kind"] == "webhook" and consumer["max_deliver"] == 8 and secret.startswith("whsec_")
    assert (await client.rest.get(f"/v1/http-consumers/{consumer['id']}")).json()["webhook_secret"] == "***********"

    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"email": "paul@arrakis.org"}), Change("cus_2", {}))

    await eventually(lambda: receiver.posts)
    ((_, post),) = receiver.posts
    assert post.method == "POST" and post.path == "/hooks/headwater"
    assert post.header("content-type") == "application/json"
    expected = "sha256=" + hmac.new(secret.encode(), post.body, hashlib.sha256).hexdigest()
    assert post.header("x-headwater-signature") == expected
    (body,) = receiver.bodies()
    assert [(m["record"]["upstream_id"], m["action"]) for m in body["data"]] == [("cus_1", "insert"), ("cus_2", "insert")]
    assert body["data"][0]["record"]["data"] == {"email": "paul@arrakis.org"}
    assert set(body["data"][0]) == {"ack_token", "record", "action"}  # the same items as GET /next
    # a 2xx is the ack: nothing stays queued, nothing is posted again
    await asyncio.sleep(0.3)
    assert len(receiver.posts) == 1


async def test_webhook_batch_size_caps_the_changes_of_one_post(server, client, receiver):
    sync = await make_sync(client)
    consumer = await make_webhook(client, receiver.url, sync["id"], webhook_batch_size=2)
    assert consumer["webhook_batch_size"] == 2

    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {}) for i in range(5)))

    await eventually(lambda: sum(len(b["data"]) for b in receiver.bodies()) == 5)
    assert [len(b["data"]) for b in receiver.bodies()] == [2, 2, 1]

    # Changed later, it applies to the next POSTs.
    patched = await client.rest.patch(f"/v1/http-consumers/{consumer['id']}", json={"webhook_batch_size": 10})
    assert patched.status_code == 200, patched.text
    await write(server, sync["id"], "stripe:customer", *(Change(f"cus_{i}", {}) for i in range(5, 9)))
    await eventually(lambda: sum(len(b["data"]) for b in receiver.bodies()) == 9)
    assert [len(b["data"]) for b in receiver.bodies()][3:] == [4]


@pytest.mark.parametrize("size", [0, 1001])
async def test_webhook_batch_size_out_of_range_is_refused(server, client, receiver, size):
    sync = await make_sync(client)
    response = await client.rest.post("/v1/http-consumers", json={
        "filters": [{"sync_id": sync["id"]}], "webhook_url": receiver.url, "webhook_batch_size": size,
    })
    assert response.status_code == 400
    assert "consumer.webhook_batch_size" in response.json()["message"]


async def test_a_failing_receiver_is_retried_with_backoff_until_it_takes_the_batch(server, client, receiver):
    sync = await make_sync(client)
    consumer = await make_webhook(client, receiver.url, sync["id"])
    receiver.failures = [503, 500, 502]

    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}))

    await eventually(lambda: len(receiver.posts) == 4)
    times = [at for at, _ in receiver.posts]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195  # 50 ms, then doubling
    assert {m["record"]["upstream_id"] for b in receiver.bodies() for m in b["data"]} == {"cus_1"}
    await asyncio.sleep(0.3)
    assert len(receiver.posts) == 4  # taken, so acked
    parked = await client.rest.get(f"/v1/http-consumers/{consumer['id']}/parked")
    assert parked.json()["data"] == []


async def test_after_max_deliver_attempts_the_batch_is_parked_and_redelivered_on_request(server, client, receiver):
    sync = await make_sync(client)
    consumer = await make_webhook(client, receiver.url, sync["id"], max_deliver=3)
    receiver.failures = [500, 500, 500]
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}), Change("cus_2", {}))

    async def parked():
        answer = (await client.rest.get(f"/v1/http-consumers/{consumer['id']}/parked")).json()["data"]
        return answer if len(answer) == 2 else None

    messages = await eventually(parked)
    assert [(m["record"]["upstream_id"], m["deliver_count"]) for m in messages] == [("cus_1", 3), ("cus_2", 3)]
    assert messages[0]["last_error"] == "HTTP 500 (delivered 3 times)"
    assert len(receiver.posts) == 3

    redelivered = await client.rest.post(f"/v1/http-consumers/{consumer['id']}/redeliver", json={})
    assert redelivered.json() == {"redelivered": 2}
    await eventually(lambda: len(receiver.posts) == 4)
    assert [m["record"]["upstream_id"] for m in receiver.bodies()[3]["data"]] == ["cus_1", "cus_2"]
    await eventually(lambda: _no_parked(client, consumer["id"]))


async def test_pull_calls_on_a_webhook_consumer_are_refused(server, client, receiver):
    sync = await make_sync(client)
    consumer = await make_webhook(client, receiver.url, sync["id"])

    response = await client.rest.get(f"/v1/http-consumers/{consumer['id']}/next")

    assert response.status_code == 400
    assert "webhook" in response.json()["message"]


async def test_webhooks_to_private_addresses_are_refused_unless_allowed(database_url, receiver):
    settings = settings_for(database_url, allow_private_networks=False)
    running = Running(await Server.start(settings), settings)
    client = await _client_for(running, "acme")
    try:
        sync = await make_sync(client)
        consumer = await make_webhook(client, receiver.url, sync["id"], max_deliver=1)
        await write(running, sync["id"], "stripe:customer", Change("cus_1", {}))

        async def parked():
            return (await client.rest.get(f"/v1/http-consumers/{consumer['id']}/parked")).json()["data"]

        (message,) = await eventually(parked)
        assert "127.0.0.1" in message["last_error"] and receiver.posts == []
    finally:
        await client.rest.aclose()
        await client.channel.close()
        await running.server.stop(grace=1)


async def _no_parked(client, consumer_id: str) -> bool:
    return (await client.rest.get(f"/v1/http-consumers/{consumer_id}/parked")).json()["data"] == []
