"""The providers' own Python SDKs, for the providers Headwater syncs (issue 13), pointed at the proxy.

Each test configures the SDK as its documentation says, with only two things changed: the base URL
is a sync's proxy prefix (`/v1/proxy/sync/{id}`) and the token is Headwater's API token, in the
place the SDK sends it from (see the README's "Official SDKs through the proxy"). The upstream is
the provider's stateful emulator (tests/fakes/), which answers 401 unless the credential's own auth
arrives: a test passes when the SDK lists and creates records of the collection Headwater syncs,
parses the answers, and the emulator saw the credential's auth and never Headwater's token.

Which SDKs: the providers' official ones on PyPI (asana from Asana, ShopifyAPI from Shopify,
python-intercom from Intercom), and Zenpy for Zendesk, a community SDK that Zendesk's developer
documentation lists among its API clients. Linear, Pipedrive, Notion, Airtable and Greenhouse
publish no official Python SDK (see the README).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from sync_support import create_sync

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def proxy_prefix(client, fake, collection_id: str, **fields) -> str:
    """The proxy URL of a new sync of `collection_id` whose credential reaches `fake`."""
    sync = await create_sync(client, fake, collection_id, **fields)
    return f"{client.rest.base_url}/v1/proxy/sync/{sync['id']}"


def assert_only_the_credential_reached(fake, headwater_token: str) -> None:
    """Every request the emulator got carried the credential's auth, and none Headwater's token."""
    assert fake.requests, "the SDK reached the emulator"
    for request in fake.requests:
        assert fake.authorized(request), (request.method, request.path, request.headers)
        sent = " ".join(f"{name}: {value}" for name, value in request.headers) + " " + request.query
        assert headwater_token not in sent, (request.method, request.path)


async def test_asanas_sdk_lists_and_creates_tasks_through_the_proxy(client, fake_provider):
    asana = pytest.importorskip("asana", reason="the asana SDK (dev dependency) is not installed")
    fake = await fake_provider("asana")
    seeded = fake.seed("tasks", n=3)
    prefix = await proxy_prefix(client, fake, "asana:task", metadata={"project": fake.project})

    configuration = asana.Configuration()
    configuration.host = prefix  # the credential's base_url ends in /api/1.0, as Asana's host does
    configuration.access_token = client.token  # sent as Authorization: Bearer
    tasks = asana.TasksApi(asana.ApiClient(configuration))

    listed = await asyncio.to_thread(lambda: list(tasks.get_tasks({"project": fake.project, "limit": 2})))
    created = await asyncio.to_thread(
        tasks.create_task, {"data": {"name": "Write the docs", "projects": [fake.project]}}, {})

    assert [t["gid"] for t in listed] == [t["gid"] for t in seeded]  # all three, over two pages
    assert created["name"] == "Write the docs"
    assert fake.objects("tasks")[created["gid"]]["name"] == "Write the docs"
    assert_only_the_credential_reached(fake, client.token)


def _shopify_calls(prefix: str, headwater_token: str) -> tuple[list, object]:
    """ShopifyAPI's documented session, then the proxy as its site and Headwater's token as Bearer.

    ShopifyAPI keeps its site and headers per thread: the calls run in the thread that set them."""
    import shopify

    session = shopify.Session("acme.myshopify.com", "2025-01", headwater_token)
    shopify.ShopifyResource.activate_session(session)  # X-Shopify-Access-Token: <Headwater's token>
    shopify.ShopifyResource.set_site(prefix)
    shopify.ShopifyResource.headers["Authorization"] = f"Bearer {headwater_token}"
    try:
        products = list(shopify.Product.find(limit=2, no_iter_next=False))  # follows the Link header
        created = shopify.Product.create({"title": "Wax", "vendor": "Acme"})
        return products, created
    finally:
        shopify.ShopifyResource.clear_session()
        shopify.ShopifyResource.headers.pop("Authorization", None)


async def test_shopifys_sdk_lists_and_creates_products_through_the_proxy(client, fake_provider):
    pytest.importorskip("shopify", reason="the ShopifyAPI SDK (dev dependency) is not installed")
    fake = await fake_provider("shopify")
    seeded = fake.seed("products", n=3)
    prefix = await proxy_prefix(client, fake, "shopify:product")

    products, created = await asyncio.to_thread(_shopify_calls, prefix, client.token)

    assert [p.id for p in products] == [p["id"] for p in seeded]
    assert created.errors.errors == {} and created.id is not None
    assert fake.objects("products")[str(created.id)]["title"] == "Wax"
    # the SDK's own X-Shopify-Access-Token (Headwater's token) was replaced by the credential's
    assert_only_the_credential_reached(fake, client.token)


async def test_intercoms_sdk_searches_and_creates_contacts_through_the_proxy(client, fake_provider):
    intercom = pytest.importorskip("intercom", reason="the python-intercom SDK (dev dependency) is not installed")
    fake = await fake_provider("intercom")
    seeded = fake.seed("contacts", n=3)
    prefix = await proxy_prefix(client, fake, "intercom:contact")
    users = intercom.SingleFilterSearchRequest(field="role", operator="=", value="user")

    async with httpx.AsyncClient() as http:
        sdk = intercom.AsyncIntercom(base_url=prefix, token=client.token, httpx_client=http)  # sent as Bearer
        first = await sdk.contacts.search(query=users, pagination=intercom.StartingAfterPaging(per_page=2))
        # python-intercom 5.0.1's pager asks for the first page again and again: page by the cursor
        cursor = first.response.pages.next.starting_after
        second = await sdk.contacts.search(query=users, pagination=intercom.StartingAfterPaging(
            per_page=2, starting_after=cursor))
        created = await sdk.contacts.create(request=intercom.CreateContactRequestWithEmail(
            email="jessica@example.com"))
    found = first.items + second.items

    assert sorted(c.id for c in found) == sorted(c["id"] for c in seeded)
    assert created.email == "jessica@example.com"
    assert fake.objects("contacts")[created.id]["email"] == "jessica@example.com"
    assert_only_the_credential_reached(fake, client.token)


class ThroughProxy(requests.Session):
    """A requests session that sends each request to `prefix/URL`: the proxy's form for an absolute
    URL on the credential's host. For SDKs that build URLs from a host with no setting for a path
    prefix, and take a session of one's own (Zenpy's `session=`)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def request(self, method, url, *args, **kwargs):
        if not url.startswith(self.prefix):
            url = f"{self.prefix}/{url}"
        return super().request(method, url, *args, **kwargs)


def _zendesk_calls(prefix: str, headwater_token: str) -> tuple[list, object]:
    from zenpy import Zenpy
    from zenpy.lib.api_objects import User

    # oauth_token: sent as Authorization: Bearer (an API token would go as Basic, which Headwater
    # does not read); upstream, the credential's API token goes as Zendesk's Basic auth
    zendesk = Zenpy(subdomain="acme", oauth_token=headwater_token, session=ThroughProxy(prefix))
    users = list(zendesk.users.incremental(start_time=0, per_page=2))  # the cursor export, over two pages
    created = zendesk.users.create(User(name="Jessica", email="jessica@example.com"))
    return users, created


async def test_zenpy_reads_the_user_export_and_creates_a_user_through_the_proxy(client, fake_provider, monkeypatch):
    pytest.importorskip("zenpy", reason="the zenpy SDK (dev dependency) is not installed")
    fake = await fake_provider("zendesk")
    seeded = fake.seed("users", n=3)
    prefix = await proxy_prefix(client, fake, "zendesk:user")
    # the emulator stands for https://acme.zendesk.com, as Zenpy's settings for a custom domain say
    emulator = urlsplit(fake.base_url)
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", emulator.scheme)
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", emulator.netloc)

    users, created = await asyncio.to_thread(_zendesk_calls, prefix, client.token)

    assert [u.id for u in users] == [u["id"] for u in seeded]
    assert created.name == "Jessica"
    assert fake.objects("users")[str(created.id)]["email"] == "jessica@example.com"
    assert_only_the_credential_reached(fake, client.token)
