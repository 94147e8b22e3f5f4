"""GET /metrics: what a proxied call, a mutation, a sync pass and a consumer's next/ack show a
Prometheus scraper, against a live server and the provider emulators; the per-id labels setting,
the metrics token and a listen address of its own. Every answer is parsed with prometheus_client's
own parsers."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from conftest import TEST_REDIS_URL, Running, _client_for, _close_client, finish, redis_unavailable_reason, settings_for
from cryptography.fernet import Fernet
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from sync_support import FAST_ENGINE, backfilled, create_sync, credential_for, eventually, passes
from test_consumers import make_sync, write
from test_webhooks import make_webhook, receiver  # noqa: F401 (a fixture)

from headwater.server import Server
from headwater.settings import Settings
from headwater.store.records import Change
from headwater.v1 import proxy_pb2

ID_LABELS = {"credential_id", "sync_id", "consumer_id"}
# For the tests whose figures come from no store query: SQLite alone.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
KEY = Fernet.generate_key().decode()


class Scrape:
    """One /metrics answer, parsed: `scrape.value("headwater_syncs", provider="stripe", health="healthy")`."""

    def __init__(self, text: str):
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if there are none)."""
        return sum(s.value for s in self.matching(name, **labels))

    def matching(self, name: str, **labels) -> list:
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


async def scrape(running: Running, **headers) -> Scrape:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{running.server.metrics_port}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(answer.text)


async def start(database_url: str, **overrides) -> Running:
    settings = settings_for(database_url, **overrides)
    return Running(await Server.start(settings), settings)


@pytest.fixture
async def running(database_url):
    running = await start(database_url)
    yield running
    await finish("stopping the server", running.server.stop(grace=1))


@pytest.fixture
async def acme(running):
    client = await _client_for(running, "acme")
    yield client
    await _close_client(client)


def assert_no_id_labels(result: Scrape) -> None:
    labelled = [s for s in result.samples if ID_LABELS & set(s.labels)]
    assert not labelled, labelled[:3]


async def test_a_proxied_call_counts_its_route_status_upstream_outcome_and_budget(running, acme, fake_provider):
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=2)
    sync = await create_sync(acme, stripe, "stripe:customer")

    proxied = await acme.rest.get(f"/v1/proxy/sync/{sync['id']}/v1/customers")
    missing = await acme.rest.get("/v1/proxy/sync/no-such-sync/v1/customers")
    forward = proxy_pb2.ForwardRequest(sync_id=sync["id"], method="GET", path="v1/customers")
    over_grpc = await acme.proxy.Forward(forward, metadata=acme.metadata)
    result = await scrape(running)

    assert proxied.status_code == 200 and missing.status_code == 404 and over_grpc.status == 200
    assert result.value("headwater_proxy_requests_total", route="sync", status="200") == 2  # REST and gRPC
    assert result.value("headwater_proxy_requests_total", route="sync", status="404") == 1
    assert result.value("headwater_upstream_requests_total", provider="stripe", outcome="success",
                        status_class="2xx") == 2
    assert result.value("headwater_upstream_request_duration_seconds_count", provider="stripe") == 2
    assert 0 < result.value("headwater_upstream_request_duration_seconds_sum", provider="stripe") < 10
    assert result.value("headwater_budget_wait_seconds_count", provider="stripe", priority="interactive") == 2
    # The sync's rate limit, 10,000 per second: one window, seen by the pacer now.
    assert result.value("headwater_budget_requests_limit", provider="stripe", window="1s") == 10_000
    used = result.value("headwater_budget_requests_used", provider="stripe", window="1s")
    remaining = result.value("headwater_budget_requests_remaining", provider="stripe", window="1s")
    assert used in (0, 1, 2) and used + remaining == 10_000
    assert result.value("headwater_budget_paused_credentials", provider="stripe") == 0
    assert_no_id_labels(result)


@sqlite_only
async def test_a_spent_budget_counts_a_pause_and_the_call_it_then_refuses(running, acme, fake_provider):
    github = await fake_provider("github")
    github.limit(1, window=3600)  # its answer says 0 left until a reset an hour away
    made = await acme.rest.post("/v1/credentials", json={"provider": "github", **credential_for(github)})
    credential_id = made.json()["id"]

    first = await acme.rest.get(f"/v1/proxy/credential/{credential_id}/user")
    refused = await acme.rest.get(f"/v1/proxy/credential/{credential_id}/user")
    result = await scrape(running)

    assert first.status_code == 200 and refused.status_code == 429
    assert result.value("headwater_budget_pauses_total", provider="github") == 1
    assert result.value("headwater_budget_exhausted_total", provider="github") == 1
    assert result.value("headwater_budget_paused_credentials", provider="github") == 1
    assert result.value("headwater_upstream_requests_total", provider="github") == 1  # nothing more was sent
    assert result.value("headwater_proxy_requests_total", route="credential", status="429") == 1


@sqlite_only
async def test_the_budget_windows_are_read_from_the_shared_pacer_too(database_url, fake_provider):
    reason = await redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    running = await start(database_url, redis_url=TEST_REDIS_URL)
    client = await _client_for(running, "acme")
    try:
        stripe = await fake_provider("stripe")
        sync = await create_sync(client, stripe, "stripe:customer",
                                 rate_limit={"allowed_requests": 100, "interval": 60,
                                             "windows": [{"allowed_requests": 5000, "interval": 86400}]})
        for _ in range(2):
            assert (await client.rest.get(f"/v1/proxy/sync/{sync['id']}/v1/customers")).status_code == 200
        result = await scrape(running)
    finally:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))

    for window, limit in (("60s", 100), ("86400s", 5000)):
        assert result.value("headwater_budget_requests_limit", provider="stripe", window=window) == limit
        assert result.value("headwater_budget_requests_used", provider="stripe", window=window) == 2
        assert result.value("headwater_budget_requests_remaining", provider="stripe", window=window) == limit - 2


@sqlite_only
async def test_a_mutation_is_timed_by_provider_kind_and_result(running, acme, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(acme, stripe, "stripe:customer")

    created = await acme.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
        "records": [{"data": {"email": "leto@arrakis.org"}}],
    })
    refused = await acme.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer", "records": [{"data": {}}],
    })
    result = await scrape(running)

    assert created.status_code == 200 and refused.status_code == 400
    assert result.value("headwater_mutation_duration_seconds_count", provider="stripe", kind="create",
                        result="ok") == 1
    # Refused before the sync was read: no provider yet.
    assert result.value("headwater_mutation_duration_seconds_count", provider="", kind="create",
                        result="INVALID_ARGUMENT") == 1
    assert result.value("headwater_upstream_requests_total", provider="stripe", outcome="success") == 1


async def test_consumer_next_and_ack_move_its_pending_and_ack_pending_messages(running, acme, fake_provider):
    stripe = await fake_provider("stripe")
    sync = await create_sync(acme, stripe, "stripe:customer")
    made = await acme.rest.post("/v1/http-consumers", json={"name": "orders", "filters": [{"sync_id": sync["id"]}]})
    consumer = made.json()
    url = f"/v1/http-consumers/{consumer['id']}"
    for email in ("a@example.com", "b@example.com"):
        written = await acme.rest.post("/v1/mutations/run", json={
            "kind": "create", "sync_id": sync["id"], "collection_id": "stripe:customer",
            "records": [{"data": {"email": email}}],
        })
        assert written.status_code == 200, written.text

    queued = await scrape(running)
    taken = (await acme.rest.get(f"{url}/next", params={"batch_size": 1})).json()
    in_flight = await scrape(running)
    [message] = taken["data"]
    acked = await acme.rest.post(f"{url}/ack", json={"ack_tokens": [message["ack_token"]]})
    after = await scrape(running)

    assert acked.status_code == 200
    assert queued.value("headwater_consumer_pending_messages", kind="pull") == 2
    assert queued.value("headwater_consumer_ack_pending_messages", kind="pull") == 0
    assert in_flight.value("headwater_consumer_pending_messages", kind="pull") == 1
    assert in_flight.value("headwater_consumer_ack_pending_messages", kind="pull") == 1
    assert in_flight.value("headwater_consumer_deliveries_total", kind="pull") == 1
    assert after.value("headwater_consumer_pending_messages", kind="pull") == 1
    assert after.value("headwater_consumer_ack_pending_messages", kind="pull") == 0
    assert after.value("headwater_consumer_parked_messages", kind="pull") == 0
    assert after.value("headwater_consumer_redeliveries_total", kind="pull") == 0

    # Nacked and taken again: a redelivery.
    again = (await acme.rest.get(f"{url}/next")).json()
    await acme.rest.post(f"{url}/nack", json={"ack_tokens": [again["data"][0]["ack_token"]]})
    await acme.rest.get(f"{url}/next")
    redelivered = await scrape(running)
    assert redelivered.value("headwater_consumer_deliveries_total", kind="pull") == 3
    assert redelivered.value("headwater_consumer_redeliveries_total", kind="pull") == 1
    assert_no_id_labels(redelivered)


async def test_webhook_posts_count_their_failures_and_the_redelivery(database_url, receiver):
    running = await start(database_url, webhook_retry_seconds=0.05)
    client = await _client_for(running, "acme")
    try:
        sync = await make_sync(client)
        await make_webhook(client, receiver.url, sync["id"])
        receiver.failures = [503]  # the first POST fails, its retry is taken
        await write(running, sync["id"], "stripe:customer", Change("cus_1", {"email": "paul@arrakis.org"}))
        await eventually(lambda: len(receiver.posts) == 2)
        await asyncio.sleep(0.1)  # the ack of the second POST
        result = await scrape(running)
    finally:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))

    assert result.value("headwater_webhook_deliveries_total", kind="webhook", result="failure") == 1
    assert result.value("headwater_webhook_deliveries_total", kind="webhook", result="success") == 1
    assert result.value("headwater_webhook_duration_seconds_count", kind="webhook") == 2
    assert result.value("headwater_consumer_deliveries_total", kind="webhook") == 2
    assert result.value("headwater_consumer_redeliveries_total", kind="webhook") == 1
    assert result.value("headwater_consumer_pending_messages", kind="webhook") == 0
    assert result.value("headwater_consumer_ack_pending_messages", kind="webhook") == 0


async def test_a_sync_pass_shows_records_written_backfill_state_health_and_time_since_the_pass(
    database_url, fake_provider
):
    running = await start(database_url, **FAST_ENGINE)
    client = await _client_for(running, "acme")
    try:
        stripe = await fake_provider("stripe")
        stripe.seed("customers", n=3)
        sync = await create_sync(client, stripe, "stripe:customer", "stripe:subscription")
        await eventually(lambda: backfilled(client, sync["id"]))
        # A collection taken out of the sync keeps its state row, and counts no more.
        narrowed = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"collection_ids": ["stripe:customer"]})
        assert narrowed.status_code == 200, narrowed.text
        await passes(client, sync["id"], 1)
        result = await scrape(running)
    finally:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))

    labels = {"provider": "stripe", "collection": "stripe:customer"}
    assert result.value("headwater_sync_records_written_total", **labels) == 3
    assert result.value("headwater_sync_collections", **labels, backfill_state="completed") == 1
    assert result.value("headwater_sync_records_synced", **labels, backfill_state="completed") == 3
    assert 0 <= result.value("headwater_sync_seconds_since_last_pass", **labels) < 30
    assert result.value("headwater_sync_collections", collection="stripe:subscription") == 0
    assert not result.matching("headwater_sync_seconds_since_last_pass", collection="stripe:subscription")
    assert result.value("headwater_syncs", provider="stripe", health="healthy") == 1
    assert result.value("headwater_credentials", provider="stripe", health="healthy") == 1
    assert result.value("headwater_budget_wait_seconds_count", provider="stripe", priority="background") >= 2
    assert result.value("headwater_sync_failures_total") == 0
    assert_no_id_labels(result)


async def test_ids_are_labels_only_with_the_per_credential_setting(database_url, fake_provider):
    running = await start(database_url, metrics_per_credential=True)
    client = await _client_for(running, "acme")
    try:
        stripe = await fake_provider("stripe")
        sync = await create_sync(client, stripe, "stripe:customer")
        consumer = (await client.rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync["id"]}]})).json()
        await client.rest.get(f"/v1/proxy/sync/{sync['id']}/v1/customers")
        await client.rest.get(f"/v1/http-consumers/{consumer['id']}/next")
        result = await scrape(running)
    finally:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))

    credential = sync["credential_id"]
    assert result.value("headwater_upstream_requests_total", provider="stripe", credential_id=credential) == 1
    assert result.value("headwater_budget_requests_limit", provider="stripe", credential_id=credential) == 10_000
    assert result.value("headwater_syncs", provider="stripe", health="healthy", sync_id=sync["id"]) == 1
    assert result.value("headwater_credentials", provider="stripe", credential_id=credential) == 1
    assert result.matching("headwater_consumer_pending_messages", kind="pull", consumer_id=consumer["id"])
    # Histograms never carry ids (a series per bucket per id would be too many).
    assert not ID_LABELS & {k for s in result.matching("headwater_upstream_request_duration_seconds_bucket")
                            for k in s.labels}


@sqlite_only
async def test_the_metrics_token_and_an_address_of_its_own(database_url):
    running = await start(database_url, metrics_address="127.0.0.1:0", metrics_token="scrape-me")
    try:
        async with httpx.AsyncClient() as http:
            on_rest = await http.get(f"{running.http_url}/metrics")
            url = f"http://127.0.0.1:{running.server.metrics_port}/metrics"
            without = await http.get(url)
            wrong = await http.get(url, headers={"authorization": "Bearer nope"})
        result = await scrape(running, authorization="Bearer scrape-me")
    finally:
        await finish("stopping the server", running.server.stop(grace=1))

    assert running.server.metrics_port != running.server.http_port
    assert on_rest.status_code == 404
    assert without.status_code == 401 and wrong.status_code == 401
    assert "HEADWATER_METRICS_TOKEN" in without.json()["message"] and "scrape-me" not in without.text
    assert "process_cpu_seconds_total" in result.names()


@sqlite_only
async def test_process_and_event_loop_figures_and_openmetrics_on_request(running):
    await asyncio.sleep(1.1)  # two measurements of the loop's lag
    result = await scrape(running)
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{running.http_url}/metrics",
                                headers={"accept": "application/openmetrics-text; version=1.0.0"})

    assert result.value("headwater_event_loop_lag_seconds_count") >= 1
    assert not math.isnan(result.value("headwater_event_loop_lag_seconds_sum"))
    assert result.value("process_cpu_seconds_total") > 0
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert any(f.name == "headwater_event_loop_lag_seconds" for f in openmetrics_families(answer.text))


def test_the_settings_read_from_the_environment():
    env = {"HEADWATER_DATABASE_URL": "postgresql://db.example.com/headwater", "HEADWATER_SECRET_KEY": KEY}
    default = Settings.from_env(env)
    configured = Settings.from_env({**env, "HEADWATER_METRICS_ADDRESS": "0.0.0.0:9464",
                                    "HEADWATER_METRICS_TOKEN": "scrape-me", "HEADWATER_METRICS_PER_CREDENTIAL": "1"})

    assert (default.metrics_address, default.metrics_token, default.metrics_per_credential) == (None, None, False)
    assert (configured.metrics_address, configured.metrics_token, configured.metrics_per_credential) == (
        "0.0.0.0:9464", "scrape-me", True)
    assert "scrape-me" not in repr(configured)
