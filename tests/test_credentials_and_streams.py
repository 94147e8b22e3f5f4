"""Credentials (secrets encrypted, never shown) and streams (the logs syncs write to)."""

from __future__ import annotations

import json
import logging

from headwater.store import Credential
from test_syncs import create_sync, make_stream

SECRET = "sk_live_TOPSECRET_4242"


async def test_credential_secrets_are_masked_in_every_answer(client):
    created = await client.rest.post("/v1/credentials", json={
        "provider": "stripe", "external_id": "user-7",
        "properties": {"kind": "stripe_api_key", "secret": SECRET, "account": "acct_1"},
    })
    credential_id = created.json()["id"]

    answers = [
        created,
        await client.rest.get(f"/v1/credentials/{credential_id}"),
        await client.rest.get("/v1/credentials"),
        await client.rest.patch(f"/v1/credentials/{credential_id}", json={"external_id": "user-8"}),
    ]

    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
    assert created.json()["properties"] == {"kind": "stripe_api_key", "secret": "***********", "account": "acct_1"}


async def test_secrets_are_encrypted_at_rest(server, client):
    await client.rest.post("/v1/credentials", json={
        "provider": "stripe", "properties": {"kind": "stripe_api_key", "secret": SECRET},
    })

    rows = await server.server.store.run(lambda: list(Credential.select().dicts()))

    assert rows and SECRET not in json.dumps(rows, default=str)


async def test_secrets_never_reach_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    stream_id = await make_stream(client)

    await create_sync(client, stream_id, credential={"properties": {"kind": "stripe_oauth2", "secret": SECRET}})
    await client.rest.post("/v1/credentials", json={"provider": "stripe", "properties": {"kind": "bad", "secret": SECRET}})

    assert SECRET not in caplog.text


async def test_credential_patch_merges_properties_and_keeps_masked_secrets(client):
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "salesforce",
        "properties": {"kind": "salesforce_oauth2", "access_token": "at-1", "refresh_token": "rt-1",
                       "instance_url": "https://acme.my.salesforce.com"},
    })).json()

    # Send back what a GET shows, changing only the instance URL.
    props = credential["properties"] | {"instance_url": "https://acme--sandbox.my.salesforce.com"}
    updated = await client.rest.patch(f"/v1/credentials/{credential['id']}", json={"properties": props})

    assert updated.status_code == 200, updated.text
    assert updated.json()["properties"] == {
        "kind": "salesforce_oauth2", "access_token": "***********", "refresh_token": "***********",
        "instance_url": "https://acme--sandbox.my.salesforce.com",
    }


async def test_credential_patch_cannot_drop_a_required_property(client):
    credential = (await client.rest.post("/v1/credentials", json={
        "provider": "github", "properties": {"kind": "github_token", "token": "ghp_1"},
    })).json()

    response = await client.rest.patch(f"/v1/credentials/{credential['id']}", json={"properties": {"token": None}})

    assert response.status_code == 400
    assert "credential.properties.token" in response.text


async def test_credential_in_use_cannot_be_deleted(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    refused = await client.rest.delete(f"/v1/credentials/{sync['credential_id']}")
    await client.rest.delete(f"/v1/syncs/{sync['id']}")
    allowed = await client.rest.delete(f"/v1/credentials/{sync['credential_id']}")

    assert refused.status_code == 400
    assert sync["id"] in refused.json()["message"]
    assert allowed.status_code == 200
    assert allowed.json() == {"id": sync["credential_id"], "deleted": True}


async def test_credential_validation_names_the_field(client):
    cases = [
        ({"properties": {"kind": "stripe_api_key", "secret": "s"}}, "credential.provider"),
        ({"provider": "nope", "properties": {"kind": "x"}}, "credential.provider"),
        ({"provider": "stripe", "properties": {"kind": "github_token"}}, "credential.properties.kind"),
        ({"provider": "custom", "properties": {"kind": "custom_bearer", "token": "t"}}, "credential.properties.base_url"),
        ({"provider": "stripe", "properties": {"kind": "stripe_api_key", "secret": "s", "base_url": "ftp://x"}},
         "credential.properties.base_url"),
    ]
    for body, field in cases:
        response = await client.rest.post("/v1/credentials", json=body)
        assert response.status_code == 400, body
        assert field in response.text, (body, response.text)
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []


async def test_credentials_list_filters_by_provider_and_external_id(client):
    for provider, kind, prop, external_id in [
        ("stripe", "stripe_api_key", "secret", "u1"), ("github", "github_token", "token", "u1"),
        ("github", "github_token", "token", "u2"),
    ]:
        await client.rest.post("/v1/credentials", json={
            "provider": provider, "external_id": external_id, "properties": {"kind": kind, prop: "s"}})

    github = (await client.rest.get("/v1/credentials", params={"provider": "github"})).json()["data"]
    u1 = (await client.rest.get("/v1/credentials", params={"external_id": "u1"})).json()["data"]

    assert [c["external_id"] for c in github] == ["u1", "u2"]
    assert sorted(c["provider"] for c in u1) == ["github", "stripe"]


async def test_streams_create_get_list_delete(client):
    created = (await client.rest.post("/v1/streams", json={"name": "orders"})).json()

    assert set(created) == {"id", "org_id", "name", "created_at", "updated_at", "retention_days"}
    assert created["retention_days"] == 7
    assert (await client.rest.get(f"/v1/streams/{created['id']}")).json() == created
    assert (await client.rest.get("/v1/streams")).json() == {"data": [created], "next_page_token": ""}
    assert (await client.rest.delete(f"/v1/streams/{created['id']}")).json() == {"id": created["id"], "deleted": True}
    assert (await client.rest.get(f"/v1/streams/{created['id']}")).status_code == 404


async def test_stream_names_are_unique_and_required(client):
    await client.rest.post("/v1/streams", json={"name": "orders"})

    duplicate = await client.rest.post("/v1/streams", json={"name": "orders"})
    nameless = await client.rest.post("/v1/streams", json={})

    assert duplicate.status_code == 409
    assert nameless.status_code == 400 and "stream.name" in nameless.text


async def test_stream_written_by_a_sync_cannot_be_deleted(client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)

    refused = await client.rest.delete(f"/v1/streams/{stream_id}")

    assert refused.status_code == 400
    assert sync["id"] in refused.json()["message"]
