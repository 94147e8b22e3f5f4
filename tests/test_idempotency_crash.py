"""A mutation with an Idempotency-Key survives the death of the process running it: the key's
lease runs out within seconds, a retry takes the key over, and the caller learns what happened.

Headwater runs here as `headwater serve` subprocesses on one database, killed with SIGKILL while
the fake provider holds a write (`delay`); their key lease is 1 second
(HEADWATER_IDEMPOTENCY_LEASE_SECONDS), so a retry waits about that long. In one process: a live
call keeps its key, a call that stalled past its lease is fenced off, and a call interrupted
(the caller hung up) is resumed by the retry at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import httpx
import pytest
from conftest import Client, Running, _client_for, settings_for
from cryptography.fernet import Fernet
from headwater_process import Headwater
from sync_support import create_sync, eventually, stream_events

from headwater.auth import Auth
from headwater.server import Server
from headwater.store import Store, utcnow
from headwater.store.models import IdempotencyKey
from headwater.v1 import mutation_pb2

LEASE_SECONDS = 1
CONTACT = {"FirstName": "Paul", "LastName": "Atreides", "Email": "paul@arrakis.org"}


class Processes:
    """`headwater serve` processes on one database, and a client of organisation 'acme' for each."""

    def __init__(self, database_url: str, store: Store, token: str):
        self.database_url = database_url
        self.store = store
        self.token = token
        self.secret_key = Fernet.generate_key()
        self.started: list[tuple[Headwater, Client]] = []

    async def start(self) -> tuple[Headwater, Client]:
        process = await Headwater.serve(
            self.database_url, self.secret_key,
            HEADWATER_ALLOW_PRIVATE_NETWORKS="true",  # the fake providers are on loopback
            HEADWATER_IDEMPOTENCY_LEASE_SECONDS=str(LEASE_SECONDS),
        )
        rest = httpx.AsyncClient(base_url=process.url, headers={"authorization": f"Bearer {self.token}"})
        client = Client(self.token, rest, grpc.aio.insecure_channel(process.grpc_target))
        self.started.append((process, client))
        return process, client

    async def close(self) -> None:
        for process, client in self.started:
            if process.running:
                await process.kill()
            await client.rest.aclose()
            await client.channel.close()


@pytest.fixture
async def processes(database_url):
    store = Store.open(database_url)
    try:
        await store.migrate()
        auth = Auth(store)
        await auth.create_org("acme")
        started = Processes(database_url, store, await auth.issue_token("acme"))
        try:
            yield started
        finally:
            await started.close()
    finally:
        await store.close()


async def run(client: Client, body: dict, key: str) -> httpx.Response:
    return await client.rest.post("/v1/mutations/run", json=body, headers={"Idempotency-Key": key})


async def retry(client: Client, body: dict, key: str) -> httpx.Response:
    """Retries with the key, as a caller would, while it answers 409 (the dead call's lease runs on)."""
    give_up = time.monotonic() + LEASE_SECONDS + 10
    while True:
        response = await run(client, body, key)
        if response.status_code != 409 or time.monotonic() > give_up:
            return response
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))


def sent(fake, method: str, path: str = "") -> list:
    """The requests with this method (and path ending) that the provider received."""
    return [r for r in fake.requests if r.method == method and r.path.endswith(path)]


def failure(response: httpx.Response) -> dict:
    [detail] = [d for d in response.json()["details"] if d["@type"].endswith("headwater.v1.MutationFailure")]
    return detail


async def lost(call: asyncio.Task) -> None:
    """The first caller's answer died with its process."""
    with pytest.raises(httpx.TransportError):
        await call


# --- kill -9 ----------------------------------------------------------------------------------------


async def test_a_stripe_create_cut_off_by_kill_9_is_answered_by_the_retry_and_made_once(processes, fake_provider):
    stripe = await fake_provider("stripe")
    first, client = await processes.start()
    sync = await create_sync(client, stripe, "stripe:customer")
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
            "records": [{"data": {"name": "Paul"}}]}
    stripe.delay = 2.0  # Stripe holds the create; it takes effect after the process is gone
    call = asyncio.create_task(run(client, body, "create-paul"))
    await eventually(lambda: sent(stripe, "POST", "/v1/customers"))

    await first.kill()
    await lost(call)
    stripe.delay = 0
    _, client = await processes.start()
    answer = await retry(client, body, "create-paul")

    assert answer.status_code == 200, answer.text
    [record] = answer.json()["records"]
    assert list(stripe.objects("customers")) == [record["upstream_id"]]  # one customer, the one answered
    assert {r.header("idempotency-key") for r in sent(stripe, "POST", "/v1/customers")} == {"create-paul"}
    replayed = await run(client, body, "create-paul")
    assert replayed.json() == answer.json()


async def test_a_record_committed_before_kill_9_is_answered_and_not_written_again(processes, fake_provider):
    salesforce = await fake_provider("salesforce")
    first, client = await processes.start()
    sync = await create_sync(client, salesforce, "salesforce:contact")
    consumer = await client.rest.post("/v1/http-consumers", json={"stream_id": sync["stream_id"]})
    consumer_id = consumer.json()["id"]
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}], "await_consumer_ids": [consumer_id]}
    call = asyncio.create_task(run(client, body, "create-paul"))  # written, then waits for the consumer
    delivered = await client.rest.post(f"/v1/http-consumers/{consumer_id}/next", json={"wait_for": 10_000})
    [message] = delivered.json()["data"]

    await first.kill()
    await lost(call)
    _, client = await processes.start()
    await client.rest.post(f"/v1/http-consumers/{consumer_id}/ack", json={"ack_tokens": [message["ack_token"]]})
    answer = await retry(client, body, "create-paul")

    assert answer.status_code == 200, answer.text
    assert answer.json()["records"] == [message["record"]]
    assert len(sent(salesforce, "POST", "/sobjects/Contact")) == 1  # Salesforce cannot dedupe: it was not asked again
    assert len(salesforce.objects("Contact")) == 1


async def test_a_create_in_flight_at_kill_9_where_the_provider_cannot_dedupe_is_answered_as_unknown(
    processes, fake_provider
):
    salesforce = await fake_provider("salesforce")
    first, client = await processes.start()
    sync = await create_sync(client, salesforce, "salesforce:contact")
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}, {"data": {**CONTACT, "FirstName": "Alia"}}]}
    salesforce.delay = 0.5
    call = asyncio.create_task(run(client, body, "family"))
    await eventually(lambda: len(sent(salesforce, "POST", "/sobjects/Contact")) == 2)  # record 0 written, 1 held

    await first.kill()
    await lost(call)
    salesforce.delay = 0
    _, client = await processes.start()
    answer = await retry(client, body, "family")

    message = ("the call running this mutation stopped before Salesforce answered the create of records[1], and "
               "Salesforce cannot tell whether it was made; the next sync will record the Contact if it was")
    assert answer.status_code == 500, answer.text
    assert answer.json()["error"] == f"Error: {message}"
    detail = failure(answer)
    assert [r["data"]["FirstName"] for r in detail["applied"]] == ["Paul"]
    assert detail["failed"] == [{"index": 1, "error": message}]
    assert len(sent(salesforce, "POST", "/sobjects/Contact")) == 2  # record 1 was not sent again
    again = await run(client, body, "family")
    assert again.json() == answer.json()  # the key's answer now


# --- in one process: a live call, a stalled call, an interrupted call -----------------------------


@pytest.fixture
async def short_lease_server(database_url):
    settings = settings_for(database_url, idempotency_lease_seconds=LEASE_SECONDS)
    running = Running(await Server.start(settings), settings)
    client = await _client_for(running, "acme")
    yield running, client
    await client.rest.aclose()
    await client.channel.close()
    await running.server.stop(grace=1)


async def test_a_retry_while_the_call_runs_past_its_lease_is_told_to_wait(short_lease_server, fake_provider):
    _, client = short_lease_server
    salesforce = await fake_provider("salesforce")
    sync = await create_sync(client, salesforce, "salesforce:contact")
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
            "records": [{"data": CONTACT}]}
    salesforce.delay = 1.0  # the create and its read back: the call outlasts its first lease, renewing it
    call = asyncio.create_task(run(client, body, "create-paul"))
    await eventually(lambda: sent(salesforce, "POST", "/sobjects/Contact"))
    await asyncio.sleep(LEASE_SECONDS + 0.3)

    busy = await run(client, body, "create-paul")
    first = await call

    assert busy.status_code == 409
    assert busy.json()["message"] == "a mutation with this idempotency key is still running; retry later"
    assert 1 <= int(busy.headers["retry-after"]) <= LEASE_SECONDS
    assert first.status_code == 200
    assert len(salesforce.objects("Contact")) == 1


async def test_a_call_stalled_past_its_lease_writes_nothing_once_a_retry_took_over(server, client, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
            "records": [{"data": {"name": "Paul"}}]}
    stripe.delay = 1.0
    stalled = asyncio.create_task(run(client, body, "create-paul"))
    await eventually(lambda: sent(stripe, "POST", "/v1/customers"))
    stripe.delay = 0

    async def lease_lapsed_then_retried():
        # As if the call's process had stalled: its lease runs out before its heartbeat renews it.
        await server.server.store.run(lambda: IdempotencyKey.update(lease_expires_at=utcnow()).execute())
        retried = await run(client, body, "create-paul")
        return retried if retried.status_code != 409 else None

    answer = await eventually(lease_lapsed_then_retried)
    late = await stalled

    assert answer.status_code == 200, answer.text
    assert late.status_code == 409
    assert late.json()["message"] == ("a retry took this mutation over while this call was stalled; "
                                      "retry with the idempotency key for its answer")
    assert len(stripe.objects("customers")) == 1
    [record] = answer.json()["records"]
    events = await stream_events(server, sync["stream_id"])
    assert [(e.action, e.record["upstream_id"]) for e in events] == [("insert", record["upstream_id"])]


async def retry_grpc(client: Client, request: mutation_pb2.RunMutationRequest) -> mutation_pb2.RunMutationResponse:
    """Retries over gRPC while the key is busy (ABORTED), for a few seconds."""
    give_up = time.monotonic() + 3
    while True:
        try:
            return await client.mutations.RunMutation(request, metadata=client.metadata)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ABORTED or time.monotonic() > give_up:
                raise
        await asyncio.sleep(0.1)


async def cancelled_while_held(client: Client, request: mutation_pb2.RunMutationRequest, arrived) -> None:
    """Runs the mutation over gRPC and hangs up once its write reached the provider."""
    call = client.mutations.RunMutation(request, metadata=client.metadata)
    await eventually(arrived)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call


async def test_an_update_interrupted_in_flight_is_sent_again_by_the_retry(server, client, fake_provider):
    salesforce = await fake_provider("salesforce")
    [contact] = salesforce.seed("Contact", LastName="Atreides")
    sync = await create_sync(client, salesforce, "salesforce:contact")
    request = mutation_pb2.RunMutationRequest(kind="update", sync_id=sync["id"], collection_id="salesforce:contact",
                                              idempotency_key="rename-paul")
    request.records.add(upstream_id=contact["Id"]).data.update({"Title": "Duke"})
    salesforce.delay = 0.5

    await cancelled_while_held(client, request, lambda: sent(salesforce, "PATCH"))
    salesforce.delay = 0
    answer = await retry_grpc(client, request)

    assert [r.data["Title"] for r in answer.records] == ["Duke"]
    assert len(sent(salesforce, "PATCH")) == 2  # the same change, sent again: an update is idempotent by nature
    assert salesforce.get("Contact", contact["Id"])["Title"] == "Duke"


async def test_a_delete_interrupted_in_flight_that_went_through_is_answered_as_deleted(server, client, fake_provider):
    salesforce = await fake_provider("salesforce")
    [contact] = salesforce.seed("Contact", LastName="Atreides")
    sync = await create_sync(client, salesforce, "salesforce:contact")
    request = mutation_pb2.RunMutationRequest(kind="delete", sync_id=sync["id"], collection_id="salesforce:contact",
                                              upstream_ids=[contact["Id"]], idempotency_key="forget-paul")
    salesforce.delay = 0.5

    await cancelled_while_held(client, request, lambda: salesforce.requests)
    await eventually(lambda: salesforce.deleted("Contact"))  # the held delete went through
    salesforce.delay = 0
    answer = await retry_grpc(client, request)

    assert [(r.upstream_id, r.deleted) for r in answer.records] == [(contact["Id"], True)]
    assert [r.method for r in salesforce.requests] == ["DELETE", "DELETE"]  # the second answered 404: gone


async def test_a_new_key_clears_the_organisations_expired_keys_and_its_answer_is_replayed(server, client, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")
    body = {"kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
            "records": [{"data": {"name": "Jessica"}}]}
    first = await run(client, body, "old-key")
    await server.server.store.run(lambda: IdempotencyKey.update(expires_at=utcnow()).execute())  # 24 hours on

    answer = await run(client, body, "new-key")
    replayed = await run(client, body, "new-key")

    assert first.status_code == answer.status_code == replayed.status_code == 200
    assert replayed.json() == answer.json()
    assert len(stripe.objects("customers")) == 2  # one per key, the replay wrote nothing
    keys = await server.server.store.run(lambda: [row.key for row in IdempotencyKey.select()])
    assert keys == ["new-key"]
