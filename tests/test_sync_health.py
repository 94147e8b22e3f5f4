"""Sync health as users see it, and the budget a sync shares with interactive calls.

healthy -> error on 401/403 (with a message saying what to fix) -> healthy once fixed;
healthy -> degraded on 5xx (retried with backoff) -> healthy once the upstream answers again.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fakes import start_fake_provider
from sync_support import backfilled, create_sync, engine, eventually, get_sync  # noqa: F401 (engine: a fixture)


@pytest.fixture
async def stripe():
    fake = await start_fake_provider("stripe")
    fake.seed("customers", n=250)
    yield fake
    await fake.close()


async def health_is(client, sync_id: str, status: str) -> dict | None:
    sync = await get_sync(client, sync_id)
    return sync["health"] if sync["health"]["status"] == status else None


async def test_rejected_credential_is_an_error_saying_what_to_fix_until_it_is_fixed(engine, stripe):
    running, client = engine
    sync = await create_sync(client, stripe, "stripe:customer", token="sk_test_revoked")

    health = await eventually(lambda: health_is(client, sync["id"], "error"))
    assert f"rejected credential {sync['credential_id']} (HTTP 401)" in health["last_error"]
    assert "update its secret or reconnect" in health["last_error"]
    assert health["last_error_at"]
    assert "sk_test_revoked" not in health["last_error"]

    response = await client.rest.patch(
        f"/v1/credentials/{sync['credential_id']}", json={"properties": {"secret": stripe.token}}
    )
    assert response.status_code == 200, response.text
    await eventually(lambda: health_is(client, sync["id"], "healthy"))
    done = await eventually(lambda: backfilled(client, sync["id"]))
    assert done["progress"][0]["records_synced"] == 250


async def test_missing_permission_is_an_error_that_clears_by_itself(engine, stripe):
    running, client = engine
    stripe.fail_next(403, times=3, path_contains="/v1/customers")
    sync = await create_sync(client, stripe, "stripe:customer")

    health = await eventually(lambda: health_is(client, sync["id"], "error"))
    assert "refused to list Customer records (HTTP 403)" in health["last_error"]
    assert f"give credential {sync['credential_id']} permission to read Customer" in health["last_error"]
    progress = (await get_sync(client, sync["id"]))["progress"][0]
    assert progress["health"] == "error" and "HTTP 403" in progress["last_error"]

    await eventually(lambda: backfilled(client, sync["id"]))
    health = await eventually(lambda: health_is(client, sync["id"], "healthy"))
    assert "HTTP 403" in health["last_error"]  # the last error and its time stay visible


async def test_upstream_outage_degrades_the_sync_and_it_recovers_by_itself(engine, stripe):
    running, client = engine
    stripe.fail_next(503, times=12, path_contains="/v1/customers")
    sync = await create_sync(client, stripe, "stripe:customer")

    health = await eventually(lambda: health_is(client, sync["id"], "degraded"))
    assert "Stripe answered HTTP 503 while listing Customer; retrying with backoff" == health["last_error"]

    done = await eventually(lambda: backfilled(client, sync["id"]))
    assert done["health"]["status"] == "healthy"
    assert done["progress"][0]["records_synced"] == 250


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sync_and_proxy_share_the_budget_and_the_proxy_keeps_its_share(engine, fake_provider):
    running, client = engine
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=4000)
    sync = await create_sync(client, stripe, "stripe:customer", rate_limit={"allowed_requests": 20, "interval": 1})
    await eventually(lambda: len(stripe.requests) >= 5)

    async def proxy_call():
        started = time.monotonic()
        response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/v1/customers?limit=1")
        return response.status_code, time.monotonic() - started

    calls = []
    for _ in range(8):  # interactive calls while the backfill uses its share
        calls.append(asyncio.create_task(proxy_call()))
        await asyncio.sleep(0.25)
    results = await asyncio.gather(*calls)
    await eventually(lambda: backfilled(client, sync["id"]))

    assert [status for status, _ in results] == [200] * 8
    assert max(took for _, took in results) < 1.0  # never queued behind the whole backfill
    sync_reads = [r.at for r in stripe.requests if "limit=100" in r.query]
    assert len(sync_reads) >= 40
    assert busiest_window([r.at for r in stripe.requests]) <= 20  # the credential's budget: 20 a second
    assert busiest_window(sync_reads) <= 16  # the sync's share: 80% of it


def busiest_window(times: list[float], seconds: float = 0.98) -> int:
    """The most requests that arrived within any window of `seconds` (a little under the interval,
    so that network jitter between two starts a full interval apart cannot count)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best
