"""What a mutation answers when something is wrong: invalid requests (nothing goes upstream),
upstream validation errors and timeouts, a batch that fails part-way, and idempotent retries."""

from __future__ import annotations

import asyncio
import datetime

import grpc
import pytest
from grpc_status import rpc_status
from sync_support import create_sync, stream_events

from headwater.store.models import IdempotencyKey
from headwater.v1 import mutation_pb2

CONTACT = {"FirstName": "Paul", "LastName": "Atreides", "Email": "paul@arrakis.org"}


async def run(client, body: dict, **headers):
    return await client.rest.post("/v1/mutations/run", json=body, headers=headers)


def violations(response) -> dict[str, str]:
    [bad_request] = [d for d in response.json()["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    return {v["field"]: v["description"] for v in bad_request["field_violations"]}


def failure(response) -> dict:
    [detail] = [d for d in response.json()["details"] if d["@type"].endswith("headwater.v1.MutationFailure")]
    return detail


@pytest.fixture
async def salesforce(fake_provider):
    return await fake_provider("salesforce")


@pytest.fixture
async def sync(client, salesforce):
    return await create_sync(client, salesforce, "salesforce:contact")


async def test_invalid_requests_name_the_field_and_send_nothing_upstream(client, salesforce, sync):
    base = {"sync_id": sync["id"], "collection_id": "salesforce:contact"}
    cases = [
        ({**base, "kind": "upsert", "records": [{"data": CONTACT}]}, "kind", "must be one of create, update, delete"),
        ({**base, "kind": "update", "records": [{"upstream_id": "003A", "data": CONTACT}, {"data": CONTACT}]},
         "records[1].upstream_id", "is required for an update"),
        ({**base, "kind": "delete"}, "upstream_ids", "is required: 1 to 100 upstream ids"),
        ({**base, "kind": "create", "records": []}, "records", "is required: 1 to 100 records"),
        ({**base, "kind": "create", "records": [{"data": CONTACT}] * 101}, "records",
         "at most 100 records per mutation; got 101"),
        ({**base, "kind": "create", "records": [{"data": {}}]}, "records[0].data", "is required: the fields to write"),
        ({**base, "kind": "create", "data": [{"upstream_id": "003A", "data": CONTACT}]}, "data[0].upstream_id",
         "is given by the upstream; leave it out of a create"),
        ({**base, "kind": "create", "records": [{"data": CONTACT}], "await_consumers_timeout": 0},
         "await_consumers_timeout", "must be 1 to 600000 milliseconds"),
        ({**base, "collection_id": "salesforce:account", "kind": "create", "records": [{"data": {"Name": "x"}}]},
         "collection_id", f"sync {sync['id']} does not carry salesforce:account (it carries salesforce:contact)"),
    ]
    for body, field, description in cases:
        response = await run(client, body)

        assert response.status_code == 400, (body, response.text)
        assert violations(response)[field] == description
        assert response.json()["error"].startswith("Error: ")
    assert salesforce.requests == []


async def test_a_typo_in_a_field_name_is_refused(client, salesforce, sync):
    response = await run(client, {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
                                  "recods": [{"data": CONTACT}]})

    assert response.status_code == 400
    assert "recods" in response.json()["message"]
    assert salesforce.requests == []


async def test_unknown_sync_is_404(client, other_client, sync):
    for who, sync_id in [(client, "no-such-sync"), (other_client, sync["id"])]:  # another org's sync: unknown
        response = await run(who, {"kind": "create", "sync_id": sync_id, "collection_id": "salesforce:contact",
                                   "records": [{"data": CONTACT}]})

        assert response.status_code == 404, response.text


async def test_upstream_validation_error_carries_the_upstream_message(client, salesforce, sync):
    response = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
        "records": [{"data": {**CONTACT, "Email": "not-an-email"}}],
    })

    assert response.status_code == 400
    assert response.json()["error"] == "Error: Salesforce validation error: `Invalid email`"
    assert violations(response) == {"records[0]": "Salesforce validation error: `Invalid email`"}
    assert salesforce.objects("Contact") == {}


async def test_upstream_timeout_is_504(client, salesforce, sync):
    salesforce.delay = 3.0

    response = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact", "records": [{"data": CONTACT}],
    }, **{"X-Headwater-Timeout": "1"})

    assert response.status_code == 504
    assert response.json()["error"] == "Error: Salesforce API timed out"


# aiohttp rounds timeouts over 5 s up to the next whole second: the upstream call must still end
# before the caller's deadline, so that the answer is the mutation's own 504 with its details.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("timeout", ["0.5", "6"])
async def test_an_upstream_that_never_answers_is_504_with_the_mutations_details_whatever_the_deadline(
    client, salesforce, sync, timeout
):
    salesforce.delay = 600  # it answers only when the emulator closes, after the test

    response = await client.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact", "records": [{"data": CONTACT}],
    }, headers={"X-Headwater-Timeout": timeout}, timeout=30)

    assert response.status_code == 504, response.text
    assert response.json()["error"] == "Error: Salesforce API timed out"
    assert [f["error"] for f in failure(response)["failed"]] == ["Salesforce API timed out"]


async def test_a_batch_failing_at_record_k_keeps_the_records_before_it(server, client, salesforce, sync):
    records = [{"data": {**CONTACT, "LastName": "One"}}, {"data": {"LastName": "Two", "Email": "bad"}},
               {"data": {**CONTACT, "LastName": "Three"}}]

    response = await run(client, {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
                                  "records": records})

    assert response.status_code == 400
    assert response.json()["message"] == "Salesforce validation error: `Invalid email`"
    detail = failure(response)
    [applied] = detail["applied"]
    assert applied["data"]["LastName"] == "One"
    assert detail["failed"] == [
        {"index": 1, "error": "Salesforce validation error: `Invalid email`"},
        {"index": 2, "error": "not attempted"},
    ]
    assert [c["LastName"] for c in salesforce.objects("Contact").values()] == ["One"]
    events = await stream_events(server, sync["stream_id"])
    assert [(e.action, e.record["upstream_id"]) for e in events] == [("insert", applied["upstream_id"])]


async def test_failure_details_reach_grpc_callers_too(client, sync):
    request = mutation_pb2.RunMutationRequest(kind="delete", sync_id=sync["id"], collection_id="salesforce:contact",
                                              upstream_ids=["003000000000001AAA"])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.mutations.RunMutation(request, metadata=client.metadata)

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(raised.value)
    detail = mutation_pb2.MutationFailure()
    assert status.details[-1].Unpack(detail)
    assert [(f.index, f.upstream_id) for f in detail.failed] == [(0, "003000000000001AAA")]


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_answers_the_first_answer_and_sends_nothing(client, salesforce, sync):
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}]}

    first = await run(client, body, **{"Idempotency-Key": "create-paul"})
    sent = len(salesforce.requests)
    again = await run(client, body, **{"Idempotency-Key": "create-paul"})

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(salesforce.requests) == sent
    assert len(salesforce.objects("Contact")) == 1

    other = await run(client, {**body, "records": [{"data": {**CONTACT, "FirstName": "Leto"}}]},
                      **{"Idempotency-Key": "create-paul"})
    assert other.status_code == 400
    assert violations(other) == {
        "idempotency_key": "was used for another mutation within the last 24 hours; use a new key",
    }


async def test_keys_belong_to_one_organisation(client, other_client, fake_provider, sync, salesforce):
    body = {"kind": "create", "collection_id": "salesforce:contact", "records": [{"data": CONTACT}]}
    theirs = await create_sync(other_client, salesforce, "salesforce:contact")

    mine = await run(client, {**body, "sync_id": sync["id"]}, **{"Idempotency-Key": "k"})
    other = await run(other_client, {**body, "sync_id": theirs["id"]}, **{"Idempotency-Key": "k"})

    assert mine.status_code == other.status_code == 200
    assert mine.json()["records"][0]["upstream_id"] != other.json()["records"][0]["upstream_id"]


async def test_the_key_is_a_request_field_over_grpc(client, salesforce, sync):
    request = mutation_pb2.RunMutationRequest(kind="create", sync_id=sync["id"], collection_id="salesforce:contact",
                                              idempotency_key="grpc-key")
    request.records.add().data.update(CONTACT)

    first = await client.mutations.RunMutation(request, metadata=client.metadata)
    again = await client.mutations.RunMutation(request, metadata=client.metadata)

    assert first == again
    assert len(salesforce.objects("Contact")) == 1


async def test_concurrent_calls_with_one_key_run_once(client, salesforce, sync):
    salesforce.delay = 0.3
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}]}

    answers = await asyncio.gather(*(run(client, body, **{"Idempotency-Key": "race"}) for _ in range(5)))

    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409]
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 409)  # the lease's time left
    assert len(salesforce.objects("Contact")) == 1


async def test_a_stored_failure_is_answered_again_but_a_refusal_frees_the_key(client, salesforce, sync):
    records = [{"data": CONTACT}, {"data": {**CONTACT, "Email": "bad"}}]
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact", "records": records}

    first = await run(client, body, **{"Idempotency-Key": "partial"})
    again = await run(client, body, **{"Idempotency-Key": "partial"})

    assert first.status_code == again.status_code == 400  # record 0 was applied: the answer stands
    assert again.json() == first.json()
    assert len(salesforce.objects("Contact")) == 1

    refused = {**body, "records": [{"data": {**CONTACT, "Email": "bad"}}]}
    assert (await run(client, refused, **{"Idempotency-Key": "refused"})).status_code == 400
    fixed = {**body, "records": [{"data": {**CONTACT, "Email": "paul@caladan.org"}}]}
    retried = await run(client, fixed, **{"Idempotency-Key": "refused"})  # nothing changed upstream: free again

    assert retried.status_code == 200, retried.text


async def test_stripe_gets_the_key_one_per_record(client, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")

    response = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
        "records": [{"data": {"name": "Paul"}}, {"data": {"name": "Alia"}}],
    }, **{"Idempotency-Key": "family"})

    assert response.status_code == 200, response.text
    assert [r.header("idempotency-key") for r in stripe.requests] == ["family:0", "family:1"]


async def test_a_stripe_write_answered_503_is_retried_under_the_same_key(client, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")
    stripe.fail_next(503, path_contains="/v1/customers")

    response = await run(client, {"kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
                                  "records": [{"data": {"name": "Duncan"}}]})

    assert response.status_code == 200, response.text
    keys = [r.header("idempotency-key") for r in stripe.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(stripe.objects("customers")) == 1


async def test_an_upstream_server_error_is_502_and_names_the_provider(client, salesforce, sync):
    salesforce.fail_next(500)

    response = await run(client, {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
                                  "records": [{"data": CONTACT}]})

    assert response.status_code == 502
    assert response.json()["error"].startswith("Error: Salesforce API failed (HTTP 500): `")


async def test_a_key_is_forgotten_after_24_hours(server, client, salesforce, sync):
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}]}
    first = await run(client, body, **{"Idempotency-Key": "yesterday"})
    await run(client, {**body, "records": [{"data": {**CONTACT, "FirstName": "Alia"}}]}, **{"Idempotency-Key": "gone"})
    old = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(hours=24, seconds=1)
    await server.server.store.run(lambda: IdempotencyKey.update(expires_at=old).execute())

    again = await run(client, {**body, "records": [{"data": {**CONTACT, "FirstName": "Leto"}}]},
                      **{"Idempotency-Key": "yesterday"})

    assert first.status_code == again.status_code == 200, again.text
    assert len(salesforce.objects("Contact")) == 3
    keys = await server.server.store.run(lambda: [k.key for k in IdempotencyKey.select()])
    assert keys == ["yesterday"]  # expired keys are cleared as new ones come
