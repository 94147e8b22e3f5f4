"""Replicas keep one budget through Redis, fail closed without it, and the proxy's size limits.

Two Headwater servers on one database and one Redis stand for two replicas behind a load
balancer: whichever one a request reaches, the credential's budget is the same. The Redis tests use
TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) and skip, saying so, without it; the fail-closed
test runs a redis-server of its own (test_pacer's `own_redis`) so that it can kill it.
"""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest

from conftest import TEST_REDIS_URL, redis_unavailable_reason, settings_for
from headwater.auth import Auth
from headwater.server import Server
from headwater.v1 import proxy_pb2, proxy_pb2_grpc
from test_pacer import most_starts_in_a_window, own_redis  # noqa: F401 - own_redis is a fixture
from test_proxy import stripe_sync


class Replica:
    """One Headwater server and an organisation's REST and gRPC clients of it."""

    def __init__(self, server: Server, token: str):
        self.server = server
        self.rest = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.http_port}", headers={"authorization": f"Bearer {token}"}
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        self.proxy = proxy_pb2_grpc.ProxyServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        await self.rest.aclose()
        await self.channel.close()
        await self.server.stop(grace=1)


async def start_replicas(database_url: str, count: int, token: str | None = None, **settings) -> list[Replica]:
    """`count` servers on one database with the same settings; the first makes the organisation."""
    shared = settings_for(database_url, **settings)
    servers = [await Server.start(shared) for _ in range(count)]
    if token is None:
        auth = Auth(servers[0].store)
        await auth.create_org("acme")
        token = await auth.issue_token("acme")
    return [Replica(server, token) for server in servers]


@pytest.fixture
async def replicas(database_url, upstream):
    """Two replicas sharing TEST_REDIS_URL, each warmed up: a first request through each front has
    opened its connections (to the upstream, to Redis), so the timings below measure pacing, not
    set-up (a request's pacer slot comes before its connection to the upstream is made)."""
    reason = await redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = await start_replicas(database_url, 2, redis_url=TEST_REDIS_URL)
    warm = await stripe_sync(started[0], upstream.base_url, {"allowed_requests": 1000, "interval": 1})
    for replica in started:
        assert (await replica.rest.get(f"/v1/proxy/sync/{warm['id']}/echo/warm")).status_code == 200
        forward = proxy_pb2.ForwardRequest(sync_id=warm["id"], method="GET", path="echo/warm")
        assert (await replica.proxy.Forward(forward, metadata=replica.metadata)).status == 200
    upstream.requests.clear()
    yield started
    for replica in started:
        await replica.close()


# ------------------------------------------------------------------------------------------------
# One budget for every replica
# ------------------------------------------------------------------------------------------------


async def test_two_replicas_sharing_redis_keep_one_budget(replicas, upstream):
    first, second = replicas
    sync = await stripe_sync(first, upstream.base_url, {"allowed_requests": 4, "interval": 1})

    async def call(replica, i):
        response = await replica.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{i}")
        return response.status_code

    statuses = await asyncio.gather(*(call(replicas[i % 2], i) for i in range(12)))

    assert statuses == [200] * 12
    arrivals = [r.at for r in upstream.requests]
    assert len(arrivals) == 12
    # 4 per second in every window, counted where it matters: at the upstream. The 20 ms of slack
    # is the measuring slack of test_pacer's Redis tests (Redis round trips and event loop turns).
    assert most_starts_in_a_window(arrivals, 1.0, slack=0.02) == 4
    # Each replica alone would let its 6 requests through in a second; together, 12 at 4 per
    # second take two seconds more than the first four.
    assert max(arrivals) - min(arrivals) >= 1.9


async def test_two_replicas_sharing_redis_keep_every_window_of_a_budget(replicas, upstream):
    """3 per second and 6 per 3 s: a request takes a slot in both, whichever replica sends it."""
    first, second = replicas
    rate = {"allowed_requests": 3, "interval": 1, "windows": [{"allowed_requests": 6, "interval": 3}]}
    sync = await stripe_sync(first, upstream.base_url, rate)

    async def call(replica, i):
        response = await replica.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{i}")
        return response.status_code

    statuses = await asyncio.gather(*(call(replicas[i % 2], i) for i in range(10)))

    assert statuses == [200] * 10
    arrivals = [r.at for r in upstream.requests]
    assert len(arrivals) == 10
    # judged where it matters, by the upstream's arrival clock (slack as above)
    assert most_starts_in_a_window(arrivals, 1.0, slack=0.02) <= 3
    assert most_starts_in_a_window(arrivals, 3.0, slack=0.02) == 6
    # the longer window binds: the 7th arrives 3 s after the 1st
    assert sorted(arrivals)[6] - min(arrivals) >= 3.0 - 0.02


async def test_a_grpc_caller_and_a_rest_caller_on_different_replicas_share_the_budget(replicas, upstream):
    first, second = replicas
    sync = await stripe_sync(first, upstream.base_url, {"allowed_requests": 1, "interval": 1})
    forward = proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="echo/grpc")

    rest, grpc_answer = await asyncio.gather(
        first.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/rest"),
        second.proxy.Forward(forward, metadata=second.metadata),
    )

    assert (rest.status_code, grpc_answer.status) == (200, 200)
    first_at, second_at = sorted(r.at for r in upstream.requests)
    assert second_at - first_at >= 1.0 - 0.02


# ------------------------------------------------------------------------------------------------
# Redis gone: fail closed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_redis_going_away_mid_flight_fails_closed_over_rest_and_grpc(database_url, own_redis, upstream):
    redis_url, redis_server = own_redis
    (replica,) = await start_replicas(database_url, 1, redis_url=redis_url)
    try:
        sync = await stripe_sync(replica, upstream.base_url, {"allowed_requests": 1, "interval": 1})
        assert (await replica.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/first")).status_code == 200

        # Both wait for their turn (1 s and 2 s from now) when Redis dies.
        waiting_rest = asyncio.create_task(replica.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/rest"))
        forward = proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="echo/grpc")
        waiting_grpc = asyncio.ensure_future(replica.proxy.Forward(forward, metadata=replica.metadata))
        await asyncio.sleep(0.3)
        redis_server.kill()
        await redis_server.wait()

        rest = await waiting_rest
        with pytest.raises(grpc.aio.AioRpcError) as grpc_error:
            await waiting_grpc
        later = await replica.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/later")
    finally:
        await replica.close()

    assert rest.status_code == 503
    assert rest.json()["message"] == "the shared rate limiter is unavailable; nothing was sent"
    assert grpc_error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert later.status_code == 503
    assert [r.path for r in upstream.requests] == ["/echo/first"]


# ------------------------------------------------------------------------------------------------
# Size limits
# ------------------------------------------------------------------------------------------------

LIMIT = 1024


@pytest.fixture
async def small_requests(database_url):
    """A server taking request bodies up to 1 KiB."""
    (replica,) = await start_replicas(database_url, 1, max_request_bytes=LIMIT)
    yield replica
    await replica.close()


@pytest.fixture
async def small_answers(database_url):
    """A server passing on upstream answers up to 1 KiB."""
    (replica,) = await start_replicas(database_url, 1, max_response_bytes=LIMIT)
    yield replica
    await replica.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_request_body_over_the_limit_answers_413_and_sends_nothing(small_requests, upstream):
    sync = await stripe_sync(small_requests, upstream.base_url)
    url = f"/v1/proxy/sync/{sync['id']}/echo/upload"

    at_limit = await small_requests.rest.post(url, content=b"a" * LIMIT)
    over = await small_requests.rest.post(url, content=b"a" * (LIMIT + 1))

    assert at_limit.status_code == 200
    assert over.status_code == 413
    assert over.json()["message"] == f"the request body is larger than {LIMIT} bytes"
    assert [len(r.body) for r in upstream.requests] == [LIMIT]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_grpc_request_over_the_limit_is_resource_exhausted_and_sends_nothing(small_requests, upstream):
    sync = await stripe_sync(small_requests, upstream.base_url)
    # gRPC measures the whole message: the body limit plus 64 KiB for the request's other fields.
    body = b"a" * (LIMIT + 64 * 1024 + 1)
    forward = proxy_pb2.ForwardRequest(sync_id=sync["id"], method="POST", path="echo/upload", body=body)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await small_requests.proxy.Forward(forward, metadata=small_requests.metadata)

    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert upstream.requests == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_answer_over_the_limit_answers_502_over_rest_and_unavailable_over_grpc(small_answers, upstream):
    sync = await stripe_sync(small_answers, upstream.base_url)
    # /echo answers with what it got, base64 inside JSON: 900 bytes in, over 1.2 KiB out.
    payload = b"a" * 900

    small = await small_answers.rest.get(f"/v1/proxy/sync/{sync['id']}/binary")
    rest = await small_answers.rest.post(f"/v1/proxy/sync/{sync['id']}/echo/big", content=payload)
    forward = proxy_pb2.ForwardRequest(sync_id=sync["id"], method="POST", path="echo/big", body=payload)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await small_answers.proxy.Forward(forward, metadata=small_answers.metadata)

    assert small.status_code == 200 and small.content == bytes(range(256))
    assert rest.status_code == 502
    assert rest.json()["message"] == "Stripe API answered with a body over the size limit"
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == "Stripe API answered with a body over the size limit"
