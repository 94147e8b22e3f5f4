"""Bad input: the right status, the documented error body naming the field, and nothing written."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from headwater.v1 import sync_pb2
from test_syncs import documented_body, make_stream


def violations(response) -> list[tuple[str, str]]:
    body = response.json()
    bad_request = next(d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    return [(v["field"], v["description"]) for v in bad_request["field_violations"]]


async def count_syncs(client) -> int:
    return len((await client.rest.get("/v1/syncs")).json()["data"])


async def count_credentials(client) -> int:
    return len((await client.rest.get("/v1/credentials")).json()["data"])


async def test_error_body_has_the_documented_and_the_gateway_fields(client):
    stream_id = await make_stream(client)

    response = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {"provider": "stripey"})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "docs", "code", "message", "details"}
    assert body["error"].startswith("Error: ")
    assert "sync.provider" in body["error"] and "stripey" in body["error"]
    assert body["code"] == 3
    assert isinstance(body["docs"], list) and body["docs"]
    assert violations(response)[0][0] == "sync.provider"


BAD_CREATES = [
    ("unknown provider", {"provider": "stripey"}, "sync.provider"),
    ("missing provider", {"provider": ""}, "sync.provider"),
    ("collection of another provider", {"collection_ids": ["hubspot:contact"]}, "sync.collection_ids[0]"),
    ("collection not in catalogue", {"collection_ids": ["stripe:customer", "stripe:unicorn"]}, "sync.collection_ids[1]"),
    ("no collections", {"collection_ids": []}, "sync.collection_ids"),
    ("credential kind of another provider",
     {"credential": {"properties": {"kind": "salesforce_oauth2", "secret": "x"}}}, "sync.credential.properties.kind"),
    ("credential without kind", {"credential": {"properties": {"secret": "x"}}}, "sync.credential.properties.kind"),
    ("credential without its secret", {"credential": {"properties": {"kind": "stripe_oauth2"}}},
     "sync.credential.properties.secret"),
    ("both credential and credential_id", {"credential_id": "abc"}, "sync.credential"),
    ("zero allowed_requests", {"rate_limit": {"allowed_requests": 0, "interval": 60}}, "sync.rate_limit.allowed_requests"),
    ("negative interval", {"rate_limit": {"allowed_requests": 5, "interval": -1}}, "sync.rate_limit.interval"),
    ("negative concurrency", {"rate_limit": {"allowed_requests": 5, "interval": 1, "max_concurrent_requests": -2}},
     "sync.rate_limit.max_concurrent_requests"),
    ("bad sync_frequency", {"sync_frequency": "hourly"}, "sync.sync_frequency"),
    ("negative max_age_days", {"max_age_days": -3}, "sync.max_age_days"),
    ("bad status", {"status": "paused"}, "sync.status"),
    ("unknown stream", {"stream_id": "no-such-stream"}, "sync.stream_id"),
    ("unknown JSON field", {"sync_frequncy": "4h"}, "sync_frequncy"),
    ("unknown nested JSON field", {"rate_limit": {"allowed_requests": 1, "interval": 1, "burst": 3}}, "rate_limit.burst"),
    ("wrong JSON type", {"collection_ids": "stripe:customer"}, "collection_ids"),
]


@pytest.mark.parametrize("case, change, field", BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
async def test_bad_create_names_the_field_and_writes_nothing(client, case, change, field):
    stream_id = await make_stream(client)

    response = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | change)

    assert response.status_code == 400, response.text
    fields = [f for f, _ in violations(response)]
    assert any(f == field or f.endswith(field) for f in fields), fields
    assert await count_syncs(client) == 0
    assert await count_credentials(client) == 0


async def test_missing_stream_id_is_required(client):
    body = documented_body("x")
    del body["stream_id"]

    response = await client.rest.post("/v1/syncs", json=body)

    assert response.status_code == 400
    assert ("sync.stream_id" in dict(violations(response)))


async def test_several_mistakes_are_reported_together(client):
    stream_id = await make_stream(client)

    response = await client.rest.post("/v1/syncs", json=documented_body(stream_id) | {
        "sync_frequency": "daily", "max_age_days": -1, "collection_ids": ["stripe:nope"],
    })

    fields = dict(violations(response))
    assert {"sync.sync_frequency", "sync.max_age_days", "sync.collection_ids[0]"} <= set(fields)


async def test_malformed_json_is_a_400_naming_the_body(client):
    response = await client.rest.post(
        "/v1/syncs", content=b'{"provider": "stripe",', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert violations(response)[0][0] == "body"


async def test_grpc_error_carries_the_same_status_and_field_violations(client):
    stream_id = await make_stream(client)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.syncs.CreateSync(
            sync_pb2.CreateSyncRequest(sync=sync_pb2.Sync(
                provider="stripe", stream_id=stream_id, collection_ids=["stripe:customer"],
                credential_id="whatever", sync_frequency="weekly",
            )),
            metadata=client.metadata,
        )

    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["sync.sync_frequency"]
    assert "sync_frequency" in error.details()


async def test_unknown_credential_id_is_rejected_and_nothing_written(client):
    stream_id = await make_stream(client)
    body = documented_body(stream_id) | {"credential_id": "nope"}
    del body["credential"]

    response = await client.rest.post("/v1/syncs", json=body)

    assert response.status_code == 400
    assert violations(response)[0][0] == "sync.credential_id"
    assert await count_syncs(client) == 0


async def test_bad_patch_changes_nothing(client):
    stream_id = await make_stream(client)
    sync = (await client.rest.post("/v1/syncs", json=documented_body(stream_id))).json()

    response = await client.rest.patch(
        f"/v1/syncs/{sync['id']}", json={"name": "new name", "sync_frequency": "hourly"}
    )

    assert response.status_code == 400
    assert violations(response)[0][0] == "sync.sync_frequency"
    assert (await client.rest.get(f"/v1/syncs/{sync['id']}")).json()["name"] == sync["name"]


async def test_bad_page_token_and_page_size_are_rejected(client):
    assert (await client.rest.get("/v1/syncs", params={"page_token": "garbage!"})).status_code == 400
    response = await client.rest.get("/v1/syncs", params={"page_size": -1})
    assert response.status_code == 400
    assert violations(response)[0][0] == "page_size"


async def test_unknown_path_is_404_and_wrong_verb_405(client):
    assert (await client.rest.get("/v1/nothing-here")).status_code == 404
    response = await client.rest.put("/v1/syncs/abc")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "PATCH", "DELETE"}


# --- what an answer shows for what was never set --------------------------------------------


async def test_unset_string_fields_answer_null_over_rest_and_are_unset_over_grpc(client):
    stream_id = await make_stream(client)
    body = documented_body(stream_id)
    for key in ("name", "external_id"):
        del body[key]
    del body["credential"]["oauth_app_id"]

    sync = (await client.rest.post("/v1/syncs", json=body)).json()
    consumer = (await client.rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync["id"]}]})).json()
    over_grpc = (await client.syncs.GetSync(sync_pb2.GetSyncRequest(id=sync["id"]), metadata=client.metadata)).sync

    assert (sync["name"], sync["external_id"], sync["health"]["last_error"]) == (None, None, None)
    assert (sync["credential"]["oauth_app_id"], sync["credential"]["external_id"]) == (None, None)
    assert [p["last_error"] for p in sync["progress"]] == [None, None]
    assert (consumer["name"], consumer["webhook_url"], consumer["webhook_secret"]) == (None, None, None)
    assert consumer["filters"] == [{"sync_id": sync["id"], "collection_id": None, "record_id": None}]
    assert not over_grpc.HasField("name") and not over_grpc.HasField("external_id")
    assert not over_grpc.credential.HasField("oauth_app_id")


async def test_a_string_set_to_empty_or_null_answers_null(client):
    stream_id = await make_stream(client)
    sync = (await client.rest.post("/v1/syncs", json=documented_body(stream_id))).json()

    patched = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"name": "", "external_id": None})

    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["external_id"]) == (None, None)


# --- every mistake at once -----------------------------------------------------------------------


async def test_every_mistake_in_the_json_is_listed_together(server, client):
    response = await client.rest.post("/v1/syncs", json={
        "provider": 5, "sync_frequncy": "4h", "collection_ids": "stripe:customer",
        "rate_limit": {"burst": 3, "interval": "often"},
    })

    assert response.status_code == 400
    assert set(dict(violations(response))) == {
        "sync.provider", "sync.sync_frequncy", "sync.collection_ids", "sync.rate_limit.burst", "sync.rate_limit.interval",
    }
    assert await count_syncs(client) == 0


async def test_every_mistake_in_the_query_string_is_listed_together(client):
    response = await client.rest.get("/v1/syncs", params={"colour": "red", "page_size": "many", "name": ["a", "b"]})

    assert set(dict(violations(response))) == {"colour", "page_size", "name"}


async def test_a_page_size_above_the_maximum_is_refused(client):
    refused = await client.rest.get("/v1/syncs", params={"page_size": 1001})
    largest = await client.rest.get("/v1/streams", params={"page_size": 1000})

    assert refused.status_code == 400
    assert violations(refused) == [("page_size", "must be between 1 and 1000 (0 or unset: 50)")]
    assert largest.status_code == 200


async def test_a_body_sent_as_another_content_type_than_json_is_refused_with_415(client):
    form = await client.rest.post(
        "/v1/streams", content=b'{"name": "main"}', headers={"content-type": "application/x-www-form-urlencoded"}
    )
    with_charset = await client.rest.post(
        "/v1/streams", content=b'{"name": "main"}', headers={"content-type": "application/json; charset=utf-8"}
    )

    assert form.status_code == 415
    assert [f for f, _ in violations(form)] == ["content-type"]
    assert with_charset.status_code == 200, with_charset.text
    assert [s["name"] for s in (await client.rest.get("/v1/streams")).json()["data"]] == ["main"]


@pytest.mark.parametrize("method, path, params, body, fields", [
    ("GET", "/v1/http-consumers/c1/next", {"batch_size": 5000, "wait_for": -1}, None, {"batch_size", "wait_for"}),
    ("POST", "/v1/http-consumers/c1/nack", None, {"ack_tokens": [], "delay_ms": -5}, {"ack_tokens", "delay_ms"}),
    ("GET", "/v1/syncs", {"health.status": "sick", "page_size": 5000}, None, {"health.status", "page_size"}),
    ("GET", "/v1/http-consumers/c1/parked", {"page_size": 5000, "page_token": "x"}, None, {"page_size", "page_token"}),
    ("PATCH", "/v1/credentials/c1", {"update_mask": "id,colour"}, {}, {"credential.id", "credential.colour"}),
    ("PATCH", "/v1/projects/p1", {"update_mask": "org_id,colour"}, {}, {"project.org_id", "project.colour"}),
    ("POST", "/v1/credentials", None, {"provider": "nope", "properties": {}}, {"credential.provider"}),
])
async def test_a_servicers_checks_list_every_mistake(client, method, path, params, body, fields):
    response = await client.rest.request(method, path, params=params, json=body)

    assert response.status_code == 400, response.text
    assert set(dict(violations(response))) == fields


async def test_an_unknown_stream_and_an_unknown_credential_are_listed_together(client):
    body = documented_body("no-such-stream") | {"credential_id": "no-such-credential"}
    del body["credential"]

    response = await client.rest.post("/v1/syncs", json=body)

    assert set(dict(violations(response))) == {"sync.stream_id", "sync.credential_id"}


async def test_a_patch_changing_a_fixed_field_and_naming_an_unknown_collection_lists_both(client):
    stream_id = await make_stream(client)
    sync = (await client.rest.post("/v1/syncs", json=documented_body(stream_id))).json()

    response = await client.rest.patch(
        f"/v1/syncs/{sync['id']}", json={"provider": "hubspot", "collection_ids": ["stripe:unicorn"]}
    )

    assert set(dict(violations(response))) == {"sync.provider", "sync.collection_ids[0]"}


async def test_a_consumer_patch_changing_a_fixed_field_and_setting_a_bad_value_lists_both(client):
    stream_id = await make_stream(client)
    consumer = (await client.rest.post("/v1/http-consumers", json={"stream_id": stream_id})).json()

    response = await client.rest.patch(
        f"/v1/http-consumers/{consumer['id']}", json={"deliver_policy": "new", "ack_wait_ms": 5}
    )

    assert set(dict(violations(response))) == {"consumer.deliver_policy", "consumer.ack_wait_ms"}
