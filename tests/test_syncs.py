"""Syncs over REST and gRPC: the documented create call, reads, pagination, partial updates."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from headwater.v1 import common_pb2, credential_pb2, stream_pb2, sync_pb2


async def make_stream(client, name="main") -> str:
    response = await client.rest.post("/v1/streams", json={"name": name})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def documented_body(stream_id: str, oauth_app_id: str | None = None) -> dict:
    """The create-sync body from the public documentation, with the stream id filled in, and the
    OAuth app's id: the documented "..." names no app (a credential's app must exist), so the key
    is left out unless `oauth_app_id` names one."""
    body = {
        "provider": "stripe",
        "stream_id": stream_id,
        "name": "Choam Corp - Stripe Production",
        "collection_ids": ["stripe:customer", "stripe:invoice"],
        "rate_limit": {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0},
        "credential": {
            "properties": {
                "kind": "stripe_oauth2",
                "secret": "sk_live_...",
                "test": True,
                "name": "Choam Corp - Stripe [Test]",
            },
            "oauth_app_id": oauth_app_id,
            "metadata": {"custom_credential_property": 42},
        },
        "metadata": {"custom_property": 42},
        "external_id": "...",
    }
    if oauth_app_id is None:
        del body["credential"]["oauth_app_id"]
    return body


async def make_stripe_app(client) -> str:
    response = await client.rest.post("/v1/oauth-apps", json={
        "provider": "stripe", "client_id": "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb", "client_secret": "sk_live_platform",
    })
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def create_sync(client, stream_id: str, **overrides) -> dict:
    body = documented_body(stream_id) | overrides
    response = await client.rest.post("/v1/syncs", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_documented_create_call_answers_the_documented_sync_object(client):
    stream_id = await make_stream(client)
    app_id = await make_stripe_app(client)

    response = await client.rest.post(
        "/v1/syncs",
        content=(
            '{"provider":"stripe","stream_id":"%s","name":"Choam Corp - Stripe Production",'
            '"collection_ids":["stripe:customer","stripe:invoice"],'
            '"rate_limit":{"allowed_requests":100,"interval":60,"max_concurrent_requests":0},'
            '"credential":{"properties":{"kind":"stripe_oauth2","secret":"sk_live_...","test":true,'
            '"name":"Choam Corp - Stripe [Test]"},"oauth_app_id":"%s",'
            '"metadata":{"custom_credential_property":42}},'
            '"metadata":{"custom_property":42},"external_id":"..."}' % (stream_id, app_id)
        ),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200, response.text
    sync = response.json()
    assert list(sync) == [  # the documented fields, in the documented order
        "id", "provider", "stream_id", "name", "status", "org_id", "health", "collection_ids",
        "rate_limit", "credential_id", "credential", "max_age_days", "sync_frequency",
        "initial_backfill_completed_at", "metadata", "external_id", "created_at", "updated_at",
        "progress",  # Headwater's addition: the sync engine's progress per collection
    ]
    assert [p["backfill_state"] for p in sync["progress"]] == ["pending", "pending"]
    assert sync["provider"] == "stripe"
    assert sync["stream_id"] == stream_id
    assert sync["name"] == "Choam Corp - Stripe Production"
    assert sync["status"] == "active"
    assert sync["health"]["status"] == "healthy"
    assert sync["health"]["sync_id"] == sync["id"]
    assert sync["collection_ids"] == ["stripe:customer", "stripe:invoice"]
    assert sync["rate_limit"] == {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0}
    assert sync["max_age_days"] is None
    assert sync["sync_frequency"] == "continuous"
    assert sync["initial_backfill_completed_at"] is None
    assert sync["metadata"] == {"custom_property": 42}
    assert type(sync["metadata"]["custom_property"]) is int  # as sent, not 42.0
    assert sync["external_id"] == "..."
    credential = sync["credential"]
    assert credential["id"] == sync["credential_id"]
    assert credential["provider"] == "stripe"
    assert credential["properties"] == {
        "kind": "stripe_oauth2", "secret": "***********", "test": True, "name": "Choam Corp - Stripe [Test]",
    }
    assert credential["oauth_app_id"] == app_id
    assert credential["oauth_app"] == {"id": app_id, "kind": "custom", "provider": "stripe",
                                       "client_id": "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb"}
    assert credential["metadata"] == {"custom_credential_property": 42}
    assert credential["created_at"] and credential["updated_at"]
    assert sync["created_at"].endswith("Z")


async def test_sync_created_over_grpc_reads_back_over_rest(client):
    stream_id = await make_stream(client)
    credential = credential_pb2.Credential()
    credential.properties.update({"kind": "hubspot_private_app", "access_token": "pat-na1-secret"})

    created = await client.syncs.CreateSync(
        sync_pb2.CreateSyncRequest(
            sync=sync_pb2.Sync(
                provider="hubspot", stream_id=stream_id, name="Acme HubSpot",
                collection_ids=["hubspot:contact", "hubspot:deal"], credential=credential,
            )
        ),
        metadata=client.metadata,
    )

    sync = created.sync
    assert sync.id and sync.credential_id
    assert sync.rate_limit == common_pb2.RateLimit(  # provider default: 100 per 10 s and 250,000 a day
        allowed_requests=100, interval=10, windows=[common_pb2.RateWindow(allowed_requests=250_000, interval=86_400)]
    )
    assert sync.credential.properties["access_token"] == "***********"
    read = (await client.rest.get(f"/v1/syncs/{sync.id}")).json()
    assert read["name"] == "Acme HubSpot"
    assert read["collection_ids"] == ["hubspot:contact", "hubspot:deal"]


async def test_sync_can_use_an_existing_credential_by_id(client):
    stream_id = await make_stream(client)
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "github", "properties": {"kind": "github_token", "token": "ghp_secret"},
    })).json()
    body = documented_body(stream_id) | {
        "provider": "github", "collection_ids": ["github:issue"], "credential_id": credential["id"],
    }
    del body["credential"]

    response = await client.rest.post("/v1/syncs", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["credential_id"] == credential["id"]
    assert response.json()["credential"]["properties"]["token"] == "***********"


async def test_get_answers_the_bare_sync_over_rest_and_wrapped_over_grpc(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    rest = (await client.rest.get(f"/v1/syncs/{sync['id']}")).json()
    grpc_answer = await client.syncs.GetSync(sync_pb2.GetSyncRequest(id=sync["id"]), metadata=client.metadata)

    assert rest == sync
    assert grpc_answer.sync.id == sync["id"]
    assert grpc_answer.sync.name == sync["name"]


async def test_list_pages_through_every_sync_once_in_creation_order(client):
    stream_id = await make_stream(client)
    created = [(await create_sync(client, stream_id, name=f"sync {i}"))["id"] for i in range(7)]

    seen, token, pages = [], "", 0
    while True:
        params = {"page_size": 3} | ({"page_token": token} if token else {})
        page = (await client.rest.get("/v1/syncs", params=params)).json()
        assert set(page) == {"data", "next_page_token"}
        seen += [s["id"] for s in page["data"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break

    assert seen == created
    assert pages == 3


async def test_list_over_grpc_pages_the_same_way(client):
    stream_id = await make_stream(client)
    created = [(await create_sync(client, stream_id, name=f"sync {i}"))["id"] for i in range(3)]

    first = await client.syncs.ListSyncs(sync_pb2.ListSyncsRequest(page_size=2), metadata=client.metadata)
    second = await client.syncs.ListSyncs(
        sync_pb2.ListSyncsRequest(page_size=2, page_token=first.next_page_token), metadata=client.metadata
    )

    assert [s.id for s in first.data] + [s.id for s in second.data] == created
    assert second.next_page_token == ""


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"external_id": "cus-2"}, ["two"]),
        ({"provider": "hubspot"}, ["three"]),
        ({"name": "one"}, ["one"]),
        ({"health.status": "healthy"}, ["one", "two", "three"]),
        ({"health.status": "error"}, []),
    ],
)
async def test_list_filters(client, params, expected):
    stream_id = await make_stream(client)
    await create_sync(client, stream_id, name="one", external_id="cus-1")
    await create_sync(client, stream_id, name="two", external_id="cus-2")
    await create_sync(client, stream_id, name="three", provider="hubspot", collection_ids=["hubspot:contact"],
                      credential={"properties": {"kind": "hubspot_oauth2", "access_token": "x"}})

    page = (await client.rest.get("/v1/syncs", params=params)).json()

    assert [s["name"] for s in page["data"]] == expected


async def test_patch_changes_only_the_fields_sent(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    response = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"name": "Renamed"})

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert {k: v for k, v in updated.items() if k not in ("name", "updated_at")} == {
        k: v for k, v in sync.items() if k not in ("name", "updated_at")
    }
    assert updated["updated_at"] >= sync["updated_at"]


async def test_patch_can_change_one_rate_limit_number_status_and_metadata(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    updated = (await client.rest.patch(f"/v1/syncs/{sync['id']}", json={
        "rate_limit": {"allowed_requests": 10}, "status": "disabled", "metadata": {"tier": "gold"},
    })).json()

    assert updated["rate_limit"] == {"allowed_requests": 10, "interval": 60, "max_concurrent_requests": 0}
    assert updated["status"] == "disabled"
    assert updated["metadata"] == {"tier": "gold"}
    assert (await client.rest.get(f"/v1/syncs/{sync['id']}")).json() == updated


async def test_patch_over_grpc_follows_the_update_mask(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    answer = await client.syncs.UpdateSync(
        sync_pb2.UpdateSyncRequest(
            id=sync["id"],
            sync=sync_pb2.Sync(name="ignored, not in mask", sync_frequency="4h"),
            update_mask=field_mask_pb2.FieldMask(paths=["sync_frequency"]),
        ),
        metadata=client.metadata,
    )

    assert answer.sync.sync_frequency == "4h"
    assert answer.sync.name == sync["name"]


@pytest.mark.parametrize("field, value", [
    ("provider", "hubspot"),
    ("stream_id", "another-stream"),
    ("credential", {"properties": {"kind": "stripe_oauth2", "secret": "sk_new"}}),
])
async def test_patch_refuses_to_change_provider_stream_or_credential(client, field, value):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    response = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={field: value})

    assert response.status_code == 400
    assert response.json()["details"][0]["field_violations"][0]["field"] == f"sync.{field}"
    assert "cannot change" in response.json()["message"]
    assert (await client.rest.get(f"/v1/syncs/{sync['id']}")).json() == sync


async def test_patch_accepts_the_unchanged_provider_sent_back(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    response = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"provider": "stripe", "name": "x"})

    assert response.status_code == 200, response.text


async def test_delete_removes_the_sync_but_keeps_its_credential_and_stream(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    response = await client.rest.delete(f"/v1/syncs/{sync['id']}")

    assert response.status_code == 200
    assert response.json() == {"id": sync["id"], "deleted": True}
    assert (await client.rest.get(f"/v1/syncs/{sync['id']}")).status_code == 404
    assert (await client.rest.get(f"/v1/credentials/{sync['credential_id']}")).status_code == 200
    assert (await client.rest.get(f"/v1/streams/{stream_id}")).status_code == 200


async def test_delete_over_grpc_then_get_is_not_found(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    await client.syncs.DeleteSync(sync_pb2.DeleteSyncRequest(id=sync["id"]), metadata=client.metadata)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.syncs.GetSync(sync_pb2.GetSyncRequest(id=sync["id"]), metadata=client.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stream_created_over_grpc_is_usable_for_a_sync(client):
    stream = (await client.streams.CreateStream(
        stream_pb2.CreateStreamRequest(stream=stream_pb2.Stream(name="grpc-made")), metadata=client.metadata
    )).stream

    sync = await create_sync(client, stream.id)

    assert sync["stream_id"] == stream.id
