"""The catalogue's OAuth facts and verification requests: data, typed and checked at start-up."""

from __future__ import annotations

import pytest

from headwater.upstream.catalogue import CatalogueError, OAuthSpec, ProviderCatalogue, Verification


def catalogue_with(oauth: dict | None = None, kind: dict | None = None) -> dict:
    entry = {
        "base_url": "https://api.acme.example", "default_rate_limit": {"allowed_requests": 1, "interval": 1},
        "credential_kinds": {"acme_key": kind or {"required": ["key"], "auth": {"type": "bearer", "property": "key"}}},
    }
    if oauth is not None:
        entry["oauth"] = oauth
    return {"providers": {"acme": entry}}


ACME_OAUTH = {"authorization_url": "https://acme.example/oauth/authorize", "token_url": "https://acme.example/oauth/token",
              "credential_kind": "acme_key"}


def test_every_provider_with_an_oauth2_kind_says_where_to_authorize_and_exchange_tokens():
    catalogue = ProviderCatalogue.default()

    oauth_providers = [p for p in catalogue.providers.values() if any(k.endswith("_oauth2") for k in p.credential_kinds)]

    assert {p.key for p in oauth_providers} == {"stripe", "salesforce", "hubspot", "github", "slack", "googledrive"}
    for provider in oauth_providers:
        assert provider.oauth.authorization_url.startswith("https://"), provider.key
        assert provider.oauth.token_url.startswith("https://"), provider.key
        assert provider.oauth.default_scopes, provider.key
        assert provider.oauth.credential_kind == f"{provider.key}_oauth2"  # what a connection makes
    assert catalogue.provider("custom").oauth is None  # a custom API's app names its own URLs


def test_the_providers_oauth_facts_are_theirs():
    catalogue = ProviderCatalogue.default()
    google, salesforce, slack, github, stripe = (
        catalogue.provider(p).oauth for p in ("googledrive", "salesforce", "slack", "github", "stripe")
    )

    assert google.authorization_params == {"access_type": "offline", "prompt": "consent"}  # else no refresh token
    assert (google.token_url, google.pkce) == ("https://oauth2.googleapis.com/token", True)
    assert salesforce.account_properties == {"instance_url": "instance_url"}  # the org's own API host
    assert "refresh_token" in salesforce.default_scopes
    assert slack.scope_separator == ","  # Slack joins scopes with commas, the others with spaces
    assert github.scope_separator == " " and github.pkce
    assert (stripe.authorization_url, stripe.pkce) == ("https://connect.stripe.com/oauth/authorize", False)


def test_scopes_are_joined_with_the_providers_separator():
    slack = ProviderCatalogue.default().provider("slack").oauth

    assert slack.scope(["channels:read", "users:read"]) == "channels:read,users:read"


def test_api_key_kinds_declare_a_cheap_authenticated_get_that_verifies_them():
    catalogue = ProviderCatalogue.default()

    def verification(provider, kind):
        return catalogue.provider(provider).credential_kinds[kind].verification

    assert verification("stripe", "stripe_api_key") == Verification("GET", "v1/balance", error_message="error.message")
    assert verification("github", "github_token") == Verification("GET", "user", error_message="message")
    assert verification("hubspot", "hubspot_private_app").path == "crm/v3/objects/contacts"
    assert verification("custom", "custom_bearer") is None  # nothing is known of a custom API


def test_a_well_formed_oauth_block_is_read_with_its_defaults():
    oauth = ProviderCatalogue.from_dict(catalogue_with(ACME_OAUTH)).provider("acme").oauth

    assert oauth == OAuthSpec(ACME_OAUTH["authorization_url"], ACME_OAUTH["token_url"], "acme_key")
    assert (oauth.scope_separator, oauth.default_scopes, oauth.pkce) == (" ", (), False)


@pytest.mark.parametrize("change, why", [
    ({"token_url": "http://acme.example/oauth/token"}, "token_url"),
    ({"authorization_url": None}, "authorization_url"),
    ({"scope_separator": ";"}, "scope_separator"),
    ({"default_scopes": "read write"}, "default_scopes"),
    ({"pkce": "yes"}, "pkce"),
    ({"authorization_params": {"access_type": 1}}, "authorization_params"),
    ({"account_properties": ["instance_url"]}, "account_properties"),
    ({"refresh_url": "https://acme.example/refresh"}, "refresh_url"),
    ({"credential_kind": None}, "credential_kind"),
    ({"credential_kind": "acme_oauth2"}, "credential_kind"),  # not a kind of acme's
])
def test_a_malformed_oauth_block_is_refused_naming_it(change, why):
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(catalogue_with(ACME_OAUTH | change))

    assert "acme.oauth" in str(refused.value)
    assert why in str(refused.value)


@pytest.mark.parametrize("verification, why", [
    ({"method": "POST", "path": "v1/charges"}, "GET"),
    ({"method": "GET"}, "path"),
    ({"path": "me", "body": {}}, "body"),
    ({"path": "me", "error_message": ["message"]}, "error_message"),
])
def test_a_verification_that_is_not_a_plain_get_is_refused(verification, why):
    kind = {"required": ["key"], "auth": {"type": "bearer", "property": "key"}, "verification": verification}

    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(catalogue_with(kind=kind))

    assert "acme.credential_kinds.acme_key.verification" in str(refused.value)
    assert why in str(refused.value)
