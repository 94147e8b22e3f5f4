"""The provider emulators answer like the real APIs for the calls Headwater makes (tests/fakes/).

Each test talks HTTP to an emulator exactly as a client of the real provider would, so other tests
can trust that what works against the emulator is what the provider does.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest


def api(fake, token: str | None = None, scheme: str = "Bearer") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.base_url,
                             headers={"authorization": f"{scheme} {token or fake.token}"})


# -- Stripe --------------------------------------------------------------------------------------


async def test_stripe_customers_are_created_updated_and_deleted_with_form_bodies(fake_provider):
    stripe = await fake_provider("stripe")
    async with api(stripe) as http:
        created = (await http.post("/v1/customers", data={"email": "paul@arrakis.org", "name": "Paul",
                                                          "metadata[plan]": "pro"})).json()
        assert created["id"].startswith("cus_") and created["object"] == "customer"
        assert created["metadata"] == {"plan": "pro"} and isinstance(created["created"], int)

        updated = await http.post(f"/v1/customers/{created['id']}", data={"name": "Paul Atreides",
                                                                          "metadata[house]": "atreides"})
        assert updated.status_code == 200
        assert updated.json()["email"] == "paul@arrakis.org"  # partial: what was not sent stays
        assert updated.json()["metadata"] == {"plan": "pro", "house": "atreides"}

        deleted = await http.delete(f"/v1/customers/{created['id']}")
        assert deleted.json() == {"id": created["id"], "object": "customer", "deleted": True}
        assert (await http.get(f"/v1/customers/{created['id']}")).json()["deleted"] is True
        assert stripe.objects("customers") == {}

        missing = await http.post("/v1/customers/cus_nope", data={"name": "x"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


async def test_stripe_rejects_bad_input_and_bad_keys_in_its_error_shape(fake_provider):
    stripe = await fake_provider("stripe")
    async with api(stripe) as http:
        invalid = await http.post("/v1/customers", data={"email": "not-an-email"})
        assert invalid.status_code == 400
        assert invalid.json()["error"] == {"message": "Invalid email address: not-an-email",
                                           "type": "invalid_request_error", "param": "email",
                                           "code": "email_invalid"}
        unknown = await http.post("/v1/customers", data={"colour": "red"})
        assert unknown.json()["error"]["param"] == "colour"
    async with api(stripe, token="sk_test_wrong") as http:
        rejected = await http.get("/v1/customers")
        assert rejected.status_code == 401 and rejected.json()["error"]["type"] == "invalid_request_error"
    assert stripe.objects("customers") == {}


async def test_stripe_idempotency_key_replays_the_first_answer(fake_provider):
    stripe = await fake_provider("stripe")
    async with api(stripe) as http:
        headers = {"idempotency-key": "k-1"}
        first = await http.post("/v1/customers", data={"email": "a@b.co"}, headers=headers)
        again = await http.post("/v1/customers", data={"email": "a@b.co"}, headers=headers)
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        assert len(stripe.objects("customers")) == 1

        other = await http.post("/v1/customers", data={"email": "c@d.co"}, headers=headers)
        assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"


async def test_stripe_subscriptions_need_a_customer_and_a_price_and_delete_cancels(fake_provider):
    stripe = await fake_provider("stripe")
    [customer] = stripe.seed("customers")
    async with api(stripe) as http:
        missing = await http.post("/v1/subscriptions", data={"customer": customer["id"]})
        assert missing.json()["error"]["param"] == "items"

        sub = (await http.post("/v1/subscriptions", data={"customer": customer["id"],
                                                          "items[0][price]": "price_pro"})).json()
        assert sub["id"].startswith("sub_") and sub["status"] == "active"
        assert sub["items"]["data"][0]["price"]["id"] == "price_pro"

        canceled = (await http.delete(f"/v1/subscriptions/{sub['id']}")).json()
        assert canceled["status"] == "canceled" and canceled["canceled_at"]
        assert (await http.get("/v1/subscriptions")).json()["data"] == []  # canceled ones are left out...
        listed = (await http.get("/v1/subscriptions", params={"status": "all"})).json()
        assert [s["id"] for s in listed["data"]] == [sub["id"]]  # ...unless asked for


async def test_stripe_lists_page_newest_first_and_deletions_are_events(fake_provider):
    stripe = await fake_provider("stripe")
    seeded = stripe.seed("customers", n=25, at=datetime.now(UTC) - timedelta(hours=1))
    async with api(stripe) as http:
        seen, params = [], {"limit": 10}
        while True:
            page = (await http.get("/v1/customers", params=params)).json()
            assert page["object"] == "list" and page["url"] == "/v1/customers"
            seen += [c["id"] for c in page["data"]]
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        assert seen == [c["id"] for c in reversed(seeded)]

        since = seeded[20]["created"]
        recent = (await http.get("/v1/customers", params={"created[gte]": since, "limit": 100})).json()
        assert [c["id"] for c in recent["data"]] == [c["id"] for c in reversed(seeded[20:])]

        stripe.put("customers", {"id": seeded[1]["id"], "name": "Renamed"})
        stripe.delete("customers", seeded[0]["id"])
        events = (await http.get("/v1/events", params={"type": "customer.deleted"})).json()
        assert [e["data"]["object"]["id"] for e in events["data"]] == [seeded[0]["id"]]
        [updated] = (await http.get("/v1/events", params={"type": "customer.updated"})).json()["data"]
        assert updated["data"]["object"]["name"] == "Renamed"
        assert updated["data"]["previous_attributes"] == {"name": seeded[1]["name"]}


async def test_stripe_invoices_list_by_customer_and_ending_before_pages_backwards(fake_provider):
    stripe = await fake_provider("stripe")
    paul, leto = stripe.seed("customers", n=2)
    invoices = stripe.seed("invoices", n=5, customer=paul["id"]) + stripe.seed("invoices", customer=leto["id"])
    async with api(stripe) as http:
        pauls = (await http.get("/v1/invoices", params={"customer": paul["id"], "limit": 2})).json()
        assert [i["id"] for i in pauls["data"]] == [invoices[4]["id"], invoices[3]["id"]] and pauls["has_more"]
        assert pauls["data"][0]["object"] == "invoice" and pauls["data"][0]["status"] == "paid"

        before = (await http.get("/v1/invoices", params={"customer": paul["id"], "limit": 2,
                                                         "ending_before": invoices[1]["id"]})).json()
        assert [i["id"] for i in before["data"]] == [invoices[3]["id"], invoices[2]["id"]] and before["has_more"]
        assert (await http.get(f"/v1/invoices/{invoices[5]['id']}")).json()["customer"] == leto["id"]


# -- Salesforce ----------------------------------------------------------------------------------

SOBJECTS = "/services/data/v59.0/sobjects"


async def test_salesforce_contacts_are_created_read_patched_and_deleted(fake_provider):
    salesforce = await fake_provider("salesforce")
    async with api(salesforce) as http:
        created = await http.post(f"{SOBJECTS}/Contact", json={"FirstName": "Paul", "LastName": "Atreides",
                                                               "Email": "paul@arrakis.org"})
        assert created.status_code == 201
        id = created.json()["id"]
        assert created.json() == {"id": id, "success": True, "errors": []} and len(id) == 18

        record = (await http.get(f"{SOBJECTS}/Contact/{id}")).json()
        assert record["attributes"] == {"type": "Contact", "url": f"{SOBJECTS}/Contact/{id}"}
        assert record["Id"] == id and record["Email"] == "paul@arrakis.org" and record["IsDeleted"] is False
        assert record["SystemModstamp"].endswith("+0000")

        patched = await http.patch(f"{SOBJECTS}/Contact/{id}", json={"Title": "Duke"})
        assert patched.status_code == 204 and patched.content == b""
        after = salesforce.get("Contact", id)
        assert after["Title"] == "Duke" and after["LastName"] == "Atreides"
        assert after["SystemModstamp"] > record["SystemModstamp"]

        assert (await http.delete(f"{SOBJECTS}/Contact/{id}")).status_code == 204
        gone = await http.get(f"{SOBJECTS}/Contact/{id}")
        assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
        assert salesforce.deleted("contact") == [id]


async def test_salesforce_validation_errors_are_lists_naming_the_field(fake_provider):
    salesforce = await fake_provider("salesforce")
    async with api(salesforce) as http:
        bad_email = await http.post(f"{SOBJECTS}/Contact", json={"LastName": "A", "Email": "nope"})
        assert bad_email.status_code == 400
        assert bad_email.json() == [{"message": "Invalid email", "errorCode": "INVALID_EMAIL_ADDRESS",
                                     "fields": ["Email"]}]
        no_name = await http.post(f"{SOBJECTS}/Account", json={"Industry": "Spice"})
        assert no_name.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING" and no_name.json()[0]["fields"] == ["Name"]
        missing = await http.get(f"{SOBJECTS}/Task/00T000000000000AAA")
        assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
        malformed = await http.get("/services/data/v59.0/query", params={"q": "SELECT FROM"})
        assert malformed.status_code == 400 and malformed.json()[0]["errorCode"] == "MALFORMED_QUERY"
    async with api(salesforce, token="expired") as http:
        rejected = await http.get(f"{SOBJECTS}/Contact/x")
        assert rejected.status_code == 401 and rejected.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert salesforce.objects("Contact") == {} and salesforce.objects("Account") == {}


async def test_salesforce_soql_pages_by_systemmodstamp_and_queryall_shows_deletions(fake_provider):
    salesforce = await fake_provider("salesforce")
    start = datetime.now(UTC) - timedelta(days=1)
    contacts = salesforce.seed("Contact", n=450, at=start)
    salesforce.delete("Contact", contacts[0]["Id"])
    soql = ("SELECT Id, LastName, SystemModstamp FROM Contact WHERE SystemModstamp > 2020-01-01T00:00:00Z "
            "ORDER BY SystemModstamp ASC")
    async with api(salesforce) as http:
        http.headers["sforce-query-options"] = "batchSize=200"
        page = (await http.get("/services/data/v59.0/query", params={"q": soql})).json()
        records = page["records"]
        assert page["totalSize"] == 449 and page["done"] is False and len(records) == 200
        assert set(records[0]) == {"attributes", "Id", "LastName", "SystemModstamp"}
        while not page["done"]:
            page = (await http.get(page["nextRecordsUrl"])).json()
            records += page["records"]
        stamps = [r["SystemModstamp"] for r in records]
        assert len(records) == 449 and stamps == sorted(stamps)

        everything = (await http.get("/services/data/v59.0/queryAll",
                                     params={"q": "SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true"})).json()
        assert everything["records"] == [{"attributes": everything["records"][0]["attributes"],
                                          "Id": contacts[0]["Id"], "IsDeleted": True}]

        window = {"start": start.isoformat(), "end": (datetime.now(UTC) + timedelta(minutes=2)).isoformat()}
        deleted = (await http.get(f"{SOBJECTS}/Contact/deleted/", params=window)).json()
        assert [d["id"] for d in deleted["deletedRecords"]] == [contacts[0]["Id"]]


async def test_salesforce_accounts_and_tasks_and_the_updated_resource(fake_provider):
    salesforce = await fake_provider("salesforce")
    async with api(salesforce) as http:
        account = (await http.post(f"{SOBJECTS}/Account", json={"Name": "House Atreides"})).json()["id"]
        task = (await http.post(f"{SOBJECTS}/Task", json={"Subject": "Call", "WhatId": account})).json()["id"]
        assert account.startswith("001") and task.startswith("00T")
        assert salesforce.get("Task", task)["Status"] == "Not Started"  # Salesforce's default
        cleared = await http.patch(f"{SOBJECTS}/Account/{account}", json={"Name": None})
        assert cleared.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"

        window = {"start": "2020-01-01T00:00:00+00:00", "end": "2999-01-01T00:00:00+00:00"}
        updated = (await http.get(f"{SOBJECTS}/Account/updated/", params=window)).json()
        assert updated["ids"] == [account] and updated["latestDateCovered"].endswith("+0000")


# -- HubSpot -------------------------------------------------------------------------------------

CONTACTS = "/crm/v3/objects/contacts"


async def test_hubspot_contacts_are_created_patched_and_archived(fake_provider):
    hubspot = await fake_provider("hubspot")
    async with api(hubspot) as http:
        created = await http.post(CONTACTS, json={"properties": {"email": "paul@arrakis.org", "firstname": "Paul"}})
        assert created.status_code == 201
        contact = created.json()
        assert contact["properties"]["email"] == "paul@arrakis.org"
        assert contact["properties"]["hs_object_id"] == contact["id"] and contact["archived"] is False
        assert contact["createdAt"].endswith("Z") and len(contact["createdAt"]) == 24  # ms precision
        twice = await http.post(CONTACTS, json={"properties": {"email": "PAUL@arrakis.org"}})
        assert twice.status_code == 409 and twice.json()["category"] == "CONFLICT"  # emails are unique

        patched = await http.patch(f"{CONTACTS}/{contact['id']}", json={"properties": {"lastname": "Atreides"}})
        assert patched.status_code == 200
        assert patched.json()["properties"]["firstname"] == "Paul"
        assert patched.json()["updatedAt"] > contact["updatedAt"]

        assert (await http.delete(f"{CONTACTS}/{contact['id']}")).status_code == 204
        assert (await http.get(f"{CONTACTS}/{contact['id']}")).status_code == 404
        archived = (await http.get(f"{CONTACTS}/{contact['id']}", params={"archived": "true"})).json()
        assert archived["archived"] is True and "archivedAt" in archived

        invalid = await http.post(CONTACTS, json={"properties": {"email": "nope"}})
        assert invalid.status_code == 400
        assert invalid.json()["category"] == "VALIDATION_ERROR"
        assert invalid.json()["message"].startswith("Property values were not valid: ")
    async with api(hubspot, token="pat-na1-wrong") as http:
        rejected = await http.get(CONTACTS)
        assert rejected.status_code == 401 and rejected.json()["category"] == "INVALID_AUTHENTICATION"


async def test_hubspot_trades_the_apps_refresh_token_for_access_tokens_and_refuses_others(fake_provider):
    hubspot = await fake_provider("hubspot")
    async with httpx.AsyncClient(base_url=hubspot.base_url) as http:
        form = {"grant_type": "refresh_token", "client_id": "app", "client_secret": "shh"}
        granted = await http.post("/oauth/v1/token", data={**form, "refresh_token": hubspot.refresh_token})
        refused = await http.post("/oauth/v1/token", data={**form, "refresh_token": "revoked"})

        assert granted.status_code == 200
        tokens = granted.json()
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 1800
        assert tokens["refresh_token"] == hubspot.refresh_token  # HubSpot's v1 keeps the refresh token
        assert refused.status_code == 400 and refused.json()["status"] == "BAD_REFRESH_TOKEN"
    async with api(hubspot, token=tokens["access_token"]) as http:
        assert (await http.get(CONTACTS)).status_code == 200


async def test_hubspot_lists_page_with_after_and_search_finds_recent_changes(fake_provider):
    hubspot = await fake_provider("hubspot")
    contacts = hubspot.seed("contacts", n=25, at=datetime.now(UTC) - timedelta(hours=1))
    hubspot.delete("contacts", contacts[0]["id"])
    async with api(hubspot) as http:
        seen, params = [], {"limit": 10}
        while True:
            page = (await http.get(CONTACTS, params=params)).json()
            seen += [c["id"] for c in page["results"]]
            if "paging" not in page:
                break
            params["after"] = page["paging"]["next"]["after"]
        assert seen == [c["id"] for c in contacts[1:]]
        archived = (await http.get(CONTACTS, params={"archived": "true"})).json()
        assert [c["id"] for c in archived["results"]] == [contacts[0]["id"]]

        cutoff = int(time.time() * 1000)
        hubspot.put("contacts", {"id": contacts[5]["id"], "properties": {"firstname": "Changed"}})
        search = {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                                 "value": str(cutoff)}]}],
                  "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                  "properties": ["firstname"], "limit": 100}
        found = (await http.post(f"{CONTACTS}/search", json=search)).json()
        assert found["total"] == 1 and found["results"][0]["properties"]["firstname"] == "Changed"


# -- GitHub --------------------------------------------------------------------------------------


async def test_github_issues_page_through_link_headers_and_filter_by_since(fake_provider):
    github = await fake_provider("github")
    issues = github.seed("octo/spice", n=45, at=datetime.now(UTC) - timedelta(hours=2))
    github.put("octo/spice", {"number": 3, "state": "closed"})
    async with api(github, scheme="token") as http:
        response = await http.get("/repos/octo/spice/issues", params={"state": "all", "per_page": 20})
        numbers = [i["number"] for i in response.json()]
        while "next" in response.links:
            response = await http.get(response.links["next"]["url"])  # absolute URLs, as GitHub sends
            numbers += [i["number"] for i in response.json()]
        assert numbers == [i["number"] for i in reversed(issues)]

        open_only = (await http.get("/repos/octo/spice/issues", params={"per_page": 100})).json()
        assert 3 not in [i["number"] for i in open_only] and len(open_only) == 44

        since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = (await http.get("/repos/octo/spice/issues", params={"state": "all", "since": since})).json()
        assert [(i["number"], i["state"]) for i in changed] == [(3, "closed")]
    async with api(github, token="ghp_wrong") as http:
        rejected = await http.get("/repos/octo/spice/issues")
        assert rejected.status_code == 401 and rejected.json()["message"] == "Bad credentials"


async def test_github_issues_are_created_closed_and_gone_when_deleted(fake_provider):
    github = await fake_provider("github")
    github.seed("octo/spice", n=0)  # the repository exists, without issues
    async with api(github) as http:
        created = await http.post("/repos/octo/spice/issues", json={"title": "Sandworm sighted"})
        assert created.status_code == 201 and created.json()["number"] == 1
        untitled = await http.post("/repos/octo/spice/issues", json={"body": "no title"})
        assert untitled.status_code == 422

        closed = (await http.patch("/repos/octo/spice/issues/1", json={"state": "closed"})).json()
        assert closed["state"] == "closed" and closed["closed_at"] is not None
        github.delete("octo/spice", 1)
        assert (await http.get("/repos/octo/spice/issues/1")).status_code == 410
        assert (await http.get("/repos/octo/elsewhere/issues")).status_code == 404


# -- Every provider ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider, path", [("stripe", "/v1/customers"), ("salesforce", f"{SOBJECTS}/Contact/x"),
                                            ("hubspot", CONTACTS), ("github", "/repos/o/r/issues")])
async def test_injected_failures_delay_and_the_request_log(fake_provider, provider, path):
    fake = await fake_provider(provider)
    fake.fail_next(503, times=2, retry_after=3, path_contains=path)
    async with api(fake) as http:
        first = await http.get(path, headers={"user-agent": "tests"})
        second = await http.get(path)
        third = await http.get(path)
        assert (first.status_code, second.status_code) == (503, 503) and first.headers["retry-after"] == "3"
        assert third.status_code != 503
        fake.fail_next(401)
        assert (await http.get(path)).status_code == 401  # in the shape of a rejected token

        fake.delay = 0.5
        with pytest.raises(httpx.ReadTimeout):
            await http.get(path, timeout=0.1)
    assert [r.path for r in fake.requests] == [path] * 5
    assert fake.requests[0].header("user-agent") == "tests"


# -- the emulators' own lifecycle -----------------------------------------------------------------


async def test_an_emulator_stops_within_seconds_with_an_answer_still_pending():
    from emulators import start_upstream

    emulator, server, task = await start_upstream()
    async with httpx.AsyncClient(timeout=60) as http:
        pending = asyncio.create_task(http.get(f"{emulator.base_url}/slow", params={"seconds": "600"}))
        while not emulator.requests:  # it has arrived: the emulator sleeps on it
            await asyncio.sleep(0.01)
        started = time.monotonic()
        server.should_exit = True
        await asyncio.wait_for(task, 30)  # uvicorn waited for the answer: ten minutes
        stopped = time.monotonic() - started
        await asyncio.gather(pending, return_exceptions=True)

    assert stopped < 5


# -- the emulators of issue 13's providers: what their documentation says, that a catalogue entry
# -- written carelessly would get wrong --------------------------------------------------------


async def test_shopify_refuses_filters_beside_page_info_as_shopify_does(fake_provider):
    shopify = await fake_provider("shopify")
    shopify.seed("products", n=3)
    async with httpx.AsyncClient(base_url=f"{shopify.base_url}/admin/api/2025-01",
                                 headers={"x-shopify-access-token": shopify.token}) as http:
        first = await http.get("/products.json", params={"limit": 2, "updated_at_min": "2000-01-01T00:00:00Z"})
        next_url = first.headers["link"].split(">")[0].lstrip("<")
        assert "page_info=" in next_url and "updated_at_min" not in next_url

        second = await http.get(next_url)
        refused = await http.get(next_url + "&updated_at_min=2000-01-01T00:00:00Z")

    assert [len(first.json()["products"]), len(second.json()["products"])] == [2, 1]
    assert "link" not in second.headers  # the last page
    assert refused.status_code == 400


async def test_intercom_compares_dates_by_day_and_refuses_greater_or_equal(fake_provider):
    intercom = await fake_provider("intercom")
    [contact] = intercom.seed("contacts", n=1)
    later_that_day = contact["updated_at"] // 86_400 * 86_400 + 1  # the same UTC day, maybe later
    async with api(intercom) as http:
        greater = await http.post("/contacts/search", json={
            "query": {"field": "updated_at", "operator": ">", "value": later_that_day - 86_400}})
        same_day = await http.post("/contacts/search", json={
            "query": {"field": "updated_at", "operator": "=", "value": later_that_day}})
        refused = await http.post("/contacts/search", json={
            "query": {"field": "updated_at", "operator": ">=", "value": later_that_day}})

    assert greater.json()["total_count"] == 1 and same_day.json()["total_count"] == 1
    assert refused.status_code == 400 and "Unsupported operator" in refused.json()["errors"][0]["message"]


async def test_linear_checks_queries_against_its_schema_and_keeps_trashed_issues(fake_provider):
    linear = await fake_provider("linear")
    [issue] = linear.seed("issues", n=1)
    linear.delete("issues", issue["id"])
    async with httpx.AsyncClient(base_url=linear.base_url, headers={"authorization": linear.token}) as http:
        unknown = await http.post("/graphql", json={"query": "{ issues { nodes { id colour } } }"})
        default = await http.post("/graphql", json={"query": "{ issues { nodes { id } } }"})
        archived = await http.post("/graphql", json={
            "query": "{ issues(includeArchived: true) { nodes { id trashed } pageInfo { hasNextPage } } }"})

    assert unknown.status_code == 400 and "colour" in unknown.json()["errors"][0]["message"]
    assert default.json()["data"]["issues"]["nodes"] == []
    assert archived.json()["data"]["issues"]["nodes"] == [{"id": issue["id"], "trashed": True}]


async def test_zendesk_export_ends_its_stream_but_still_gives_the_cursor_to_poll_with(fake_provider):
    zendesk = await fake_provider("zendesk")
    zendesk.seed("tickets", n=2)
    async with httpx.AsyncClient(auth=(f"{zendesk.email}/token", zendesk.token)) as http:
        first = (await http.get(f"{zendesk.base_url}/api/v2/incremental/tickets/cursor.json",
                                params={"start_time": 0, "per_page": 1})).json()
        second = (await http.get(first["after_url"])).json()
        zendesk.seed("tickets", n=1)
        polled = (await http.get(second["after_url"])).json()

    assert [len(first["tickets"]), first["end_of_stream"]] == [1, False]
    assert [len(second["tickets"]), second["end_of_stream"]] == [1, True]
    assert [len(polled["tickets"]), polled["end_of_stream"]] == [1, True]


async def test_notion_refuses_a_request_without_its_version_header(fake_provider):
    notion = await fake_provider("notion")
    async with api(notion) as http:
        answer = await http.post("/v1/search", json={})

    assert answer.status_code == 400 and answer.json()["code"] == "missing_version"
