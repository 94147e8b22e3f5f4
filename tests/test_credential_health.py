"""Credential health: a refresh the provider refuses for good turns the credential, and the syncs
using it, to `error`, and the organisation's event endpoints hear of it; new tokens or a refresh
that works again make them healthy.

The token endpoint is the recording upstream's (tests/emulators.py: `/oauth/token` answers 400
invalid_grant to a refresh token it does not hold), or the HubSpot emulator's for the sync engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest
from conftest import Running, _client_for, settings_for
from sync_support import FAST_ENGINE, backfilled, eventually, get_sync
from test_event_endpoints import events, make_endpoint
from test_webhooks import Receiver, receiver  # noqa: F401 (receiver: a fixture)

from headwater.server import Server


async def start(database_url: str, **settings) -> tuple[Running, object]:
    settings = settings_for(database_url, webhook_retry_seconds=0.05, **settings)
    running = Running(await Server.start(settings), settings)
    return running, await _client_for(running, "acme")


async def stop(running: Running, client) -> None:
    await client.rest.aclose()
    await client.channel.close()
    await running.server.stop(grace=1)


@pytest.fixture
async def acme(database_url):
    """A server (no sync engine) and a client of organisation 'acme'."""
    running, client = await start(database_url)
    yield running, client
    await stop(running, client)


def hubspot_credential(token_url: str, base_url: str, **properties) -> dict:
    """An OAuth2 HubSpot account whose access token has expired: the next call refreshes it."""
    return {"properties": {
        "kind": "hubspot_oauth2", "access_token": "at-old", "refresh_token": "rt-0", "client_id": "app-1",
        "client_secret": "shh", "expires_at": int(time.time()) - 10, "base_url": base_url, "token_url": token_url,
        **properties,
    }}


async def hubspot_sync(client, credential: dict | None = None, credential_id: str | None = None) -> dict:
    """A HubSpot sync with a new credential (of the user "user-42"), or with an existing one."""
    stream = await client.rest.post("/v1/streams", json={"name": f"stream-{time.monotonic_ns()}"})
    account = {"credential_id": credential_id} if credential_id else {"credential": {"external_id": "user-42", **credential}}
    response = await client.rest.post("/v1/syncs", json={
        "provider": "hubspot", "stream_id": stream.json()["id"], "collection_ids": ["hubspot:contact"],
        "external_id": "acct-7", **account,
    })
    assert response.status_code == 200, response.text
    return response.json()


async def health_of(client, kind: str, id_: str) -> dict:
    response = await client.rest.get(f"/v1/{kind}/{id_}")
    assert response.status_code == 200, response.text
    return response.json()["health"]


def by_type(receiver: Receiver) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for event in events(receiver):
        found.setdefault(event["type"], []).append(event["data"])
    return found


async def test_a_refresh_answered_invalid_grant_turns_the_credential_and_its_sync_to_error(acme, upstream, receiver):
    running, client = acme
    endpoint = await make_endpoint(client, receiver.url)
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
    credential_id = sync["credential_id"]
    upstream.refresh_token = "rotated-elsewhere"  # the provider no longer knows rt-0

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

    assert response.status_code == 401
    note = response.json()["message"]
    assert note.startswith("HubSpot refused the credential's refresh token (HTTP 400 invalid_grant)")
    assert "reconnect the account" in note
    credential = await health_of(client, "credentials", credential_id)
    assert credential["status"] == "error" and credential["last_error"] == note and credential["last_error_at"]
    synced = await health_of(client, "syncs", sync["id"])
    assert synced == {"status": "error", "sync_id": sync["id"], "last_error": note,
                      "last_error_at": synced["last_error_at"]}

    await eventually(lambda: len(events(receiver)) == 3)
    told = by_type(receiver)
    assert told["credential.refresh_failed"] == [
        {"credential_id": credential_id, "provider": "hubspot", "external_id": "user-42", "message": note},
    ]
    (changed,) = told["credential.health_changed"]
    assert changed == {"credential_id": credential_id, "provider": "hubspot", "external_id": "user-42",
                       "previous_status": "healthy", "health": {"status": "error", "last_error": note,
                                                                "last_error_at": changed["health"]["last_error_at"]}}
    (sync_changed,) = told["sync.health_changed"]
    assert sync_changed == {"sync_id": sync["id"], "credential_id": credential_id, "provider": "hubspot",
                            "external_id": "acct-7", "previous_status": "healthy",
                            "health": {"status": "error", "last_error": note,
                                       "last_error_at": sync_changed["health"]["last_error_at"]}}
    for _, post in receiver.posts:  # every POST signed with the endpoint's secret
        expected = "sha256=" + hmac.new(endpoint["secret"].encode(), post.body, hashlib.sha256).hexdigest()
        assert post.header("x-headwater-signature") == expected
    assert b"rt-0" not in b"".join(post.body for _, post in receiver.posts)  # no token in an event


async def test_a_token_endpoint_that_cannot_answer_is_no_refusal(acme, upstream, receiver):
    running, client = acme
    await make_endpoint(client, receiver.url)
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/status/503", upstream.base_url))

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

    assert response.status_code == 502
    assert "try again" in response.json()["message"] and "reconnect" not in response.json()["message"]
    assert (await health_of(client, "credentials", sync["credential_id"]))["status"] == "healthy"
    assert (await health_of(client, "syncs", sync["id"]))["status"] == "healthy"
    await asyncio.sleep(0.3)
    assert receiver.posts == []


async def test_a_refused_refresh_token_is_not_tried_again_within_a_minute(acme, upstream):
    running, client = acme
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
    upstream.refresh_token = "rotated-elsewhere"

    first = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")
    second = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

    assert first.status_code == second.status_code == 401
    assert second.json()["message"] == first.json()["message"]
    assert [r.path for r in upstream.requests] == ["/oauth/token"]  # the second call asked nobody


async def test_new_tokens_patched_in_make_the_credential_and_its_syncs_healthy_again(acme, upstream, receiver):
    running, client = acme
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
    upstream.refresh_token = "rt-reissued"
    refused = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")
    assert refused.status_code == 401
    await make_endpoint(client, receiver.url, event_types=["credential.health_changed", "sync.health_changed"])

    patched = await client.rest.patch(f"/v1/credentials/{sync['credential_id']}",
                                      json={"properties": {"refresh_token": "rt-reissued"}})

    assert patched.status_code == 200, patched.text
    health = patched.json()["health"]
    assert health["status"] == "healthy"
    assert health["last_error"] == refused.json()["message"]  # the last error and its time stay visible
    assert (await health_of(client, "syncs", sync["id"]))["status"] == "healthy"
    await eventually(lambda: len(events(receiver)) == 2)
    told = by_type(receiver)
    assert [(e["previous_status"], e["health"]["status"]) for e in told["credential.health_changed"]] == [
        ("error", "healthy")]
    assert [(e["previous_status"], e["health"]["status"]) for e in told["sync.health_changed"]] == [
        ("error", "healthy")]
    # and the new refresh token works
    assert (await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")).status_code == 200


async def test_a_patch_that_leaves_the_secrets_as_they_were_does_not_clear_the_error(acme, upstream):
    running, client = acme
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
    upstream.refresh_token = "rotated-elsewhere"
    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

    patched = await client.rest.patch(f"/v1/credentials/{sync['credential_id']}",
                                      json={"metadata": {"note": "looked at it"}, "properties": {"refresh_token": "***********"}})

    assert patched.status_code == 200, patched.text
    assert patched.json()["health"]["status"] == "error"


async def test_a_refresh_that_works_again_makes_the_credential_healthy(database_url, upstream, receiver):
    """The token endpoint refused the refresh (a client secret revoked, say) and accepts it again
    once that is fixed: the next refresh, a retry interval later, succeeds."""
    running, client = await start(database_url, refused_refresh_retry_seconds=0.2)
    try:
        sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
        upstream.refresh_token = "rotated-elsewhere"
        assert (await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")).status_code == 401
        await make_endpoint(client, receiver.url, event_types=["credential.health_changed"])

        upstream.refresh_token = "rt-0"
        await asyncio.sleep(0.3)
        response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

        assert response.status_code == 200, response.text
        assert (await health_of(client, "credentials", sync["credential_id"]))["status"] == "healthy"
        assert (await health_of(client, "syncs", sync["id"]))["status"] == "healthy"
        await eventually(lambda: events(receiver))
        assert [e["data"]["health"]["status"] for e in events(receiver)] == ["healthy"]
    finally:
        await stop(running, client)


async def test_a_new_sync_on_a_credential_in_error_is_in_error_at_once(acme, upstream):
    running, client = acme
    sync = await hubspot_sync(client, hubspot_credential(f"{upstream.base_url}/oauth/token", upstream.base_url))
    upstream.refresh_token = "rotated-elsewhere"
    await client.rest.get(f"/v1/proxy/sync/{sync['id']}/protected")

    second = await hubspot_sync(client, credential_id=sync["credential_id"])

    assert second["health"]["status"] == "error"
    assert second["health"]["last_error"].startswith("HubSpot refused the credential's refresh token")


# --- through the sync engine -------------------------------------------------------------------


@pytest.fixture
async def engine_with_endpoint(database_url, receiver):
    running, client = await start(database_url, **FAST_ENGINE)
    await make_endpoint(client, receiver.url, event_types=["sync.health_changed", "credential.health_changed"])
    yield running, client
    await stop(running, client)


async def test_a_sync_whose_refresh_hubspot_refuses_is_in_error_until_new_tokens_come(
    engine_with_endpoint, fake_provider, receiver
):
    running, client = engine_with_endpoint
    hubspot = await fake_provider("hubspot")
    hubspot.seed("contacts", n=3)
    credential = hubspot_credential(f"{hubspot.base_url}/oauth/v1/token", hubspot.base_url, refresh_token="revoked")
    sync = await hubspot_sync(client, credential)

    async def in_error():
        health = (await get_sync(client, sync["id"]))["health"]
        return health if health["status"] == "error" else None

    health = await eventually(in_error)
    assert health["last_error"].startswith("HubSpot refused the credential's refresh token (HTTP 400)")
    await eventually(lambda: len(events(receiver)) == 2)

    patched = await client.rest.patch(f"/v1/credentials/{sync['credential_id']}",
                                      json={"properties": {"refresh_token": hubspot.refresh_token}})
    assert patched.status_code == 200, patched.text
    done = await eventually(lambda: backfilled(client, sync["id"]))
    assert done["health"]["status"] == "healthy"
    await eventually(lambda: len(events(receiver)) == 4)
    told = [(e["type"], e["data"]["health"]["status"]) for e in events(receiver)]
    assert sorted(told[:2]) == [("credential.health_changed", "error"), ("sync.health_changed", "error")]
    assert sorted(told[2:]) == [("credential.health_changed", "healthy"), ("sync.health_changed", "healthy")]


async def test_the_sync_engine_tells_endpoints_when_a_syncs_health_changes(engine_with_endpoint, fake_provider, receiver):
    running, client = engine_with_endpoint
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=3)
    stream = (await client.rest.post("/v1/streams", json={"name": "payments"})).json()
    sync = (await client.rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream["id"], "collection_ids": ["stripe:customer"],
        "credential": {"properties": {"kind": "stripe_api_key", "secret": "sk_test_revoked", "base_url": stripe.base_url}},
    })).json()

    (went_wrong,) = await eventually(lambda: events(receiver))
    assert went_wrong["type"] == "sync.health_changed"
    assert went_wrong["data"]["previous_status"] == "healthy" and went_wrong["data"]["health"]["status"] == "error"
    assert "rejected credential" in went_wrong["data"]["health"]["last_error"]

    await client.rest.patch(f"/v1/credentials/{sync['credential_id']}", json={"properties": {"secret": stripe.token}})
    await eventually(lambda: len(events(receiver)) == 2)
    recovered = events(receiver)[1]
    assert (recovered["type"], recovered["data"]["health"]["status"]) == ("sync.health_changed", "healthy")
    await asyncio.sleep(0.5)
    assert len(events(receiver)) == 2  # one event per change, not one per failed read
    assert json.dumps(events(receiver)).count("sk_test_revoked") == 0
