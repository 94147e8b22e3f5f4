"""Discovery: GET /v1/providers and /v1/providers/{provider} (gRPC ProviderService) describe the
catalogue to any organisation's token: credential kinds with their required properties (secrets
marked), collections with what Headwater can do with them, the default pace, the account facts a
credential needs, and OAuth."""

from __future__ import annotations

import grpc
import httpx
import pytest

from headwater.v1 import provider_pb2, provider_pb2_grpc

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_every_provider_is_listed_in_the_catalogues_order(client):
    answer = await client.rest.get("/v1/providers")

    assert answer.status_code == 200, answer.text
    keys = [p["provider"] for p in answer.json()["data"]]
    assert keys[:3] == ["stripe", "salesforce", "hubspot"] and keys[-1] == "custom"
    assert len(keys) >= 40 and {"gitlab", "jira", "shopify", "zendesk", "xero", "microsoft"} <= set(keys)


async def test_a_provider_with_a_per_account_host_says_which_facts_a_credential_needs(client):
    answer = await client.rest.get("/v1/providers/shopify")

    assert answer.status_code == 200, answer.text
    shopify = answer.json()
    assert shopify["name"] == "Shopify"
    assert shopify["base_url"] == "https://{shop}.myshopify.com/admin/api/2025-01"
    assert shopify["account_facts"] == {"needed": True, "template_properties": ["shop"],
                                        "base_url_properties": [], "account_properties": []}
    [kind] = shopify["credential_kinds"]
    assert kind["kind"] == "shopify_access_token" and kind["verified"] is True
    assert kind["required"] == [{"name": "shop", "secret": False}, {"name": "access_token", "secret": True}]
    assert kind["auth"] == "header" and kind["auth_name"] == "X-Shopify-Access-Token"
    assert "oauth" not in shopify or shopify["oauth"] is None  # its OAuth runs on the shop's own host


async def test_collections_say_what_headwater_can_do_with_them(client):
    stripe = (await client.rest.get("/v1/providers/stripe")).json()

    collections = {c["id"]: c["capabilities"] for c in stripe["collections"]}
    assert collections["stripe:customer"] == {"read": True, "changes": True, "deletions": True,
                                              "create": True, "update": True, "delete": True}
    assert collections["stripe:invoice"] == {"read": True, "changes": True, "deletions": True,
                                             "create": False, "update": False, "delete": False}
    assert stripe["default_rate_limits"] == [{"allowed_requests": 100, "interval_seconds": 1,
                                              "max_concurrent_requests": 0}]
    github = (await client.rest.get("/v1/providers/github")).json()
    assert {c["id"]: c["capabilities"]["read"] for c in github["collections"]} == {
        "github:issue": True, "github:repository": False}


async def test_oauth_says_how_a_connection_is_asked_for(client):
    slack = (await client.rest.get("/v1/providers/slack")).json()
    salesforce = (await client.rest.get("/v1/providers/salesforce")).json()

    assert slack["oauth"] == {"credential_kind": "slack_oauth2", "authorization_url": "https://slack.com/oauth/v2/authorize",
                              "token_url": "https://slack.com/api/oauth.v2.access",
                              "default_scopes": ["channels:read", "users:read"], "scope_separator": ",", "pkce": True}
    assert slack["account_facts"]["needed"] is False
    assert salesforce["account_facts"] == {"needed": True, "template_properties": [],
                                           "base_url_properties": ["instance_url"], "account_properties": ["instance_url"]}
    assert "access_token" in salesforce["credential_kinds"][0]["secret"]


async def test_an_unknown_provider_is_not_found(client):
    answer = await client.rest.get("/v1/providers/myspace")

    assert answer.status_code == 404
    assert "provider" in answer.json()["error"] and "myspace" in answer.json()["error"]


async def test_discovery_needs_a_token_like_every_v1_api(server):
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        listed = await anonymous.get("/v1/providers")
        one = await anonymous.get("/v1/providers/stripe", headers={"authorization": "Bearer hw_wrong"})
        collection = await anonymous.get("/v1/collections/stripe:customer")

    assert listed.status_code == 401 and one.status_code == 401 and collection.status_code == 401


async def test_grpc_answers_what_rest_does(client):
    providers = provider_pb2_grpc.ProviderServiceStub(client.channel)

    listed = await providers.ListProviders(provider_pb2.ListProvidersRequest(), metadata=client.metadata)
    zendesk = await providers.GetProvider(provider_pb2.GetProviderRequest(provider="zendesk"), metadata=client.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await providers.GetProvider(provider_pb2.GetProviderRequest(provider="zendesk"))

    assert [p.provider for p in listed.data] == [p["provider"] for p in (await client.rest.get("/v1/providers")).json()["data"]]
    assert zendesk.provider.account_facts.template_properties == ["subdomain"]
    assert [k.kind for k in zendesk.provider.credential_kinds] == ["zendesk_api_token", "zendesk_oauth_token"]
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_collection_says_what_it_can_do_and_its_fields_from_the_providers_description(client):
    answer = await client.rest.get("/v1/collections/hubspot:contact")

    assert answer.status_code == 200, answer.text
    contact = answer.json()
    assert {k: contact[k] for k in ("id", "name", "provider")} == {
        "id": "hubspot:contact", "name": "Contact", "provider": "hubspot"}
    assert contact["capabilities"] == {"read": True, "changes": True, "deletions": True,
                                       "create": True, "update": True, "delete": True}
    fields = {f["name"]: f for f in contact["fields"]}
    assert fields["updatedAt"] == {"name": "updatedAt", "type": "string",
                                   "description": "The timestamp when the object was last updated, in ISO 8601 format."}
    assert {"id", "properties", "createdAt", "archived"} <= set(fields)


async def test_stripes_fields_come_from_its_own_description(client):
    customer = (await client.rest.get("/v1/collections/stripe:customer")).json()

    fields = {f["name"]: f for f in customer["fields"]}
    assert fields["email"]["type"] == "string" and "email address" in fields["email"]["description"]
    assert fields["created"]["type"] == "integer"
    assert customer["capabilities"]["create"] is True


async def test_a_collection_whose_provider_publishes_no_description_has_no_fields(client):
    contact = (await client.rest.get("/v1/collections/salesforce:contact")).json()

    assert contact["id"] == "salesforce:contact" and contact["capabilities"]["read"] is True
    assert contact.get("fields", []) == []


async def test_an_unknown_collection_is_not_found_by_its_id(client):
    answer = await client.rest.get("/v1/collections/stripe:refund")

    assert answer.status_code == 404
    assert "collection" in answer.json()["error"] and "stripe:refund" in answer.json()["error"]


async def test_a_collection_over_grpc_is_what_rest_answers_and_needs_a_token(client):
    providers = provider_pb2_grpc.ProviderServiceStub(client.channel)

    answer = await providers.GetCollection(provider_pb2.GetCollectionRequest(collection_id="stripe:invoice"),
                                           metadata=client.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await providers.GetCollection(provider_pb2.GetCollectionRequest(collection_id="stripe:invoice"))
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await providers.GetCollection(provider_pb2.GetCollectionRequest(collection_id="stripe:nothing"),
                                      metadata=client.metadata)

    rest = (await client.rest.get("/v1/collections/stripe:invoice")).json()
    assert answer.collection.provider == "stripe" and answer.collection.capabilities.create is False
    assert [(f.name, f.type, f.description) for f in answer.collection.fields] == [
        (f["name"], f["type"], f.get("description", "")) for f in rest["fields"]]
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "stripe:nothing" in unknown.value.details()
