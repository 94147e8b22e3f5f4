"""Hostile input: every request the server cannot take answers 400 (or 404, 413, 415) with the
documented error body naming what is wrong, over REST and gRPC, on SQLite and PostgreSQL, and
writes nothing. None answers 500 / INTERNAL / UNKNOWN, whoever sends it (a caller without a token
too), and no error echoes unbounded input.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import math
import zlib

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from headwater.store.models import ALL_MODELS
from headwater.v1 import credential_pb2, mutation_pb2, sync_pb2
from test_connected_users import key_pair, user_token
from test_syncs import documented_body, make_stream

JSON = {"content-type": "application/json"}


async def table_rows(server) -> dict[str, int]:
    """The number of rows of every table: what "nothing written" is checked against."""
    return await server.server.store.run(lambda: {m.__name__: m.select().count() for m in ALL_MODELS})


def refused_fields(response: httpx.Response, status: int = 400) -> list[str]:
    """The documented error body's field violations (asserting the status and the body's shape)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "docs", "code", "message", "details"}, body
    assert body["error"] == f"Error: {body['message']}"
    bad_request = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    return [v["field"] for d in bad_request for v in d["field_violations"]]


def grpc_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


async def grpc_refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def anonymous(client) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=str(client.rest.base_url))


# --- NUL characters ----------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/syncs/a%00b"),
    ("DELETE", "/v1/credentials/%00"),
    ("GET", "/v1/streams/x%00"),
    ("GET", "/v1/http-consumers/%00/next"),
    ("GET", "/v1/projects/%00"),
])
async def test_a_nul_character_in_a_path_id_is_refused_naming_the_id(server, client, method, path):
    response = await client.rest.request(method, path)

    assert refused_fields(response) == ["id"]
    assert "NUL" in response.json()["message"]


async def test_a_nul_character_in_json_strings_is_refused_naming_each_field(server, client):
    stream_id = await make_stream(client)
    before = await table_rows(server)
    body = documented_body(stream_id) | {"name": "a\x00b", "external_id": "\x00", "metadata": {"k\x00": "v\x00"}}

    response = await client.rest.post("/v1/syncs", json=body)

    assert set(refused_fields(response)) == {"sync.name", "sync.external_id", "sync.metadata"}
    assert await table_rows(server) == before


@pytest.mark.parametrize("params, field", [
    ({"external_id": "user\x00"}, "external_id"),
    ({"provider": "\x00"}, "provider"),
    ({"health.status": "healthy\x00"}, "health.status"),
])
async def test_a_nul_character_in_a_query_filter_is_refused(client, params, field):
    assert refused_fields(await client.rest.get("/v1/syncs", params=params)) == [field]


def page_token(created_at: str, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, row_id]).encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    page_token("2024-01-01T00:00:00", "row\x00"),
    page_token("2024-01-01T00:00:00+02:00", "row"),  # we only issue naive UTC times
    page_token("2024-01-01T00:00:00", "r" * 300),
])
async def test_a_page_token_we_did_not_issue_is_refused(client, token):
    assert refused_fields(await client.rest.get("/v1/syncs", params={"page_token": token})) == ["page_token"]


@pytest.mark.parametrize("token", ["²", "1" * 40, "-1"])
async def test_a_parked_messages_page_token_that_is_not_ours_is_refused(client, token):
    response = await client.rest.get("/v1/http-consumers/c1/parked", params={"page_token": token})

    assert refused_fields(response) == ["page_token"]


async def test_redelivering_message_ids_that_are_not_ours_lists_each_of_them(client):
    response = await client.rest.post("/v1/http-consumers/c1/redeliver", json={"message_ids": ["²", "9" * 40, "3"]})

    assert refused_fields(response) == ["message_ids[0]", "message_ids[1]"]


async def test_a_nul_character_in_ack_tokens_is_refused(server, client):
    response = await client.rest.post("/v1/http-consumers/c1/ack", json={"ack_tokens": ["ok", "bad\x00"]})

    assert refused_fields(response) == ["ack_tokens[1]"]


async def test_a_nul_character_in_the_idempotency_key_is_refused(server, client):
    body = {"kind": "create", "sync_id": "s", "collection_id": "stripe:customer", "records": [{"data": {"a": 1}}]}

    in_the_body = await client.rest.post("/v1/mutations/run", json=body | {"idempotency_key": "a\x00b"})
    # In a header, aiohttp's parser refuses the NUL itself (httpx would not even send it).
    reader, writer = await asyncio.open_connection(client.rest.base_url.host, client.rest.base_url.port)
    writer.write(b"POST /v1/mutations/run HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x00b\r\nContent-Length: 0\r\n\r\n")
    in_a_header = await reader.read()
    writer.close()

    assert refused_fields(in_the_body) == ["idempotency_key"]
    assert in_a_header.startswith(b"HTTP/1.0 400 ") or in_a_header.startswith(b"HTTP/1.1 400 "), in_a_header[:100]


async def test_a_nul_character_in_a_project_id_is_refused_before_authentication(client):
    async with anonymous(client) as nobody:
        response = await nobody.get("/projects/p%00/sdk/proxy/salesforce/services/data")

    assert refused_fields(response) == ["connected_user.project_id"]


async def test_a_user_token_whose_sub_holds_a_nul_finds_no_account(client):
    private, public_pem = key_pair()
    project = (await client.rest.post("/v1/projects", json={"name": "App", "signing_public_key": public_pem})).json()

    token = user_token(private, "user\x00-42")

    async with anonymous(client) as app:
        response = await app.get(
            f"/projects/{project['id']}/sdk/proxy/salesforce/services/data", headers={"authorization": f"Bearer {token}"}
        )

    assert response.status_code == 404, response.text
    assert response.json()["code"] == 5


async def test_a_nul_character_over_grpc_is_invalid_argument_naming_the_field(client):
    error = await grpc_refusal(client.syncs.GetSync(sync_pb2.GetSyncRequest(id="\x00"), metadata=client.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == ["id"]


# --- strings longer than their column --------------------------------------------------------


async def test_names_and_external_ids_longer_than_255_characters_are_refused(server, client):
    stream_id = await make_stream(client)
    before = await table_rows(server)

    response = await client.rest.post(
        "/v1/syncs", json=documented_body(stream_id) | {"name": "n" * 256, "external_id": "e" * 300}
    )
    streamed = await client.rest.post("/v1/streams", json={"name": "s" * 256})

    assert set(refused_fields(response)) == {"sync.name", "sync.external_id"}
    assert "at most 255 characters" in response.json()["message"]
    assert refused_fields(streamed) == ["stream.name"]
    assert await table_rows(server) == before


async def test_255_characters_are_accepted(client):
    response = await client.rest.post("/v1/streams", json={"name": "s" * 255})

    assert response.status_code == 200, response.text


async def test_a_two_million_character_id_answers_a_short_error_over_grpc(client):
    error = await grpc_refusal(
        client.syncs.GetSync(sync_pb2.GetSyncRequest(id="x" * 2_000_000), metadata=client.metadata)
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == ["id"]
    assert len(error.details()) < 1000


async def test_an_error_listing_many_mistakes_still_reaches_a_grpc_caller(client):
    records = [mutation_pb2.MutationRecord(upstream_id="u" * 200) for _ in range(100)]
    request = mutation_pb2.RunMutationRequest(kind="create", sync_id="s", collection_id="c", records=records)

    error = await grpc_refusal(client.mutations.RunMutation(request, metadata=client.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error)[:2] == ["records[0].upstream_id", "records[0].data"]


async def test_a_not_found_error_echoes_at_most_a_few_hundred_characters_of_the_id(client):
    response = await client.rest.get("/v1/syncs/" + "x" * 255)

    assert response.status_code == 404
    assert len(response.json()["message"]) < 300


# --- what the JSON parser and the body decoder meet ---------------------------------------------


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


async def test_json_nested_100000_levels_deep_is_refused_for_anyone(client):
    async with anonymous(client) as nobody:
        anonymous_answer = await nobody.post("/v1/streams", content=DEEP_JSON, headers=JSON)
    response = await client.rest.post("/v1/streams", content=DEEP_JSON, headers=JSON)

    assert refused_fields(anonymous_answer) == ["body"]
    assert refused_fields(response) == ["body"]


async def test_a_struct_nested_deeper_than_20_levels_is_refused(client):
    metadata: object = 1
    for _ in range(21):
        metadata = {"a": metadata}

    response = await client.rest.post(
        "/v1/credentials",
        json={"provider": "github", "properties": {"kind": "github_token", "token": "t"}, "metadata": metadata},
    )

    [field] = refused_fields(response)
    assert field.startswith("credential.metadata.a.a")  # where it gets too deep
    assert "20 levels" in response.json()["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_is_not_in_its_content_encoding_is_refused_for_anyone(client, encoding):
    headers = {**JSON, "content-encoding": encoding}
    async with anonymous(client) as nobody:
        anonymous_answer = await nobody.post("/v1/streams", content=b'{"name": "x"}', headers=headers)
    response = await client.rest.post("/v1/streams", content=b'{"name": "x"}', headers=headers)

    assert refused_fields(anonymous_answer) == ["body"]
    assert refused_fields(response) == ["body"]


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("x-gzip", gzip.compress),
    ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate, as some clients send it
    ("gzip, identity", gzip.compress),
])
async def test_a_compressed_body_is_decoded(client, encoding, encode):
    response = await client.rest.post(
        "/v1/streams", content=encode(b'{"name": "zipped"}'), headers={**JSON, "content-encoding": encoding}
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "zipped"


async def test_an_unknown_content_encoding_is_refused_with_415(client):
    response = await client.rest.post("/v1/streams", content=b'{"name": "x"}', headers={**JSON, "content-encoding": "br"})

    assert refused_fields(response, 415) == ["content-encoding"]


async def test_a_compressed_body_may_not_expand_past_the_body_limit(server, client):
    bomb = gzip.compress(b'{"name": "' + b" " * (server.settings.max_request_bytes + 1) + b'"}')
    assert len(bomb) < server.settings.max_request_bytes // 100

    response = await client.rest.post("/v1/streams", content=bomb, headers={**JSON, "content-encoding": "gzip"})

    assert response.status_code == 413, response.text
    assert response.json()["code"] == 8


async def test_a_proxied_body_passes_through_compressed_as_it_came(client, upstream):
    from test_proxy import stripe_sync

    sync = await stripe_sync(client, upstream.base_url)
    compressed = gzip.compress(b"raw upstream bytes")

    response = await client.rest.post(
        f"/v1/proxy/sync/{sync['id']}/echo/upload", content=compressed,
        headers={"content-encoding": "gzip", "content-type": "text/plain"},
    )

    assert response.status_code == 200, response.text
    assert upstream.requests[-1].body == compressed


@pytest.mark.parametrize("body", [b'{"\\ud800": 1}', b'{"name": "\\udfff"}', b'{"name": "x", "\\ud83d": 2}'])
async def test_lone_surrogates_in_json_are_refused_for_anyone(client, body):
    async with anonymous(client) as nobody:
        anonymous_answer = await nobody.post("/v1/streams", content=body, headers=JSON)
    response = await client.rest.post("/v1/streams", content=body, headers=JSON)

    assert refused_fields(anonymous_answer) == ["body"]
    assert refused_fields(response) == ["body"]


@pytest.mark.parametrize("path, body", [
    ("/v1/credentials", b'{"provider": "github", "properties": {"kind": "github_token", "token": "t", "x": NaN}}'),
    ("/v1/credentials", b'{"provider": "github", "properties": {"kind": "github_token", "token": "t"}, "metadata": {"x": -Infinity}}'),
    ("/v1/syncs", b'{"metadata": {"x": 1e400}}'),
    ("/v1/mutations/run", b'{"kind": "create", "sync_id": "s", "collection_id": "c", "records": [{"data": {"n": Infinity}}]}'),
])
async def test_nan_and_infinity_are_refused(server, client, path, body):
    before = await table_rows(server)

    response = await client.rest.post(path, content=body, headers=JSON)

    assert refused_fields(response) == ["body"]
    assert await table_rows(server) == before


async def test_nan_in_a_struct_over_grpc_is_invalid_argument_naming_the_key(client):
    metadata = struct_pb2.Struct()
    metadata.update({"nested": {"x": math.nan}})
    request = credential_pb2.CreateCredentialRequest(credential=credential_pb2.Credential(
        provider="github", metadata=metadata,
    ))
    request.credential.properties.update({"kind": "github_token", "token": "t"})

    error = await grpc_refusal(client.credentials.CreateCredential(request, metadata=client.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == ["credential.metadata.nested.x"]


async def test_an_integer_too_long_for_python_is_refused(client):
    body = b'{"name": "x", "n": ' + b"9" * 5000 + b"}"

    assert refused_fields(await client.rest.post("/v1/streams", content=body, headers=JSON)) == ["body"]


# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["44%2533", "4x3", "99999"])  # %25 arrives as "%": "44%33"
async def test_a_proxied_absolute_url_with_a_bad_port_is_refused(client, upstream, port):
    from test_proxy import stripe_sync

    sync = await stripe_sync(client, upstream.base_url)
    sent = len(upstream.requests)

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/https://api.stripe.com:{port}/v1/customers")

    assert refused_fields(response) == ["path"]
    assert len(upstream.requests) == sent


@pytest.mark.parametrize("instance_url", ["not a url", "https://", "https://host:port/x", "ftp://host"])
async def test_a_salesforce_instance_url_must_be_a_url(server, client, instance_url):
    before = await table_rows(server)

    response = await client.rest.post("/v1/credentials", json={"provider": "salesforce", "properties": {
        "kind": "salesforce_oauth2", "access_token": "t", "instance_url": instance_url}})

    assert refused_fields(response) == ["credential.properties.instance_url"]
    assert await table_rows(server) == before


# --- gRPC bytes that are not the message -------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"\xff\xff\xff\xff",  # no valid field tag
    bytes([0x0A, 0x03, 0x1A, 0x01, 0xFF]),  # stream.name holding invalid UTF-8
    bytes([0x0A, 0x05, 0x1A, 0x03]) + "\ud800".encode("utf-8", "surrogatepass"),  # a surrogate, in UTF-8
])
async def test_undecodable_grpc_requests_are_invalid_argument_without_internal_names(client, data):
    create_stream = client.channel.unary_unary("/headwater.v1.StreamService/CreateStream")

    error = await grpc_refusal(create_stream(data, metadata=client.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Error" not in error.details() and "<class" not in error.details()
    assert "headwater.v1.CreateStreamRequest" in error.details()


def _length_delimited(field: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (bytes, string, message)."""
    size, varint = len(payload), b""
    while True:
        varint += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([field << 3 | 2]) + varint + payload


def nested_struct_bytes(levels: int) -> bytes:
    """A Struct nested `levels` objects deep ({"a": {"a": ...}}), in protobuf's binary form."""
    struct = b""
    for _ in range(levels):
        value = _length_delimited(5, struct)  # Value.struct_value
        struct = _length_delimited(1, _length_delimited(1, b"a") + _length_delimited(2, value))  # Struct.fields
    return struct


async def test_a_struct_nested_past_protobufs_limit_is_invalid_argument(client):
    # CreateCredentialRequest.credential (field 1) . metadata (field 7)
    data = _length_delimited(1, _length_delimited(7, nested_struct_bytes(60)))
    create_credential = client.channel.unary_unary("/headwater.v1.CredentialService/CreateCredential")

    error = await grpc_refusal(create_credential(data, metadata=client.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "headwater.v1.CreateCredentialRequest" in error.details()
