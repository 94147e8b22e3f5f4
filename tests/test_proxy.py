"""The proxy: requests reach the upstream with the credential's auth, and come back as they were."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass

import grpc
import httpx
import pytest

from conftest import settings_for
from emulators import reset_server
from headwater.auth import Auth
from headwater.server import Server
from headwater.v1 import proxy_pb2, proxy_pb2_grpc
from test_syncs import make_stream

SECRET = "sk_test_SECRET_51H"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def stripe_sync(client, base_url: str, rate_limit: dict | None = None) -> dict:
    stream_id = await make_stream(client, f"stream-{uuid.uuid4().hex[:8]}")
    body = {
        "provider": "stripe", "stream_id": stream_id, "collection_ids": ["stripe:customer"],
        "credential": {"properties": {"kind": "stripe_api_key", "secret": SECRET, "base_url": base_url}},
    }
    if rate_limit:
        body["rate_limit"] = rate_limit
    response = await client.rest.post("/v1/syncs", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def echoed(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


async def test_get_through_a_sync_reaches_upstream_with_the_credentials_auth(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(
        f"/v1/proxy/sync/{sync['id']}/echo/v1/customers", params={"limit": "3", "email": "a+b@x.org"},
        headers={"x-custom": "kept", "cookie": "session=caller"},
    )

    seen = upstream.requests[-1]
    assert seen.method == "GET"
    assert seen.path == "/echo/v1/customers"
    assert seen.query == "limit=3&email=a%2Bb%40x.org"
    assert seen.header("authorization") == f"Bearer {SECRET}"
    assert seen.header("x-custom") == "kept"
    assert seen.header("cookie") is None
    assert client.token not in json.dumps(seen.headers)
    assert echoed(response)["path"] == "/echo/v1/customers"
    assert len(response.headers["x-headwater-request-id"]) == 32


async def test_post_body_bytes_and_content_type_pass_through_unchanged(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)
    body = b'{"cancellation_reason":"requested_by_customer"}'

    response = await client.rest.post(
        f"/v1/proxy/sync/{sync['id']}/echo/v1/payment_intents/pm_1234/cancel",
        content=body, headers={"content-type": "application/json", "connection": "keep-alive, x-hop",
                               "x-hop": "dropped"},
    )

    seen = upstream.requests[-1]
    assert seen.body == body
    assert seen.header("content-type") == "application/json"
    assert seen.header("x-hop") is None
    assert base64.b64decode(echoed(response)["body"]) == body


async def test_credential_route_reaches_the_same_upstream(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.delete(f"/v1/proxy/credential/{sync['credential_id']}/echo/v1/customers/cus_1")

    assert echoed(response)["method"] == "DELETE"
    assert upstream.requests[-1].header("authorization") == f"Bearer {SECRET}"


async def test_grpc_forward_returns_status_headers_and_body_as_fields(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    answer = await client.proxy.Forward(
        proxy_pb2.ForwardRequest(
            sync_id=sync["id"], method="PUT", path="echo/things/1", query="a=1",
            headers=[proxy_pb2.Header(name="content-type", value="text/plain")], body=b"raw bytes",
        ),
        metadata=client.metadata,
    )

    assert answer.status == 200
    headers = {h.name.lower(): h.value for h in answer.headers}
    assert headers["content-type"] == "application/json"
    assert "x-headwater-request-id" in headers
    seen = json.loads(answer.body)
    assert (seen["method"], seen["path"], seen["query"]) == ("PUT", "/echo/things/1", "a=1")
    assert base64.b64decode(seen["body"]) == b"raw bytes"


async def test_binary_answers_come_back_byte_for_byte(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/binary")

    assert response.content == bytes(range(256))
    assert response.headers["content-type"] == "application/octet-stream"


async def test_redirects_are_returned_with_location_pointing_back_at_the_proxy(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/redirect")

    assert response.status_code == 302
    assert response.headers["location"] == f"{client.rest.base_url}/v1/proxy/sync/{sync['id']}/echo/after-redirect"
    assert [r.path for r in upstream.requests] == ["/redirect"]


async def test_link_headers_point_back_at_the_proxy_and_body_urls_only_on_request(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)
    route = f"{client.rest.base_url}/v1/proxy/sync/{sync['id']}/"

    plain = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/paged")
    rewritten = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/paged",
                                      headers={"x-headwater-rewrite-body-urls": "true"})

    assert plain.headers["link"] == f'<{route}paged?page=2>; rel="next", <{route}paged?page=3>; rel="last"'
    assert plain.json()["next_url"] == f"{upstream.base_url}/paged?page=2"
    assert rewritten.json()["next_url"] == f"{route}paged?page=2"
    # Following the link goes through the proxy again.
    followed = await client.rest.get(plain.links["next"]["url"])
    assert followed.json()["page"] == 2


async def test_upstream_timeout_answers_504_naming_the_provider(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.post(f"/v1/proxy/sync/{sync['id']}/slow", params={"seconds": "3"},
                                      headers={"x-headwater-timeout": "0.5"})

    assert response.status_code == 504
    assert response.json()["error"] == "Error: Stripe API timed out"


# gRPC sends a deadline rounded up (to three significant figures: 5.999 s goes as 6 s), so the
# server keeps a moment to answer: the caller gets our 504, not its own channel's deadline error.
async def test_an_upstream_timeout_reaches_a_grpc_caller_as_ours_before_its_deadline(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    with pytest.raises(grpc.aio.AioRpcError) as timed_out:
        await client.proxy.Forward(
            proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="slow", query="seconds=600"),
            metadata=client.metadata, timeout=6,
        )

    assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert timed_out.value.details() == "Stripe API timed out"
    assert "x-headwater-request-id" in dict(timed_out.value.trailing_metadata())


async def test_an_expired_deadline_answers_504_at_once_and_sends_nothing(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo", headers={"x-headwater-timeout": "0"})

    assert response.status_code == 504
    assert response.json()["error"] == "Error: Stripe API timed out"
    assert upstream.requests == []


async def test_refused_and_reset_connections_answer_502(client):
    port, resetter = await reset_server()
    closed = socket_port_closed()
    try:
        refused_sync = await stripe_sync(client, f"http://127.0.0.1:{closed}")
        reset_sync = await stripe_sync(client, f"http://127.0.0.1:{port}")

        refused = await client.rest.post(f"/v1/proxy/sync/{refused_sync['id']}/x")
        reset = await client.rest.post(f"/v1/proxy/sync/{reset_sync['id']}/x")
    finally:
        resetter.close()

    assert refused.status_code == 502 and "Stripe API could not be reached" in refused.json()["error"]
    assert reset.status_code == 502


def socket_port_closed() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_post_gets_the_upstream_429_but_get_is_retried_after_retry_after(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    post = await client.rest.post(f"/v1/proxy/sync/{sync['id']}/status/429", params={"retry_after": "0"})
    get = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/status/503",
                                params={"retry_after": "1", "times": "1"})

    assert post.status_code == 429
    assert post.headers["retry-after"] == "0"
    assert get.status_code == 200
    assert get.json()["calls"] == 2


async def test_post_with_idempotency_key_is_retried(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.post(f"/v1/proxy/sync/{sync['id']}/status/502", params={"times": "2"},
                                      headers={"idempotency-key": "k-1"})

    assert response.status_code == 200
    assert response.json()["calls"] == 3


# HTTP clients remove literal "." and ".." segments themselves; the encoded forms reach us (and
# the literal ones arrive over gRPC, below).
@pytest.mark.parametrize("path", [
    "echo/%2e%2e/admin", "echo/%2E%2E/admin", "echo/%252e%252e/admin", "echo/%2e/x",
    "ftp://files.example.com/x", "file:///etc/passwd",
])
async def test_unsafe_paths_are_refused_and_nothing_is_sent(client, upstream, path):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/{path}")

    assert response.status_code == 400, response.text
    assert upstream.requests == []


async def test_dot_segments_over_grpc_are_refused(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.proxy.Forward(
            proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="echo/../admin"),
            metadata=client.metadata,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert upstream.requests == []


async def test_fully_qualified_url_must_name_a_permitted_host(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    other = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/https://evil.example.com/v1/customers")
    userinfo = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/http://user:pw@127.0.0.1:{upstream.port}/echo")
    own = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/{upstream.base_url}/echo/full")

    assert other.status_code == 400
    assert other.json()["message"] == "This domain is invalid for the current integration"
    assert userinfo.status_code == 400
    assert echoed(own)["path"] == "/echo/full"


async def test_header_injection_over_grpc_is_refused(client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.proxy.Forward(
            proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="echo",
                                     headers=[proxy_pb2.Header(name="x-a", value="1\r\nx-injected: yes")]),
            metadata=client.metadata,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert upstream.requests == []


async def test_another_organisations_sync_or_credential_is_not_found(client, other_client, upstream):
    sync = await stripe_sync(client, upstream.base_url)

    by_sync = await other_client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo")
    by_credential = await other_client.rest.get(f"/v1/proxy/credential/{sync['credential_id']}/echo")
    anonymous = await httpx.AsyncClient(base_url=str(client.rest.base_url)).get(f"/v1/proxy/sync/{sync['id']}/echo")

    assert by_sync.status_code == by_credential.status_code == 404
    assert anonymous.status_code == 401
    assert upstream.requests == []


@pytest.mark.parametrize("kind, properties, check", [
    ("custom_basic", {"username": "ann", "password": "pw"},
     lambda r: r.header("authorization") == "Basic " + base64.b64encode(b"ann:pw").decode()),
    ("custom_header", {"header_name": "X-Api-Key", "api_key": "k1"}, lambda r: r.header("x-api-key") == "k1"),
    ("custom_query", {"query_param": "api_key", "api_key": "k 2"}, lambda r: r.query == "a=1&api_key=k%202"),
    ("custom_bearer", {"token": "t3"}, lambda r: r.header("authorization") == "Bearer t3"),
])
async def test_custom_credentials_inject_their_own_auth_scheme(client, upstream, kind, properties, check):
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "custom", "properties": {"kind": kind, "base_url": upstream.base_url, **properties},
    })).json()

    response = await client.rest.get(f"/v1/proxy/credential/{credential['id']}/echo", params={"a": "1"})

    assert response.status_code == 200, response.text
    assert check(upstream.requests[-1])


@pytest.mark.parametrize("kind, properties, sent, check", [
    ("custom_header", {"header_name": "X-Api-Key", "api_key": "k1"}, {"headers": {"x-api-key": "{token}"}},
     lambda r: [v for n, v in r.headers if n == "x-api-key"] == ["k1"]),
    ("custom_query", {"query_param": "api_key", "api_key": "k2"}, {"params": {"a": "1", "api_key": "{token}"}},
     lambda r: r.query == "a=1&api_key=k2"),
])
async def test_the_callers_own_copy_of_the_credentials_header_or_parameter_is_replaced(client, upstream, kind,
                                                                                     properties, sent, check):
    # An SDK sends its token in the provider's own header or parameter; configured with Headwater's
    # token, that token must not travel upstream beside the credential's.
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "custom", "properties": {"kind": kind, "base_url": upstream.base_url, **properties},
    })).json()
    request = {part: {k: v.format(token=client.token) for k, v in values.items()} for part, values in sent.items()}

    response = await client.rest.get(f"/v1/proxy/credential/{credential['id']}/echo", **request)

    assert response.status_code == 200, response.text
    seen = upstream.requests[-1]
    assert check(seen), (seen.headers, seen.query)
    assert client.token not in seen.query + str(seen.headers)


async def test_github_gets_its_required_headers_unless_the_caller_sent_them(client, upstream):
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "github", "properties": {"kind": "github_token", "token": "ghp_x", "base_url": upstream.base_url},
    })).json()

    await client.rest.get(f"/v1/proxy/credential/{credential['id']}/echo", headers={"user-agent": "PyGithub/Python"})

    seen = upstream.requests[-1]
    assert seen.header("accept") == "application/vnd.github+json"
    assert seen.header("user-agent") == "PyGithub/Python"
    assert seen.header("authorization") == "Bearer ghp_x"


async def test_requests_over_budget_wait_their_turn_and_never_exceed_it(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, {"allowed_requests": 4, "interval": 1})
    started = []

    async def call(i):
        response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{i}")
        started.append(asyncio.get_running_loop().time())
        return response.status_code

    statuses = await asyncio.gather(*(call(i) for i in range(10)))

    assert statuses == [200] * 10
    # 10 requests at 4 per second: the last cannot start before 2 s have passed.
    assert max(started) - min(started) >= 1.9


async def test_request_whose_turn_is_past_its_deadline_gets_429_with_retry_after(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, {"allowed_requests": 1, "interval": 30})
    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/first")

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/second", headers={"x-headwater-timeout": "1"})

    assert response.status_code == 429
    # The next turn: the interval plus the pacing margin (20 ms) after the first, in whole seconds.
    assert 25 <= int(response.headers["retry-after"]) <= 31
    assert [r.path for r in upstream.requests] == ["/echo/first"]


async def test_each_proxied_request_leaves_one_log_line_without_secrets(client, upstream, caplog):
    caplog.set_level(logging.INFO, logger="headwater.proxy")
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/logged", params={"token": "q-secret"})

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "headwater.proxy"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == response.headers["x-headwater-request-id"]
    assert (line["method"], line["host"], line["path"], line["status"]) == ("GET", "127.0.0.1", "/echo/logged", 200)
    assert line["waited_ms"] >= 0 and line["upstream_ms"] > 0
    assert SECRET not in caplog.text and "q-secret" not in caplog.text


async def test_the_log_line_is_json_whatever_the_path_holds(client, upstream, caplog):
    caplog.set_level(logging.INFO, logger="headwater.proxy")
    sync = await stripe_sync(client, upstream.base_url)

    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/quote%22back%5Cslash/caf%C3%A9")

    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "headwater.proxy"]
    assert line["path"] == upstream.requests[-1].raw_path == "/echo/quote%22back%5Cslash/caf%C3%A9"
    assert line["status"] == 200 and isinstance(line["total_ms"], float)


@pytest.mark.parametrize("spelt", ["100%25done", "a%2Fb", "quote%22s", "caf%C3%A9", "sp%20ace", "plain"])
async def test_the_path_reaches_the_upstream_as_the_caller_spelt_it(client, upstream, spelt):
    sync = await stripe_sync(client, upstream.base_url)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{spelt}")

    assert response.status_code == 200
    assert upstream.requests[-1].raw_path == f"/echo/{spelt}"


@dataclass
class Acme:
    """Organisation 'acme' on a server of its own: REST, and the proxy over gRPC."""

    rest: httpx.AsyncClient
    proxy: proxy_pb2_grpc.ProxyServiceStub
    metadata: tuple[tuple[str, str], ...]

    async def custom_credential(self, base_url: str) -> str:
        response = await self.rest.post("/v1/credentials", json={
            "provider": "custom", "properties": {"kind": "custom_bearer", "token": "t", "base_url": base_url}})
        assert response.status_code == 200, response.text
        return response.json()["id"]


@contextlib.asynccontextmanager
async def acme_on_a_server(database_url: str, **settings):
    server = await Server.start(settings_for(database_url, **settings))
    try:
        auth = Auth(server.store)
        await auth.create_org("acme")
        token = await auth.issue_token("acme")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}",
                                     headers={"authorization": f"Bearer {token}"}) as rest, \
                grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            yield Acme(rest, proxy_pb2_grpc.ProxyServiceStub(channel), (("authorization", f"Bearer {token}"),))
    finally:
        await server.stop()


@pytest.mark.parametrize("host", ["localhost", "127.1", "2130706433"])
async def test_loopback_upstreams_are_refused_unless_the_operator_allows_them(database_url, upstream, host):
    async with acme_on_a_server(database_url, allow_private_networks=False) as acme:
        credential = await acme.custom_credential(f"http://{host}:{upstream.port}")
        response = await acme.rest.get(f"/v1/proxy/credential/{credential}/echo")

    assert response.status_code == 403, response.text
    assert response.json()["error"] == (
        "Error: Custom API host resolves to a private or loopback address, which Headwater does not call"
    )
    assert upstream.requests == []


# Answers Headwater makes itself, over both fronts: each leaves its log line and carries its id
# (a REST header; gRPC trailing metadata).
@pytest.mark.parametrize("case, settings, status, code", [
    ("unknown credential", {}, 404, grpc.StatusCode.NOT_FOUND),
    ("private address", {"allow_private_networks": False}, 403, grpc.StatusCode.PERMISSION_DENIED),
    ("unreachable", {}, 502, grpc.StatusCode.UNAVAILABLE),
    ("shared pacer unreachable", {"redis_url": f"redis://127.0.0.1:{socket_port_closed()}/0"}, 503,
     grpc.StatusCode.UNAVAILABLE),
])
async def test_answers_headwater_makes_itself_carry_a_request_id_and_leave_a_log_line(
    database_url, upstream, caplog, case, settings, status, code
):
    caplog.set_level(logging.INFO, logger="headwater.proxy")
    base_url = f"http://127.0.0.1:{socket_port_closed() if case == 'unreachable' else upstream.port}"
    async with acme_on_a_server(database_url, **settings) as acme:
        credential = "no-such-credential" if case == "unknown credential" else await acme.custom_credential(base_url)

        over_rest = await acme.rest.get(f"/v1/proxy/credential/{credential}/echo/headwater-made")
        with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
            await acme.proxy.Forward(proxy_pb2.ForwardRequest(credential_id=credential, method="GET", path="echo"),
                                     metadata=acme.metadata)

    assert over_rest.status_code == status, over_rest.text
    assert over_grpc.value.code() == code
    rest_id = over_rest.headers["x-headwater-request-id"]
    grpc_id = dict(over_grpc.value.trailing_metadata())["x-headwater-request-id"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "headwater.proxy"]
    assert [(line["request_id"], line["method"], line["status"]) for line in lines] == [
        (rest_id, "GET", status), (grpc_id, "GET", status),
    ]
    assert upstream.requests == []


async def test_errors_name_a_custom_api_once(client):
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "custom", "properties": {"kind": "custom_bearer", "token": "t",
                                             "base_url": f"http://127.0.0.1:{socket_port_closed()}"}})).json()

    response = await client.rest.get(f"/v1/proxy/credential/{credential['id']}/x")

    assert response.status_code == 502
    assert response.json()["error"] == "Error: Custom API could not be reached (connection refused or reset)"
