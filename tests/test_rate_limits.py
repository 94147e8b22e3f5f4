"""How Headwater reads providers' rate-limit answers, against real loopback emulators.

Each fake provider emulates its provider's rate limit (`fake.limit(allowed, window)`): the budget
headers it sends on every answer (GitHub's x-ratelimit-*, HubSpot's X-HubSpot-RateLimit-*,
Salesforce's Sforce-Limit-Info) and its answer over the budget (GitHub's 403 with remaining 0,
HubSpot's 429, Salesforce's 403 REQUEST_LIMIT_EXCEEDED). Headwater reads those headers as the
catalogue's `limits:` say and pauses the credential before the provider has to refuse anything;
a pause past the caller's deadline is answered 429 with Retry-After at once.
"""

from __future__ import annotations

import time

import pytest
from sync_support import backfilled, create_sync, credential_for, eventually, get_sync

from conftest import TEST_REDIS_URL, redis_unavailable_reason
from test_shared_budget import start_replicas

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def credential(client, fake) -> str:
    response = await client.rest.post("/v1/credentials", json={"provider": fake.name, **credential_for(fake)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def proxied(client, credential_id: str, path: str, **kwargs):
    return await client.rest.request(kwargs.pop("method", "GET"), f"/v1/proxy/credential/{credential_id}/{path}",
                                     **kwargs)


def arrivals(fake) -> list[float]:
    return [request.at for request in fake.requests]


# --- reading the budget before the provider refuses -------------------------------------------------

async def test_githubs_remaining_zero_holds_the_next_call_until_the_reset_and_github_never_refuses(
        client, fake_provider):
    github = await fake_provider("github")
    github.limit(1, window=1.0)  # the reset is sent in whole epoch seconds: 1 to 2 s away
    credential_id = await credential(client, github)

    first = await proxied(client, credential_id, "user")
    second = await proxied(client, credential_id, "user")

    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-remaining"] == "0"
    assert github.rate_limited_answers == 0  # paused before GitHub had to say 403
    reset = int(first.headers["x-ratelimit-reset"])
    assert arrivals(github)[1] - arrivals(github)[0] >= 0.9  # waited for the window to pass
    assert time.time() >= reset - 0.05


async def test_a_reset_an_hour_away_is_answered_429_with_retry_after_at_once(client, fake_provider):
    github = await fake_provider("github")
    github.limit(1, window=3600)
    credential_id = await credential(client, github)

    assert (await proxied(client, credential_id, "user")).status_code == 200
    started = time.monotonic()
    refused = await proxied(client, credential_id, "user")

    assert refused.status_code == 429
    assert 3500 <= int(refused.headers["retry-after"]) <= 3601
    assert "leaves no room before the deadline" in refused.json()["message"]
    assert time.monotonic() - started < 5  # not held for the hour
    assert len(github.requests) == 1  # nothing more reached GitHub


async def test_githubs_403_rate_limit_is_paused_for_and_later_calls_wait_or_get_429(client, fake_provider):
    github = await fake_provider("github")
    github.limit(5000, window=3600, spent=True)  # someone else spent this hour's budget
    credential_id = await credential(client, github)

    met = await proxied(client, credential_id, "user")
    later = await proxied(client, credential_id, "user")

    assert met.status_code == 403  # the proxy gives GitHub's answer as it is
    assert met.json()["message"].startswith("API rate limit exceeded")
    assert later.status_code == 429 and int(later.headers["retry-after"]) >= 3500
    assert github.rate_limited_answers == 1 and len(github.requests) == 1


async def test_hubspots_remaining_headers_hold_the_next_call_for_its_window(client, fake_provider):
    hubspot = await fake_provider("hubspot")
    hubspot.seed("contacts", n=1)
    hubspot.limit(1, window=1.0)
    credential_id = await credential(client, hubspot)

    first = await proxied(client, credential_id, "crm/v3/objects/contacts")
    second = await proxied(client, credential_id, "crm/v3/objects/contacts")

    assert first.status_code == second.status_code == 200
    assert first.headers["x-hubspot-ratelimit-remaining"] == "0"
    assert hubspot.rate_limited_answers == 0
    assert arrivals(hubspot)[1] - arrivals(hubspot)[0] >= 0.9


async def test_salesforces_used_up_allowance_is_answered_429_without_asking_salesforce_again(
        client, fake_provider):
    salesforce = await fake_provider("salesforce")
    salesforce.limit(1, window=24 * 3600)
    credential_id = await credential(client, salesforce)

    first = await proxied(client, credential_id, "services/data/v59.0/sobjects/Contact/003000000000001AAA")
    second = await proxied(client, credential_id, "services/data/v59.0/sobjects/Contact/003000000000001AAA")

    assert first.headers["sforce-limit-info"] == "api-usage=1/1"
    assert second.status_code == 429
    assert 250 <= int(second.headers["retry-after"]) <= 300  # it names no reset: the catalogue's pause_seconds
    assert len(salesforce.requests) == 1 and salesforce.rate_limited_answers == 0


# --- Retry-After, and what may be sent twice ---------------------------------------------------------

async def github_credential_for(client, upstream) -> str:
    response = await client.rest.post("/v1/credentials", json={"provider": "github", "properties": {
        "kind": "github_token", "token": "ghp_test", "base_url": upstream.base_url}})
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.mark.parametrize("retry_after", ["retry_after", "retry_after_date"])
async def test_a_get_is_sent_again_after_retry_after_as_seconds_or_as_an_http_date(client, upstream, retry_after):
    credential_id = await github_credential_for(client, upstream)

    response = await proxied(client, credential_id, "status/429", params={retry_after: "2", "times": "1"})

    assert response.status_code == 200 and response.json()["calls"] == 2
    first, second = upstream.requests
    assert second.at - first.at >= 0.9  # an HTTP date has whole seconds: 1 to 2 s


async def test_a_post_with_an_idempotency_key_is_sent_again_only_to_a_provider_that_deduplicates(
        client, upstream):
    github_id = await github_credential_for(client, upstream)
    stripe = await client.rest.post("/v1/credentials", json={"provider": "stripe", "properties": {
        "kind": "stripe_api_key", "secret": "sk_test_1", "base_url": upstream.base_url}})
    key = {"idempotency-key": "k-1"}

    to_github = await proxied(client, github_id, "status/502", method="POST", params={"times": "1", "p": "g"},
                              headers=key)
    to_stripe = await proxied(client, stripe.json()["id"], "status/502", method="POST",
                              params={"times": "1", "p": "s"}, headers=key)

    assert to_github.status_code == 502  # GitHub does not deduplicate by it: sending twice could write twice
    assert to_stripe.status_code == 200 and to_stripe.json()["calls"] == 2
    assert [r.query for r in upstream.requests] == ["times=1&p=g", "times=1&p=s", "times=1&p=s"]


# --- syncs and mutations --------------------------------------------------------------------------

@pytest.fixture
async def slow_reads(database_url):
    """A fast sync engine whose reads have 1 s each: a GitHub reset 2-3 s away is past it."""
    from sync_support import start_engine_server

    from conftest import _client_for, _close_client, finish

    running = await start_engine_server(database_url, sync_request_timeout=1.0)
    client = await _client_for(running, "acme")
    yield running, client
    await _close_client(client)
    await finish("stopping the server", running.server.stop(grace=1))


async def test_a_sync_meeting_githubs_rate_limit_pauses_then_resumes_and_is_healthy(slow_reads, fake_provider):
    running, client = slow_reads
    github = await fake_provider("github")
    github.seed("issue", n=120, title=lambda i: f"Issue {i}")
    github.limit(5000, window=2.0, spent=True)

    sync = await create_sync(client, github, "github:issue", metadata={"repository": github.repo})

    degraded = await eventually(lambda: _health(client, sync["id"], "degraded"))
    assert "GitHub rate limited the listing of Issue (HTTP 403)" in degraded["last_error"]
    assert "budget is paused and the sync resumes in" in degraded["last_error"]
    done = await eventually(lambda: backfilled(client, sync["id"]))
    assert done["progress"][0]["records_synced"] == 120
    assert (await eventually(lambda: _health(client, sync["id"], "healthy")))["status"] == "healthy"
    assert github.rate_limited_answers == 1  # the pause held every later read until the reset


async def _health(client, sync_id: str, status: str) -> dict | None:
    health = (await get_sync(client, sync_id))["health"]
    return health if health["status"] == status else None


async def test_a_mutation_meeting_salesforces_request_limit_is_429_not_a_refused_credential(client, fake_provider):
    salesforce = await fake_provider("salesforce")
    sync = await create_sync(client, salesforce, "salesforce:contact")
    salesforce.limit(1, window=24 * 3600, spent=True)

    response = await client.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync["id"], "collection_id": "salesforce:contact",
        "records": [{"data": {"LastName": "Atreides"}}]})

    assert response.status_code == 429, response.text
    assert "Salesforce API rate limit exceeded: `TotalRequests Limit exceeded.`" in response.json()["message"]
    assert 250 <= int(response.headers["retry-after"]) <= 300


async def test_a_pause_holds_across_replicas_through_redis(database_url, fake_provider):
    reason = await redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    github = await fake_provider("github")
    first, second = await start_replicas(database_url, 2, redis_url=TEST_REDIS_URL)
    try:
        github.limit(1, window=3600)
        created = await first.rest.post("/v1/credentials", json={"provider": "github", **credential_for(github)})
        credential_id = created.json()["id"]

        spent = await first.rest.get(f"/v1/proxy/credential/{credential_id}/user")
        elsewhere = await second.rest.get(f"/v1/proxy/credential/{credential_id}/user")

        assert spent.status_code == 200 and spent.headers["x-ratelimit-remaining"] == "0"
        assert elsewhere.status_code == 429 and int(elsewhere.headers["retry-after"]) >= 3500
        assert len(github.requests) == 1
    finally:
        await first.close()
        await second.close()
