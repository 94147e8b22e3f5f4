"""The sync engine: a new sync backfills its collections into its stream, then follows changes.

Each test runs a Headwater server with a fast engine (tests/sync_support.py) against a stateful
emulator of the provider (tests/fakes/) holding thousands of records.
"""

from __future__ import annotations

import asyncio
import datetime

import httpx
import pytest
from conftest import _client_for
from sync_support import (
    actions,
    assert_no_duplicates,
    backfilled,
    create_sync,
    engine,  # noqa: F401 (a fixture)
    eventually,
    get_sync,
    passes,
    start_engine_server,
    stored_records,
    stream_events,
)

from headwater import cli


async def events_of(running, sync, n: int):
    """Waits until the sync's stream holds at least n events; returns them."""
    return await eventually(lambda: _at_least(running, sync["stream_id"], n))


async def _at_least(running, stream_id, n):
    events = await stream_events(running, stream_id)
    return events if len(events) >= n else None


async def test_stripe_customers_backfill_then_changes_flow_in(engine, fake_provider):
    running, client = engine
    stripe = await fake_provider("stripe")
    customers = stripe.seed("customers", n=2500, email=lambda i: f"user{i}@example.com")

    sync = await create_sync(client, stripe, "stripe:customer")
    done = await eventually(lambda: backfilled(client, sync["id"]))

    events = await stream_events(running, sync["stream_id"])
    assert actions(events) == {"insert": 2500}
    assert {e.record["upstream_id"] for e in events} == {c["id"] for c in customers}
    progress = done["progress"][0]
    assert progress["collection_id"] == "stripe:customer"
    assert progress["backfill_state"] == "completed"
    assert progress["records_synced"] == 2500
    assert done["health"]["status"] == "healthy"

    # Changes upstream reach the stream on their own: one event each, nothing for unchanged records.
    stripe.put("customers", {"id": customers[0]["id"], "name": "Paul Atreides"})
    stripe.delete("customers", customers[1]["id"])
    (added,) = stripe.seed("customers", n=1, email="new@example.com")
    await events_of(running, sync, 2503)
    await passes(client, sync["id"])
    events = await stream_events(running, sync["stream_id"])

    changes = [(e.action, e.record["upstream_id"]) for e in events[2500:]]
    assert sorted(changes) == sorted([
        ("update", customers[0]["id"]), ("delete", customers[1]["id"]), ("insert", added["id"]),
    ])
    updated = next(e for e in events[2500:] if e.action == "update")
    assert updated.record["data"]["name"] == "Paul Atreides"
    deleted = next(e for e in events[2500:] if e.action == "delete")
    assert deleted.record["deleted"] is True
    assert_no_duplicates(events)



# Per provider: the collection, how the emulator names it, how many records, which field the
# upstream id is in, and a change to make upstream. GitHub issues are closed, never deleted.
PROVIDERS = {
    "salesforce": dict(collection="salesforce:contact", seed="Contact", n=2500, key="Id", upstream_id="Id",
                       change={"LastName": "Atreides"}),
    "hubspot": dict(collection="hubspot:contact", seed="contacts", n=1500, key="id", upstream_id="id",
                    change={"properties": {"firstname": "Paul"}}),
    "github": dict(collection="github:issue", seed="issue", n=1000, key="number", upstream_id="id",
                   change={"state": "closed"}, metadata={"repository": "octocat/Hello-World"}, deletes=False),
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_provider_backfills_then_follows_changes(engine, fake_provider, provider):
    case = PROVIDERS[provider]
    running, client = engine
    fake = await fake_provider(provider)
    seeded = fake.seed(case["seed"], n=case["n"])
    ids = [str(r[case["upstream_id"]]) for r in seeded]

    sync = await create_sync(client, fake, case["collection"], metadata=case.get("metadata"))
    await eventually(lambda: backfilled(client, sync["id"]))

    events = await stream_events(running, sync["stream_id"])
    assert actions(events) == {"insert": case["n"]}
    assert sorted(e.record["upstream_id"] for e in events) == sorted(ids)

    fake.put(case["seed"], {case["key"]: seeded[0][case["key"]], **case["change"]})
    expected = [("update", ids[0])]
    if case.get("deletes", True):
        fake.delete(case["seed"], seeded[1][case["key"]])
        expected.append(("delete", ids[1]))
    (added,) = fake.seed(case["seed"], n=1)
    expected.append(("insert", str(added[case["upstream_id"]])))
    await events_of(running, sync, case["n"] + len(expected))
    await passes(client, sync["id"])

    events = await stream_events(running, sync["stream_id"])
    assert sorted((e.action, e.record["upstream_id"]) for e in events[case["n"]:]) == sorted(expected)
    assert_no_duplicates(events)


async def test_max_age_days_limits_what_is_synced_and_prunes_what_ages_out(engine, fake_provider):
    running, client = engine
    salesforce = await fake_provider("salesforce")
    now = datetime.datetime.now(datetime.UTC)
    salesforce.seed("Contact", n=100, at=now - datetime.timedelta(days=10))
    recent = salesforce.seed("Contact", n=50)

    limited = await create_sync(client, salesforce, "salesforce:contact", max_age_days=3)
    everything = await create_sync(client, salesforce, "salesforce:contact")
    await eventually(lambda: backfilled(client, limited["id"]))
    await eventually(lambda: backfilled(client, everything["id"]))

    # Only records changed within the last 3 days are synced...
    assert sorted(r.upstream_id for r in await stored_records(running, limited["id"])) == sorted(
        c["Id"] for c in recent
    )
    assert len(await stored_records(running, everything["id"])) == 150

    # ...and stored records outside the window are pruned, without events (nothing was deleted upstream).
    response = await client.rest.patch(f"/v1/syncs/{everything['id']}", json={"max_age_days": 3})
    assert response.status_code == 200, response.text
    await eventually(lambda: _count_is(running, everything["id"], 50))
    assert actions(await stream_events(running, everything["stream_id"])) == {"insert": 150}


async def _count_is(running, sync_id, n):
    return len(await stored_records(running, sync_id)) == n


async def test_disabling_stops_within_seconds_and_enabling_resumes_from_the_cursor(engine, fake_provider):
    running, client = engine
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=3000)
    stripe.delay = 0.05  # about 1.5 s of backfill: 30 pages
    sync = await create_sync(client, stripe, "stripe:customer")
    await eventually(lambda: _synced_at_least(client, sync["id"], 300))

    response = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"status": "disabled"})
    assert response.status_code == 200, response.text
    await eventually(lambda: _quiet(stripe, seconds=0.5), timeout=3)
    paused = (await get_sync(client, sync["id"]))["progress"][0]
    assert paused["backfill_state"] == "running"
    assert 300 <= paused["records_synced"] < 3000
    assert paused["cursor"]["page"]  # where it will resume

    response = await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"status": "active"})
    assert response.status_code == 200, response.text
    await eventually(lambda: backfilled(client, sync["id"]))
    events = await stream_events(running, sync["stream_id"])
    assert actions(events) == {"insert": 3000}
    assert_no_duplicates(events)
    first_page = [r for r in stripe.requests if r.path == "/v1/customers" and "starting_after" not in r.query]
    assert len(first_page) == 1  # resumed from the cursor, not from the start


async def _synced_at_least(client, sync_id, n):
    sync = await get_sync(client, sync_id)
    return sync["progress"][0]["records_synced"] >= n


async def _quiet(fake, seconds: float) -> bool:
    """True when the fake received no request for `seconds`."""
    before = len(fake.requests)
    await asyncio.sleep(seconds)
    return len(fake.requests) == before


async def test_deleting_a_sync_stops_it_and_removes_its_records_but_not_its_events(engine, fake_provider):
    running, client = engine
    hubspot = await fake_provider("hubspot")
    hubspot.seed("contacts", n=300)
    sync = await create_sync(client, hubspot, "hubspot:contact")
    await eventually(lambda: backfilled(client, sync["id"]))

    response = await client.rest.delete(f"/v1/syncs/{sync['id']}")
    assert response.status_code == 200, response.text

    assert await stored_records(running, sync["id"]) == []
    assert actions(await stream_events(running, sync["stream_id"])) == {"insert": 300}
    await eventually(lambda: _quiet(hubspot, seconds=0.5), timeout=3)
    hubspot.seed("contacts", n=1)
    assert await _quiet(hubspot, seconds=0.5)


async def test_restart_in_the_middle_of_a_backfill_resumes_with_nothing_lost_or_duplicated(database_url, fake_provider):
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=3000)
    stripe.delay = 0.03
    first = await start_engine_server(database_url)
    client = await _client_for(first, "acme")
    sync = await create_sync(client, stripe, "stripe:customer")
    await eventually(lambda: _synced_at_least(client, sync["id"], 500))
    await first.server.stop(grace=1)
    await client.rest.aclose()

    second = await start_engine_server(database_url, secret_key=first.settings.secret_key)
    try:
        async with httpx.AsyncClient(base_url=second.http_url, headers=client.rest.headers) as rest:
            client.rest = rest
            await eventually(lambda: backfilled(client, sync["id"]))
        events = await stream_events(second, sync["stream_id"])
    finally:
        await second.server.stop(grace=1)
        await client.channel.close()

    assert actions(events) == {"insert": 3000}
    assert_no_duplicates(events)


async def test_syncs_watch_shows_each_collections_progress(engine, fake_provider, capsys):
    running, client = engine
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=120)
    sync = await create_sync(client, stripe, "stripe:customer", name="Choam")
    await eventually(lambda: backfilled(client, sync["id"]))

    code = await asyncio.to_thread(
        cli.main, ["syncs", "watch", sync["id"], "--once", "--url", running.http_url, "--token", client.token]
    )

    assert code == 0
    screen = capsys.readouterr().out
    assert f"Sync {sync['id']} 'Choam' (stripe, active, continuous)" in screen
    assert "health: healthy" in screen
    row = next(line for line in screen.splitlines() if line.startswith("stripe:customer"))
    assert row.split()[:3] == ["stripe:customer", "completed", "120"]


MUTATED = {
    "stripe": ("stripe:customer", {"email": "paul@arrakis.org", "name": "Paul"}),
    "salesforce": ("salesforce:contact", {"LastName": "Atreides", "Email": "paul@arrakis.org"}),
    "hubspot": ("hubspot:contact", {"email": "paul@arrakis.org", "firstname": "Paul"}),
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", MUTATED.values(), ids=MUTATED)
async def test_a_record_a_mutation_wrote_is_not_streamed_again_when_the_sync_reads_it(engine, fake_provider, case):
    running, client = engine
    collection_id, data = case
    fake = await fake_provider(collection_id.split(":")[0])
    fake.seed(collection_id.split(":")[1], n=3)
    sync = await create_sync(client, fake, collection_id)
    await eventually(lambda: backfilled(client, sync["id"]))

    response = await client.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync["id"], "collection_id": collection_id, "records": [{"data": data}],
    })
    assert response.status_code == 200, response.text
    await passes(client, sync["id"], 3)

    events = await stream_events(running, sync["stream_id"])
    assert actions(events) == {"insert": 4}  # the mutation's insert; the sync read it back unchanged
