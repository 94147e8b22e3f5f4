"""A budget callers can see, and rate limits with several windows through the API.

Every proxied answer (REST and gRPC) tells the credential's budget in the IETF RateLimit fields
and how long the request waited; an upstream's own field of the same name passes through instead.
GET /v1/credentials/{id}/budget (and gRPC) answers each window's use, the callers waiting and a
pause. A sync's rate_limit may add windows; the single-window form reads back as it was."""

from __future__ import annotations

import asyncio
import datetime
import json

import grpc
import pytest

from emulators import serve_on_loopback
from headwater.v1 import credential_pb2, proxy_pb2, proxy_pb2_grpc
from test_proxy import stripe_sync
from test_syncs import documented_body, make_stream
from test_validation import violations

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

TWO_WINDOWS = {"allowed_requests": 5, "interval": 10, "windows": [{"allowed_requests": 20, "interval": 60}]}


def pacer_of(server):
    return server.server.backend.upstream.pacer


# ------------------------------------------------------------------------------------------------
# The headers of a proxied answer
# ------------------------------------------------------------------------------------------------


async def test_a_proxied_answer_tells_each_windows_remaining_and_reset(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, TWO_WINDOWS)

    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/first")
    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/second")

    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"default";q=5;w=10, "60s";q=20;w=60'
    # two starts counted: 3 and 18 left; the first leaves each window about an interval from now
    assert response.headers["ratelimit"] == '"default";r=3;t=10, "60s";r=18;t=60'
    assert response.headers["x-headwater-budget-wait-ms"] == "0"


async def test_a_grpc_proxy_answer_carries_the_same_headers(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, TWO_WINDOWS)
    proxy = proxy_pb2_grpc.ProxyServiceStub(client.channel)

    answer = await proxy.Forward(
        proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="echo/grpc"), metadata=client.metadata
    )

    headers = {h.name.lower(): h.value for h in answer.headers}
    assert answer.status == 200
    assert headers["ratelimit-policy"] == '"default";q=5;w=10, "60s";q=20;w=60'
    assert headers["ratelimit"] == '"default";r=4;t=10, "60s";r=19;t=60'
    assert headers["x-headwater-budget-wait-ms"] == "0"


async def test_the_wait_header_tells_how_long_a_request_waited_for_its_turn(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, {"allowed_requests": 1, "interval": 1})

    first, second = await asyncio.gather(
        *(client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{i}") for i in range(2))
    )

    waits = sorted(int(r.headers["x-headwater-budget-wait-ms"]) for r in (first, second))
    assert waits[0] < 200
    assert waits[1] >= 900  # its turn came a second after the first's
    assert "ratelimit" in first.headers and "ratelimit" in second.headers


async def _own_rate_limit_upstream(scope, receive, send):
    """An upstream that states its own budget, as GitHub and HubSpot do."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"),
        (b"ratelimit", b'"upstream";r=7;t=30'),
        (b"x-ratelimit-remaining", b"4999"),
        (b"x-ratelimit-reset", b"1764600000"),
    ]})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_an_upstreams_own_rate_limit_headers_pass_through_unchanged(client):
    port, server, task = await serve_on_loopback(_own_rate_limit_upstream)
    try:
        sync = await stripe_sync(client, f"http://127.0.0.1:{port}", TWO_WINDOWS)

        response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/v1/anything")
    finally:
        server.should_exit = True
        await task

    assert response.status_code == 200
    assert response.headers.get_list("ratelimit") == ['"upstream";r=7;t=30']  # the upstream's, not ours
    assert response.headers["x-ratelimit-remaining"] == "4999"
    assert response.headers["x-ratelimit-reset"] == "1764600000"
    # what the upstream did not send is ours
    assert response.headers["ratelimit-policy"] == '"default";q=5;w=10, "60s";q=20;w=60'
    assert response.headers["x-headwater-budget-wait-ms"] == "0"


# ------------------------------------------------------------------------------------------------
# GET /v1/credentials/{id}/budget
# ------------------------------------------------------------------------------------------------


async def test_the_budget_endpoint_answers_each_windows_use_the_waiting_and_the_pause(client, server, upstream):
    sync = await stripe_sync(client, upstream.base_url, TWO_WINDOWS)
    for i in range(2):
        assert (await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/{i}")).status_code == 200
    await pacer_of(server).pause(sync["credential_id"], 30, reason="upstream 429: Retry-After 30 s")

    response = await client.rest.get(f"/v1/credentials/{sync['credential_id']}/budget")

    assert response.status_code == 200, response.text
    budget = response.json()
    assert budget["credential_id"] == sync["credential_id"]
    assert [{k: w[k] for k in ("allowed_requests", "interval", "used", "remaining")} for w in budget["windows"]] == [
        {"allowed_requests": 5, "interval": 10, "used": 2, "remaining": 3},
        {"allowed_requests": 20, "interval": 60, "used": 2, "remaining": 18},
    ]
    # an interval after the first start, and the pacing margin (20 ms) the pacer adds to it
    assert 9 < budget["windows"][0]["reset_seconds"] <= 10.02
    assert 59 < budget["windows"][1]["reset_seconds"] <= 60.02
    assert (budget["waiting"], budget["in_flight"], budget["max_concurrent_requests"]) == (0, 0, 0)
    assert budget["pause"]["reason"] == "upstream 429: Retry-After 30 s"
    ends = datetime.datetime.fromisoformat(budget["pause"]["ends_at"].replace("Z", "+00:00"))
    assert 25 < (ends - datetime.datetime.now(datetime.UTC)).total_seconds() <= 30


async def test_the_budget_endpoint_counts_the_callers_waiting_for_their_turn(client, upstream):
    sync = await stripe_sync(client, upstream.base_url, {"allowed_requests": 1, "interval": 5})
    assert (await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/first")).status_code == 200
    waiting = asyncio.create_task(client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/second"))
    await asyncio.sleep(0.5)  # its turn is 5 s after the first

    budget = (await client.rest.get(f"/v1/credentials/{sync['credential_id']}/budget")).json()

    assert budget["waiting"] == 1
    assert budget["windows"][0]["used"] == 1 and budget["windows"][0]["remaining"] == 0
    assert budget["pause"] is None
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_the_budget_over_grpc_and_an_unknown_credential_is_not_found(client, server, upstream):
    sync = await stripe_sync(client, upstream.base_url, TWO_WINDOWS)
    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/once")
    await pacer_of(server).pause(sync["credential_id"], 60, reason="told so")

    answer = await client.credentials.GetCredentialBudget(
        credential_pb2.GetCredentialBudgetRequest(id=sync["credential_id"]), metadata=client.metadata
    )

    assert [(w.allowed_requests, w.interval, w.used, w.remaining) for w in answer.windows] == [(5, 10, 1, 4), (20, 60, 1, 19)]
    assert answer.pause.reason == "told so"
    assert answer.HasField("pause") and answer.pause.ends_at.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.credentials.GetCredentialBudget(
            credential_pb2.GetCredentialBudgetRequest(id="no-such-credential"), metadata=client.metadata
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_budget_of_a_credential_without_syncs_is_its_providers_default(client):
    created = await client.rest.post("/v1/credentials", json={
        "provider": "hubspot", "properties": {"kind": "hubspot_oauth2", "access_token": "at"},
    })
    assert created.status_code == 200, created.text

    budget = (await client.rest.get(f"/v1/credentials/{created.json()['id']}/budget")).json()

    assert [(w["allowed_requests"], w["interval"], w["used"]) for w in budget["windows"]] == [
        (100, 10, 0), (250_000, 86_400, 0),  # HubSpot: 100 per 10 s and 250,000 a day
    ]


# ------------------------------------------------------------------------------------------------
# rate_limit with windows, through the API
# ------------------------------------------------------------------------------------------------


async def test_a_sync_with_several_windows_reads_back_as_created(client):
    stream_id = await make_stream(client)
    rate = {"allowed_requests": 100, "interval": 10, "max_concurrent_requests": 0,
            "windows": [{"allowed_requests": 250000, "interval": 86400}]}

    created = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {"rate_limit": rate})
    assert created.status_code == 200, created.text
    read = (await client.rest.get(f"/v1/syncs/{created.json()['id']}")).json()

    assert created.json()["rate_limit"] == rate
    assert read["rate_limit"] == rate


async def test_the_single_window_form_reads_back_verbatim(client):
    stream_id = await make_stream(client)
    rate = {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0}

    created = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {"rate_limit": rate})
    read = (await client.rest.get(f"/v1/syncs/{created.json()['id']}")).json()

    assert json.dumps(read["rate_limit"]) == json.dumps(rate)  # the same keys, nothing added


async def test_patch_sets_and_clears_the_further_windows(client):
    stream_id = await make_stream(client)
    created = (await client.rest.post("/v1/syncs", json=documented_body(stream_id))).json()

    added = await client.rest.patch(f"/v1/syncs/{created['id']}", json={
        "rate_limit": {"allowed_requests": 100, "interval": 60, "windows": [{"allowed_requests": 1000, "interval": 3600}]},
    })
    assert added.status_code == 200, added.text
    assert added.json()["rate_limit"]["windows"] == [{"allowed_requests": 1000, "interval": 3600}]

    cleared = await client.rest.patch(f"/v1/syncs/{created['id']}?update_mask=rate_limit.windows", json={"rate_limit": {}})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["rate_limit"] == {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0}


@pytest.mark.parametrize(("windows", "field", "description"), [
    ([{"allowed_requests": 10, "interval": 0}], "sync.rate_limit.windows[0].interval",
     "must be a positive number of seconds"),
    ([{"allowed_requests": 10, "interval": 3600}, {"allowed_requests": 0, "interval": 86400}],
     "sync.rate_limit.windows[1].allowed_requests", "must be a positive number"),
    ([{"allowed_requests": 10, "interval": 60}], "sync.rate_limit.windows[0].interval",
     "60 s is the interval of another window of the rate limit"),
])
async def test_a_bad_window_is_refused_naming_it(client, windows, field, description):
    stream_id = await make_stream(client)
    rate = {"allowed_requests": 100, "interval": 60, "windows": windows}

    response = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {"rate_limit": rate})

    assert response.status_code == 400
    assert violations(response) == [(field, description)]
    assert (await client.rest.get("/v1/syncs")).json()["data"] == []


async def test_a_patch_of_the_first_interval_onto_a_further_windows_is_refused(client):
    stream_id = await make_stream(client)
    rate = {"allowed_requests": 100, "interval": 60, "windows": [{"allowed_requests": 1000, "interval": 3600}]}
    created = (await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {"rate_limit": rate})).json()

    response = await client.rest.patch(f"/v1/syncs/{created['id']}", json={"rate_limit": {"interval": 3600}})

    assert response.status_code == 400
    assert violations(response) == [
        ("sync.rate_limit.windows[0].interval", "3600 s is the interval of another window of the rate limit")
    ]
    assert (await client.rest.get(f"/v1/syncs/{created['id']}")).json()["rate_limit"] == rate | {"max_concurrent_requests": 0}
