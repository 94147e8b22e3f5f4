"""Tokens and organisations: no call without a valid token, and no organisation sees another's data."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.api import annotations_pb2

from headwater.store import ApiToken
from headwater.v1 import credential_pb2, event_pb2, stream_pb2, sync_pb2
from test_syncs import create_sync, make_stream

SERVICES = [
    sync_pb2.DESCRIPTOR.services_by_name["SyncService"],
    credential_pb2.DESCRIPTOR.services_by_name["CredentialService"],
    stream_pb2.DESCRIPTOR.services_by_name["StreamService"],
    event_pb2.DESCRIPTOR.services_by_name["EventEndpointService"],
]


def every_rest_route():
    """(verb, path) for every REST route, path variables filled with a placeholder."""
    for service in SERVICES:
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            yield verb.upper(), getattr(rule, verb).replace("{id}", "some-id")


def every_grpc_method():
    for service in SERVICES:
        for method in service.methods:
            yield f"/{service.full_name}/{method.name}", method


@pytest.mark.parametrize("verb, path", list(every_rest_route()))
async def test_every_rest_path_requires_a_valid_token(server, verb, path):
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        missing = await anonymous.request(verb, path, json={} if verb in ("POST", "PATCH") else None)
        wrong = await anonymous.request(verb, path, headers={"authorization": "Bearer hw_not-a-token"})

    for response in (missing, wrong):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == 16
        assert response.json()["error"].startswith("Error: ")


@pytest.mark.parametrize("full_method, method", list(every_grpc_method()), ids=lambda v: v.rsplit("/")[-1] if isinstance(v, str) else v.full_name)
async def test_every_grpc_method_requires_a_valid_token(server, full_method, method):
    from google.protobuf import message_factory

    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(
            full_method, request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        for metadata in ((), (("authorization", "Bearer hw_wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request_class(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tokens_are_stored_hashed(server, client):
    stored = await server.server.store.run(lambda: [t.token_hash for t in ApiToken.select()])

    assert client.token not in stored
    assert all(len(h) == 64 for h in stored)


async def test_other_organisation_gets_not_found_on_every_rest_method(client, other_client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)
    credential_id = sync["credential_id"]
    intruder = other_client.rest

    calls = [
        intruder.get(f"/v1/syncs/{sync['id']}"),
        intruder.patch(f"/v1/syncs/{sync['id']}", json={"name": "mine now"}),
        intruder.delete(f"/v1/syncs/{sync['id']}"),
        intruder.get(f"/v1/credentials/{credential_id}"),
        intruder.patch(f"/v1/credentials/{credential_id}", json={"external_id": "mine"}),
        intruder.delete(f"/v1/credentials/{credential_id}"),
        intruder.get(f"/v1/streams/{stream_id}"),
        intruder.delete(f"/v1/streams/{stream_id}"),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404, (response.request.method, response.request.url)
        assert response.json()["code"] == 5

    for path in ("/v1/syncs", "/v1/credentials", "/v1/streams"):
        assert (await intruder.get(path)).json()["data"] == []
    assert (await client.rest.get(f"/v1/syncs/{sync['id']}")).json() == sync


async def test_other_organisation_cannot_attach_a_sync_to_foreign_stream_or_credential(client, other_client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)
    own_stream = await make_stream(other_client, "theirs")

    foreign_stream = await other_client.rest.post(
        "/v1/syncs", json={**{k: v for k, v in sync.items() if k in ("provider", "collection_ids")},
                           "stream_id": stream_id, "credential": {"properties": {"kind": "stripe_api_key", "secret": "s"}}}
    )
    foreign_credential = await other_client.rest.post(
        "/v1/syncs", json={"provider": "stripe", "collection_ids": ["stripe:customer"],
                           "stream_id": own_stream, "credential_id": sync["credential_id"]}
    )

    assert foreign_stream.status_code == 400 and "stream_id" in foreign_stream.text
    assert foreign_credential.status_code == 400 and "credential_id" in foreign_credential.text


async def test_other_organisation_gets_not_found_over_grpc(client, other_client):
    stream_id = await make_stream(client)
    sync = await create_sync(client, stream_id)
    md = other_client.metadata

    calls = [
        other_client.syncs.GetSync(sync_pb2.GetSyncRequest(id=sync["id"]), metadata=md),
        other_client.syncs.UpdateSync(sync_pb2.UpdateSyncRequest(id=sync["id"], sync=sync_pb2.Sync(name="x")), metadata=md),
        other_client.syncs.DeleteSync(sync_pb2.DeleteSyncRequest(id=sync["id"]), metadata=md),
        other_client.credentials.GetCredential(credential_pb2.GetCredentialRequest(id=sync["credential_id"]), metadata=md),
        other_client.credentials.UpdateCredential(
            credential_pb2.UpdateCredentialRequest(id=sync["credential_id"], credential=credential_pb2.Credential(external_id="x")),
            metadata=md),
        other_client.credentials.DeleteCredential(credential_pb2.DeleteCredentialRequest(id=sync["credential_id"]), metadata=md),
        other_client.streams.GetStream(stream_pb2.GetStreamRequest(id=stream_id), metadata=md),
        other_client.streams.DeleteStream(stream_pb2.DeleteStreamRequest(id=stream_id), metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("scheme", ["token", "Token", "TOKEN", "bearer"])
async def test_the_api_token_is_accepted_under_githubs_token_scheme_as_under_bearer(server, client, scheme):
    async with httpx.AsyncClient(base_url=server.http_url) as sdk:
        over_rest = await sdk.get("/v1/streams", headers={"authorization": f"{scheme} {client.token}"})
    over_grpc = await client.streams.ListStreams(
        stream_pb2.ListStreamsRequest(), metadata=(("authorization", f"{scheme} {client.token}"),)
    )

    assert over_rest.status_code == 200, over_rest.text
    assert over_rest.json() == {"data": [], "next_page_token": ""}
    assert list(over_grpc.data) == []


@pytest.mark.parametrize("header", ["Basic aHc6", "token", "hw_no_scheme", "Tokens hw_x"])
async def test_other_authorization_schemes_are_refused(server, client, header):
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        response = await anonymous.get("/v1/streams", headers={"authorization": header})

    assert response.status_code == 401, response.text
