"""Event endpoints: the organisation's own events, POSTed signed to the URLs it registers, retried
with backoff and parked as webhook consumers' changes are.

Events are raised here the way Headwater's own code raises them (`emit`, inside a `store.run`
transaction); tests/test_credential_health.py raises them through what causes them. The receiver
is a real HTTP server on loopback (tests/test_webhooks.py's).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import grpc
import pytest
from sync_support import eventually
from test_webhooks import Receiver, receiver, server  # noqa: F401 (fixtures: fast retries, a receiver)

from headwater.store.org_events import EVENT_TYPES, emit
from headwater.v1 import event_pb2, event_pb2_grpc


async def make_endpoint(client, url: str, **fields) -> dict:
    response = await client.rest.post("/v1/event-endpoints", json={"url": url, **fields})
    assert response.status_code == 200, response.text
    return response.json()


async def raise_event(server, org_id: str, type: str, **data) -> None:
    await server.server.store.run(emit, org_id, type, data)


def connection(user: str, **more) -> dict:
    return {"credential_id": f"cred-of-{user}", "provider": "hubspot", "end_user_id": user, **more}


def events(receiver: Receiver) -> list[dict]:
    return [event for body in receiver.bodies() for event in body["data"]]


# --- managing endpoints ----------------------------------------------------------------------


async def test_an_endpoint_shows_its_secret_once_and_wants_every_type_by_default(client, receiver):
    created = await make_endpoint(client, receiver.url)

    assert created == {
        "id": created["id"], "org_id": created["org_id"], "url": receiver.url, "event_types": [],
        "secret": created["secret"], "created_at": created["created_at"], "updated_at": created["updated_at"],
    }
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    shown = (await client.rest.get(f"/v1/event-endpoints/{created['id']}")).json()
    assert shown == {**created, "secret": "***********"}
    listed = (await client.rest.get("/v1/event-endpoints")).json()
    assert listed == {"data": [shown], "next_page_token": ""}


async def test_a_bad_url_and_unknown_event_types_are_refused_naming_each_field(client):
    response = await client.rest.post("/v1/event-endpoints", json={
        "url": "ftp://hooks.example.com/x", "event_types": ["credential.health_changed", "credential.exploded"],
    })

    assert response.status_code == 400
    violations = response.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == ["event_endpoint.url", "event_endpoint.event_types[1]"]
    assert "connection.created" in violations[1]["description"]  # it lists the types there are
    assert (await client.rest.get("/v1/event-endpoints")).json()["data"] == []


async def test_a_url_is_required_and_a_type_listed_twice_is_refused(client):
    response = await client.rest.post("/v1/event-endpoints", json={
        "event_types": ["sync.health_changed", "sync.health_changed"],
    })

    assert response.status_code == 400
    fields = [v["field"] for v in response.json()["details"][0]["field_violations"]]
    assert fields == ["event_endpoint.url", "event_endpoint.event_types"]


async def test_patch_changes_the_url_and_the_types_and_nothing_else(client, receiver):
    created = await make_endpoint(client, receiver.url)

    patched = await client.rest.patch(f"/v1/event-endpoints/{created['id']}", json={
        "url": receiver.url + "?v=2", "event_types": ["credential.health_changed"],
    })
    refused = await client.rest.patch(f"/v1/event-endpoints/{created['id']}", json={"secret": "whsec_mine"})

    assert patched.status_code == 200, patched.text
    assert patched.json()["url"] == receiver.url + "?v=2"
    assert patched.json()["event_types"] == ["credential.health_changed"]
    assert patched.json()["secret"] == "***********"
    assert refused.status_code == 400
    assert refused.json()["details"][0]["field_violations"][0]["field"] == "event_endpoint.secret"


async def test_a_deleted_endpoint_is_gone(client, receiver):
    created = await make_endpoint(client, receiver.url)

    deleted = await client.rest.delete(f"/v1/event-endpoints/{created['id']}")

    assert deleted.json() == {"id": created["id"], "deleted": True}
    assert (await client.rest.get(f"/v1/event-endpoints/{created['id']}")).status_code == 404


async def test_another_organisations_endpoints_do_not_exist_for_it(client, other_client, receiver):
    created = await make_endpoint(client, receiver.url)

    for call in (
        other_client.rest.get(f"/v1/event-endpoints/{created['id']}"),
        other_client.rest.patch(f"/v1/event-endpoints/{created['id']}", json={"url": receiver.url}),
        other_client.rest.get(f"/v1/event-endpoints/{created['id']}/parked"),
        other_client.rest.post(f"/v1/event-endpoints/{created['id']}/redeliver", json={}),
        other_client.rest.delete(f"/v1/event-endpoints/{created['id']}"),
    ):
        assert (await call).status_code == 404
    assert (await other_client.rest.get("/v1/event-endpoints")).json()["data"] == []


async def test_endpoints_are_neither_consumers_nor_streams_of_the_api(client, receiver):
    """An endpoint is delivered to by the webhook consumers' machinery, but the consumer and stream
    APIs know nothing of it."""
    created = await make_endpoint(client, receiver.url)

    assert (await client.rest.get("/v1/http-consumers")).json()["data"] == []
    assert (await client.rest.get("/v1/streams")).json()["data"] == []
    assert (await client.rest.get(f"/v1/http-consumers/{created['id']}")).status_code == 404


async def test_endpoints_over_grpc(client, receiver):
    endpoints = event_pb2_grpc.EventEndpointServiceStub(client.channel)

    created = await endpoints.CreateEventEndpoint(event_pb2.CreateEventEndpointRequest(
        event_endpoint=event_pb2.EventEndpoint(url=receiver.url, event_types=["sync.health_changed"])
    ), metadata=client.metadata)
    listed = await endpoints.ListEventEndpoints(event_pb2.ListEventEndpointsRequest(), metadata=client.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await endpoints.CreateEventEndpoint(event_pb2.CreateEventEndpointRequest(
            event_endpoint=event_pb2.EventEndpoint(url="not a url")
        ), metadata=client.metadata)

    assert created.event_endpoint.secret.startswith("whsec_")
    assert [e.id for e in listed.data] == [created.event_endpoint.id]
    assert listed.data[0].secret == "***********"
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- delivering events ------------------------------------------------------------------------


async def test_an_event_is_posted_signed_with_the_endpoints_secret(server, client, receiver):
    endpoint = await make_endpoint(client, receiver.url)

    await raise_event(server, endpoint["org_id"], "connection.created", **connection("user-42"))

    await eventually(lambda: receiver.posts)
    ((_, post),) = receiver.posts
    assert post.method == "POST" and post.header("content-type") == "application/json"
    expected = "sha256=" + hmac.new(endpoint["secret"].encode(), post.body, hashlib.sha256).hexdigest()
    assert post.header("x-headwater-signature") == expected
    (event,) = events(receiver)
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["id"].startswith("evt_") and event["type"] == "connection.created"
    assert event["data"] == connection("user-42")
    await asyncio.sleep(0.3)
    assert len(receiver.posts) == 1  # a 2xx took it: never posted again


async def test_each_endpoint_gets_the_types_it_asked_for(server, client, receiver):
    every = await make_endpoint(client, receiver.url + "?every")
    await make_endpoint(client, receiver.url + "?syncs", event_types=["sync.health_changed"])

    await raise_event(server, every["org_id"], "connection.failed", provider="hubspot", end_user_id="u1",
                      message="HubSpot answered access_denied")
    await raise_event(server, every["org_id"], "sync.health_changed", sync_id="sync-1", credential_id="c1",
                      provider="hubspot", health={"status": "error"}, previous_status="healthy")

    await eventually(lambda: len(events(receiver)) == 3)
    await asyncio.sleep(0.2)
    got = sorted((post.query, event["type"]) for _, post in receiver.posts for event in json.loads(post.body)["data"])
    assert got == [("every", "connection.failed"), ("every", "sync.health_changed"), ("syncs", "sync.health_changed")]


async def test_an_endpoint_hears_only_of_events_raised_after_it_was_made(server, client, receiver):
    org_id = (await make_endpoint(client, receiver.url + "?first"))["org_id"]
    await raise_event(server, org_id, "connection.created", **connection("early"))
    await eventually(lambda: receiver.posts)

    await make_endpoint(client, receiver.url + "?second")
    await raise_event(server, org_id, "connection.created", **connection("late"))

    await eventually(lambda: len(receiver.posts) == 3)
    await asyncio.sleep(0.2)
    second = [post for _, post in receiver.posts if post.query == "second"]
    assert len(second) == 1 and b"late" in second[0].body and b"early" not in second[0].body


async def test_an_event_is_raised_only_if_what_raised_it_commits(server, client, receiver):
    org_id = (await make_endpoint(client, receiver.url))["org_id"]

    def raise_then_fail():
        emit(org_id, "connection.created", connection("user-1"))
        raise RuntimeError("what raised the event failed")

    with pytest.raises(RuntimeError):
        await server.server.store.run(raise_then_fail)
    await raise_event(server, org_id, "connection.created", **connection("user-2"))

    await eventually(lambda: receiver.posts)
    await asyncio.sleep(0.3)
    assert [e["data"]["end_user_id"] for e in events(receiver)] == ["user-2"]


async def test_a_failing_endpoint_is_retried_with_backoff_until_it_takes_the_event(server, client, receiver):
    endpoint = await make_endpoint(client, receiver.url)
    receiver.failures = [503, 500, 502]

    await raise_event(server, endpoint["org_id"], "connection.created", **connection("user-42"))

    await eventually(lambda: len(receiver.posts) == 4)
    times = [at for at, _ in receiver.posts]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195  # 50 ms, then doubling
    assert len({e["id"] for e in events(receiver)}) == 1  # the same event every time
    await asyncio.sleep(0.3)
    assert len(receiver.posts) == 4
    assert (await client.rest.get(f"/v1/event-endpoints/{endpoint['id']}/parked")).json()["data"] == []


async def test_events_posted_max_deliver_times_are_parked_and_redelivered_on_request(server, client, receiver):
    endpoint = await make_endpoint(client, receiver.url)
    receiver.failures = [500] * 8
    await raise_event(server, endpoint["org_id"], "connection.created", **connection("user-42"))

    async def parked():
        answer = (await client.rest.get(f"/v1/event-endpoints/{endpoint['id']}/parked")).json()["data"]
        return answer or None

    (parked_event,) = await eventually(parked)
    assert parked_event["deliver_count"] == 8 and len(receiver.posts) == 8
    assert parked_event["last_error"] == "HTTP 500 (delivered 8 times)"
    assert parked_event["event"]["type"] == "connection.created"
    assert parked_event["event"]["data"] == connection("user-42")

    redelivered = await client.rest.post(f"/v1/event-endpoints/{endpoint['id']}/redeliver",
                                         json={"parked_event_ids": [parked_event["id"]]})
    assert redelivered.json() == {"redelivered": 1}
    await eventually(lambda: len(receiver.posts) == 9)
    assert events(receiver)[-1]["id"] == parked_event["event"]["id"]
    assert await parked() is None  # taken this time


async def test_a_parked_event_id_that_is_not_one_is_refused(client, receiver):
    endpoint = await make_endpoint(client, receiver.url)

    response = await client.rest.post(f"/v1/event-endpoints/{endpoint['id']}/redeliver",
                                      json={"parked_event_ids": ["evt_1"]})

    assert response.status_code == 400
    assert response.json()["details"][0]["field_violations"][0]["field"] == "parked_event_ids[0]"


async def test_one_subjects_events_arrive_in_order_even_when_the_first_is_retried(server, client, receiver):
    endpoint = await make_endpoint(client, receiver.url)
    receiver.failures = [503]
    for status in ("error", "healthy"):
        await raise_event(server, endpoint["org_id"], "credential.health_changed", credential_id="cred-1",
                          provider="hubspot", health={"status": status})

    await eventually(lambda: len(events(receiver)) == 3)
    assert [e["data"]["health"]["status"] for e in events(receiver)] == ["error", "error", "healthy"]


def test_every_event_type_names_what_it_is_about():
    assert sorted(EVENT_TYPES) == [
        "connection.created", "connection.failed", "consumer.health_changed", "credential.health_changed",
        "credential.refresh_failed", "sync.health_changed",
    ]
