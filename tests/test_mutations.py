"""Mutations write records back upstream, record them and stream them: the documented bodies,
verbatim, against stateful emulators of Stripe, Salesforce and HubSpot (tests/fakes/)."""

from __future__ import annotations

import datetime
import json
from urllib.parse import parse_qsl

from google.protobuf import json_format
from sync_support import create_sync, stream_events

from headwater.v1 import common_pb2, mutation_pb2

RECORD_KEYS = {
    "id", "sync_id", "collection_id", "upstream_id", "upstream_updated_at", "data", "deleted", "inserted_at",
    "updated_at",
}


async def run(client, body: dict, **headers):
    return await client.rest.post("/v1/mutations/run", json=body, headers=headers)


def as_shown(record: dict) -> dict:
    """A record document as the API renders it (timestamps in protobuf's JSON form)."""
    message = json_format.ParseDict(record, common_pb2.Record())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def writes(fake) -> list:
    """The write requests the emulator received (reads left out)."""
    return [r for r in fake.requests if r.method != "GET"]


async def test_salesforce_create_update_delete_as_documented(server, client, fake_provider):
    salesforce = await fake_provider("salesforce")
    sync = await create_sync(client, salesforce, "salesforce:contact")

    created = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
        "records": [{"data": {"FirstName": "Paul", "LastName": "Atreides", "Email": "paul@arrakis.org"}}],
    })

    assert created.status_code == 200, created.text
    [record] = created.json()["records"]
    assert set(record) == RECORD_KEYS
    contact_id = record["upstream_id"]
    assert record["sync_id"] == sync["id"] and record["collection_id"] == "salesforce:contact"
    assert record["data"]["Id"] == contact_id and record["data"]["Email"] == "paul@arrakis.org"
    assert record["data"]["attributes"]["type"] == "Contact"
    # "2024-01-15T10:30:00.123+0000" is "2024-01-15T10:30:00.123Z", and ".000" is no fraction at all ("...:00Z")
    when = datetime.datetime.fromisoformat
    assert when(record["upstream_updated_at"]) == when(record["data"]["SystemModstamp"])
    assert record["deleted"] is False
    assert salesforce.get("Contact", contact_id)["LastName"] == "Atreides"

    updated = await run(client, {
        "kind": "update", "sync_id": sync["id"], "collection_id": "salesforce:contact",
        "records": [{"upstream_id": contact_id, "data": {"Title": "Duke"}}],
    })

    assert updated.status_code == 200, updated.text
    [after] = updated.json()["records"]
    assert after["id"] == record["id"] and after["upstream_id"] == contact_id
    assert after["data"]["Title"] == "Duke" and after["data"]["LastName"] == "Atreides"  # only Title changed
    patch = writes(salesforce)[-1]
    assert (patch.method, patch.path) == ("PATCH", f"/services/data/v59.0/sobjects/Contact/{contact_id}")
    assert json.loads(patch.body) == {"Title": "Duke"}

    second = salesforce.seed("Contact")[0]["Id"]
    deleted = await run(client, {
        "kind": "delete", "sync_id": sync["id"], "collection_id": "salesforce:contact",
        "upstream_ids": [contact_id, second],
    })

    assert deleted.status_code == 200, deleted.text
    assert [(r["upstream_id"], r["deleted"]) for r in deleted.json()["records"]] == [(contact_id, True), (second, True)]
    assert salesforce.objects("Contact") == {}
    events = await stream_events(server, sync["stream_id"])
    assert [(e.action, e.record["upstream_id"]) for e in events] == [
        ("insert", contact_id), ("update", contact_id), ("delete", contact_id),
    ]  # the never-synced second contact was deleted upstream, but there was nothing to stream
    assert as_shown(events[1].record) == as_shown(after)  # the stream carries the record the answer shows


async def test_stripe_customer_over_grpc_with_nested_form_fields(server, client, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")
    request = mutation_pb2.RunMutationRequest(kind="create", sync_id=sync["id"], collection_id="stripe:customer")
    json_format.ParseDict(
        {"data": {"email": "leto@arrakis.org", "name": "Leto", "metadata": {"house": "Atreides", "rank": 1}}},
        request.records.add(),
    )

    answer = await client.mutations.RunMutation(request, metadata=client.metadata)

    [record] = answer.records
    customer = stripe.get("customers", record.upstream_id)
    assert customer["email"] == "leto@arrakis.org" and customer["metadata"] == {"house": "Atreides", "rank": "1"}
    sent = writes(stripe)[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/customers")
    assert sent.header("content-type") == "application/x-www-form-urlencoded"
    assert sorted(parse_qsl(sent.body.decode())) == [
        ("email", "leto@arrakis.org"), ("metadata[house]", "Atreides"), ("metadata[rank]", "1"), ("name", "Leto"),
    ]
    assert sent.header("idempotency-key")  # every Stripe write carries one, so retrying it is safe
    assert json_format.MessageToDict(record.data)["id"] == record.upstream_id

    update = mutation_pb2.RunMutationRequest(kind="update", sync_id=sync["id"], collection_id="stripe:customer")
    json_format.ParseDict({"upstream_id": record.upstream_id, "data": {"name": "Leto I"}}, update.records.add())
    answer = await client.mutations.RunMutation(update, metadata=client.metadata)

    assert (writes(stripe)[-1].method, writes(stripe)[-1].path) == ("POST", f"/v1/customers/{record.upstream_id}")
    assert answer.records[0].data["name"] == "Leto I" and answer.records[0].data["email"] == "leto@arrakis.org"

    delete = mutation_pb2.RunMutationRequest(
        kind="delete", sync_id=sync["id"], collection_id="stripe:customer", upstream_ids=[record.upstream_id]
    )
    answer = await client.mutations.RunMutation(delete, metadata=client.metadata)

    assert answer.records[0].deleted and stripe.objects("customers") == {}


async def test_stripe_subscription_with_a_list_of_items(client, fake_provider):
    stripe = await fake_provider("stripe")
    [customer] = stripe.seed("customers")
    sync = await create_sync(client, stripe, "stripe:customer", "stripe:subscription")

    created = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "stripe:subscription",
        "records": [{"data": {"customer": customer["id"], "items": [{"price": "price_spice", "quantity": 2}]}}],
    })

    assert created.status_code == 200, created.text
    [record] = created.json()["records"]
    assert ("items[0][price]", "price_spice") in parse_qsl(writes(stripe)[-1].body.decode())
    subscription = stripe.get("subscriptions", record["upstream_id"])
    assert subscription["customer"] == customer["id"]

    cancelled = await run(client, {
        "kind": "delete", "sync_id": sync["id"], "collection_id": "stripe:subscription",
        "upstream_ids": [record["upstream_id"]],
    })

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["records"][0]["deleted"] is True
    assert stripe.get("subscriptions", record["upstream_id"])["status"] == "canceled"  # Stripe's delete cancels


async def test_hubspot_objects_are_written_as_properties_and_archived(client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:contact", "hubspot:company", "hubspot:deal")

    for collection_id, data in [
        ("hubspot:contact", {"email": "jessica@arrakis.org", "firstname": "Jessica"}),
        ("hubspot:company", {"name": "CHOAM", "domain": "choam.example"}),
        ("hubspot:deal", {"dealname": "Spice contract", "amount": 1000}),
    ]:
        created = await run(client, {
            "kind": "create", "sync_id": sync["id"], "collection_id": collection_id, "records": [{"data": data}],
        })
        assert created.status_code == 200, created.text
        [record] = created.json()["records"]
        assert json.loads(writes(hubspot)[-1].body) == {"properties": data}
        assert record["data"]["id"] == record["upstream_id"]
        assert record["data"]["properties"][next(iter(data))] == str(data[next(iter(data))])
        assert record["upstream_updated_at"] is not None

    deal_id = record["upstream_id"]
    updated = await run(client, {
        "kind": "update", "sync_id": sync["id"], "collection_id": "hubspot:deal",
        "records": [{"upstream_id": deal_id, "data": {"properties": {"amount": "2000"}}}],  # already wrapped: as is
    })
    assert updated.status_code == 200, updated.text
    assert json.loads(writes(hubspot)[-1].body) == {"properties": {"amount": "2000"}}
    assert updated.json()["records"][0]["data"]["properties"]["dealname"] == "Spice contract"

    archived = await run(client, {
        "kind": "delete", "sync_id": sync["id"], "collection_id": "hubspot:deal", "upstream_ids": [deal_id],
    })
    assert archived.status_code == 200, archived.text
    assert (writes(hubspot)[-1].method, writes(hubspot)[-1].path) == ("DELETE", f"/crm/v3/objects/deals/{deal_id}")
    assert deal_id in hubspot.deleted("deals")


async def test_data_is_another_name_for_records_and_a_batch_is_written_in_order(server, client, fake_provider):
    hubspot = await fake_provider("hubspot")
    sync = await create_sync(client, hubspot, "hubspot:company")

    created = await run(client, {
        "kind": "create", "sync_id": sync["id"], "collection_id": "hubspot:company",
        "data": [{"data": {"name": f"House {n}"}} for n in ("Atreides", "Harkonnen", "Corrino")],
    })

    assert created.status_code == 200, created.text
    names = [r["data"]["properties"]["name"] for r in created.json()["records"]]
    assert names == ["House Atreides", "House Harkonnen", "House Corrino"]
    events = await stream_events(server, sync["stream_id"])
    assert [e.record["data"]["properties"]["name"] for e in events] == names
