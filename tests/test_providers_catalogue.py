"""The catalogue's per-account facts, checked as it is read: a base URL template's properties are
required by every kind and filled with values that cannot change the URL's shape; OAuth URLs are
not templates; the auth and OAuth keys breadth added (`prefix`, `basic_key`, `client_auth`,
`callback_properties`) are refused when malformed, naming the entry."""

from __future__ import annotations

import pytest

from headwater.upstream.catalogue import CatalogueError, ProviderCatalogue, fill_template, template_problem


def acme(base_url: str = "https://{shop}.acme.example/api", required=("shop", "token"), auth=None, oauth=None) -> dict:
    entry = {
        "base_url": base_url, "default_rate_limit": {"allowed_requests": 1, "interval": 1},
        "credential_kinds": {"acme_token": {"required": list(required),
                                            "auth": auth or {"type": "bearer", "property": "token"}}},
    }
    if oauth:
        entry["oauth"] = {"authorization_url": "https://acme.example/authorize", "token_url": "https://acme.example/token",
                          "credential_kind": "acme_token", **oauth}
    return {"providers": {"acme": entry}}


def test_a_template_names_the_properties_it_is_filled_from():
    provider = ProviderCatalogue.from_dict(acme("https://{shop}.acme.example/{region}/api",
                                                required=("shop", "region", "token"))).provider("acme")

    assert provider.template_properties == ("shop", "region")
    assert provider.account_facts == ("shop", "region")
    assert fill_template(provider.base_url, {"shop": "big-shop", "region": "eu1"}) == "https://big-shop.acme.example/eu1/api"


def test_a_template_property_every_kind_must_require():
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(acme(required=("token",)))

    assert "acme.credential_kinds.acme_token.required" in str(refused.value) and "shop" in str(refused.value)


def test_an_oauth_url_cannot_be_a_template():
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(acme(oauth={"authorization_url": "https://{shop}.acme.example/authorize"}))

    assert "acme.oauth.authorization_url" in str(refused.value)


@pytest.mark.parametrize("value", ["acme", "acme-2", "9130354512345678", "A1"])
def test_an_account_name_fills_a_template(value):
    assert template_problem(value) is None


@pytest.mark.parametrize("value", ["evil.com/x", "a.b", "a/b", "a@b", "a:1", "a%2Fb", "-a", "a-", "a b", "", "x" * 64, 7, None])
def test_what_would_change_the_urls_shape_does_not(value):
    assert template_problem(value)
    with pytest.raises(ValueError) as refused:
        fill_template("https://{shop}.acme.example", {"shop": value})
    assert "`shop`" in str(refused.value)


def test_a_missing_template_property_is_named():
    with pytest.raises(ValueError) as refused:
        fill_template("https://{shop}.acme.example", {})

    assert "`shop` is missing" in str(refused.value)


@pytest.mark.parametrize("auth, why", [
    ({"type": "header", "name": "Authorization", "property": "token", "prefix": 3}, "prefix"),
    ({"type": "basic_key"}, "`property`"),
    ({"type": "bearer", "property": "token", "prefix": "Token "}, "prefix"),  # only headers take one
])
def test_malformed_auth_is_refused_naming_the_entry(auth, why):
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(acme("https://acme.example", required=("token",), auth=auth))

    assert "acme.credential_kinds.acme_token.auth" in str(refused.value) and why in str(refused.value)


def test_a_basic_key_keeps_its_key_secret():
    kind = ProviderCatalogue.from_dict(acme("https://acme.example", required=("api_key",),
                                            auth={"type": "basic_key", "property": "api_key"})).provider("acme")

    assert "api_key" in kind.credential_kinds["acme_token"].secret


@pytest.mark.parametrize("oauth, key", [
    ({"client_auth": "jwt"}, "client_auth"),
    ({"callback_properties": {"realm_id": 7}}, "callback_properties"),
])
def test_malformed_oauth_keys_are_refused_naming_them(oauth, key):
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(acme("https://acme.example", required=("token",), oauth=oauth))

    assert f"acme.oauth.{key}" in str(refused.value)


def test_every_templated_provider_of_the_catalogue_requires_its_account_facts_of_every_kind():
    catalogue = ProviderCatalogue.default()

    templated = [p for p in catalogue.providers.values() if p.template_properties]

    assert {p.key for p in templated} >= {"shopify", "zendesk", "jira", "confluence", "quickbooks", "okta"}
    for provider in templated:
        for kind in provider.credential_kinds.values():
            assert set(provider.template_properties) <= set(kind.required), kind.name
