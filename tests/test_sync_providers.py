"""Each sync collection added for breadth (issue 13) against its provider's emulator (tests/fakes/):
the engine backfills every page, follows changes, detects deletions where the catalogue says the
provider reports them, the proxy reaches the provider with the credential's auth, a mutation
writes through the collection's `write:` block, and discovery says what was shown here.

The emulators are written from each provider's documentation (paging, change feed, deletions), not
from the catalogue: a catalogue entry that reads the wrong field or pages the wrong way fails here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sync_support import (
    actions, assert_no_duplicates, backfilled, create_sync, engine, eventually, get_sync, passes,  # noqa: F401
    stream_events,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Case:
    seed: str  # the emulator's name of the collection
    n: int  # records seeded: more than a page of the listing for each paging style (1001 > Zendesk's 1000)
    change: dict  # fields an update upstream changes
    key: str = "id"  # the emulator's id field (for put and delete)
    deletes: bool = True  # the catalogue detects deletions of this collection
    metadata: dict = field(default_factory=dict)  # the sync's metadata
    create: dict | None = None  # a mutation's create (None: the collection is read-only)
    proxy: str = ""  # a path the proxy GETs (relative to the credential's base URL)


CASES = {
    "zendesk:ticket": Case("tickets", 1001, {"priority": "urgent"}, proxy="users/me.json",
                           create={"subject": "Help", "comment": {"body": "It broke"}}),
    "zendesk:user": Case("users", 5, {"name": "Paul Atreides"}, create={"name": "Jessica", "email": "j@example.com"}),
    "zendesk:organization": Case("organizations", 1005, {"name": "Acme Ltd"}, deletes=False,
                                 create={"name": "Initech"}),
    "shopify:product": Case("products", 260, {"title": "Snowboard X"}, create={"title": "Wax", "vendor": "Acme"},
                            proxy="shop.json"),
    "shopify:order": Case("orders", 30, {"closed_at": "2025-01-02T00:00:00+00:00"},
                          create={"line_items": [{"title": "Wax", "quantity": 1, "price": "9.00"}]}),
    "shopify:customer": Case("customers", 260, {"first_name": "Paul"}, deletes=False,
                             create={"first_name": "Jessica", "email": "j@example.com"}),
    "linear:issue": Case("issues", 120, {"title": "Fix it for real"}, create={"title": "New", "teamId": "t1"}),
    "linear:project": Case("projects", 30, {"name": "Renamed"}, create={"name": "Launch", "teamIds": ["t1"]}),
    "linear:comment": Case("comments", 110, {"body": "Fixed in main"}, deletes=False,
                           create={"body": "Looking", "issueId": "issue-1"}),
    "pipedrive:deal": Case("deals", 520, {"value": 5000}, create={"title": "Big one", "value": 100},
                           proxy="v1/users/me"),
    "pipedrive:organization": Case("organizations", 10, {"name": "Acme Ltd"}, deletes=False,
                                   create={"name": "Initech"}),
    "pipedrive:person": Case("persons", 20, {"name": "Paul Atreides"}, deletes=False, create={"name": "Jessica"}),
    "asana:task": Case("tasks", 130, {"name": "Renamed"}, key="gid", deletes=False,
                       metadata={"project": "1200000000000001"},
                       create={"name": "Write the docs", "projects": ["1200000000000001"]}, proxy="users/me"),
    "asana:project": Case("projects", 105, {"name": "Renamed"}, key="gid", deletes=False,
                          metadata={"workspace": "1100000000000001"},
                          create={"name": "Launch", "workspace": "1100000000000001"}),
    "intercom:contact": Case("contacts", 160, {"name": "Paul Atreides"}, deletes=False,
                             create={"email": "jessica@example.com", "name": "Jessica"}, proxy="me"),
    "intercom:conversation": Case("conversations", 160, {"state": "closed"}, deletes=False),
    "notion:page": Case("pages", 120, {"properties": {"title": {"id": "title", "type": "title", "title": [
                            {"type": "text", "plain_text": "Renamed"}]}}}, deletes=False, proxy="users/me",
                        create={"parent": {"page_id": "p1"}, "properties": {}}),
    "airtable:record": Case("records", 230, {"fields": {"Name": "Renamed", "Status": "Done"}}, deletes=False,
                            metadata={"base_id": "appA1b2C3d4E5f6G7", "table": "Tasks"},
                            create={"Name": "Write the docs"}, proxy="meta/whoami"),
    "greenhouse:candidate": Case("candidates", 520, {"title": "Staff Engineer"}, deletes=False, proxy="candidates"),
    "greenhouse:job": Case("jobs", 12, {"status": "closed"}, deletes=False),
}


def _fake_name(collection_id: str) -> str:
    return collection_id.split(":")[0]


async def _events_after(running, sync, count: int):
    async def enough():
        events = await stream_events(running, sync["stream_id"])
        return events if len(events) >= count else None
    return await eventually(enough)


@pytest.mark.parametrize("collection_id", CASES)
async def test_a_collection_backfills_follows_changes_detects_deletions_and_is_proxied(engine, fake_provider,
                                                                                       collection_id):
    case = CASES[collection_id]
    running, client = engine
    fake = await fake_provider(_fake_name(collection_id))
    seeded = fake.seed(case.seed, n=case.n)
    ids = [str(r[case.key]) for r in seeded]

    sync = await create_sync(client, fake, collection_id, metadata=case.metadata or None)
    await eventually(lambda: backfilled(client, sync["id"]))
    events = await stream_events(running, sync["stream_id"])
    assert actions(events) == {"insert": case.n}
    assert sorted(e.record["upstream_id"] for e in events) == sorted(ids)

    fake.put(case.seed, {case.key: seeded[0][case.key], **case.change})
    expected = [("update", ids[0])]
    if case.deletes:
        fake.delete(case.seed, seeded[1][case.key])
        expected.append(("delete", ids[1]))
    (added,) = fake.seed(case.seed, n=1)
    expected.append(("insert", str(added[case.key])))
    await _events_after(running, sync, case.n + len(expected))
    await passes(client, sync["id"])

    events = await stream_events(running, sync["stream_id"])
    assert sorted((e.action, e.record["upstream_id"]) for e in events[case.n:]) == sorted(expected)
    updated = next(e for e in events[case.n:] if e.action == "update")
    assert {k: updated.record["data"].get(k) for k in case.change} == case.change
    assert_no_duplicates(events)

    if case.proxy:  # and the proxy reaches the provider through the same sync, with the credential's auth
        response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/{case.proxy}")
        assert response.status_code == 200, response.text
        assert fake.requests[-1].path.endswith("/" + case.proxy)


WRITABLE = {cid: case for cid, case in CASES.items() if case.create is not None}


@pytest.mark.parametrize("collection_id", WRITABLE)
async def test_a_mutation_creates_updates_and_deletes_through_the_collection(engine, fake_provider, collection_id):
    case = WRITABLE[collection_id]
    running, client = engine
    fake = await fake_provider(_fake_name(collection_id))
    fake.seed(case.seed, n=1)
    sync = await create_sync(client, fake, collection_id, metadata=case.metadata or None)
    await eventually(lambda: backfilled(client, sync["id"]))

    async def run(kind: str, **request) -> dict:
        response = await client.rest.post("/v1/mutations/run", json={
            "kind": kind, "sync_id": sync["id"], "collection_id": collection_id, **request})
        assert response.status_code == 200, response.text
        [record] = response.json()["records"]
        return record

    created = await run("create", records=[{"data": case.create}])
    upstream_id = created["upstream_id"]
    assert created["deleted"] is False and fake.get(case.seed, upstream_id) is not None
    updated = await run("update", records=[{"upstream_id": upstream_id, "data": case.change}])
    assert updated["upstream_id"] == upstream_id
    assert {k: fake.get(case.seed, upstream_id).get(k) for k in case.change} == case.change
    deleted = await run("delete", upstream_ids=[upstream_id])
    assert deleted["deleted"] is True and fake.get(case.seed, upstream_id) is None


async def test_discovery_shows_what_each_collection_was_shown_to_do(client):
    for collection_id, case in CASES.items():
        answer = await client.rest.get(f"/v1/providers/{_fake_name(collection_id)}")
        assert answer.status_code == 200, answer.text
        shown = {c["id"]: c["capabilities"] for c in answer.json()["collections"]}[collection_id]
        writable = case.create is not None
        assert shown == {"read": True, "changes": shown["changes"], "deletions": case.deletes, "create": writable,
                         "update": writable, "delete": writable}, collection_id


async def test_a_graphql_mutation_refused_with_http_200_is_a_validation_error_naming_the_reason(engine,
                                                                                                  fake_provider):
    running, client = engine
    linear = await fake_provider("linear")
    sync = await create_sync(client, linear, "linear:issue")

    response = await client.rest.post("/v1/mutations/run", json={
        "kind": "update", "sync_id": sync["id"], "collection_id": "linear:issue",
        "records": [{"upstream_id": "no-such-issue", "data": {"title": "x"}}]})

    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Linear validation error: `Entity not found`"
    assert linear.requests[-1].path == "/graphql"


async def test_a_listing_that_names_the_same_page_again_stops_with_an_error_instead_of_looping(engine,
                                                                                                  fake_provider):
    running, client = engine
    zendesk = await fake_provider("zendesk")
    zendesk.seed("organizations", n=1001)
    for item in zendesk.store.items("organizations"):  # a bulk update: more than a page in one second
        item.updated = 1_700_000_000_000
    sync = await create_sync(client, zendesk, "zendesk:organization")

    async def failed():
        progress = (await get_sync(client, sync["id"]))["progress"][0]
        return progress if progress["health"] == "error" else None

    progress = await eventually(failed)
    assert "named the page it was asked for as the next one" in progress["last_error"]
    pages = [r for r in zendesk.requests if r.path.endswith("/incremental/organizations.json")]
    assert len(pages) <= 3  # it did not spin


async def test_the_proxy_carries_a_graphql_query_to_linear_with_its_key_as_sent(engine, fake_provider):
    running, client = engine
    linear = await fake_provider("linear")
    [issue] = linear.seed("issues", n=1)
    sync = await create_sync(client, linear, "linear:issue")

    response = await client.rest.post(f"/v1/proxy/sync/{sync['id']}/graphql",
                                      json={"query": "{ issues { nodes { id title } } }"})

    assert response.status_code == 200, response.text
    assert response.json()["data"]["issues"]["nodes"] == [{"id": issue["id"], "title": issue["title"]}]
    assert linear.requests[-1].header("authorization") == linear.token  # an API key goes without "Bearer"
