"""The catalogue's OAuth facts and verification requests: data, typed and checked at start-up."""

from __future__ import annotations

import pytest

from headwater.upstream.account_facts import facts_at
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

    assert {p.key for p in oauth_providers} >= {"stripe", "salesforce", "hubspot", "github", "slack", "googledrive"}
    for provider in oauth_providers:
        assert provider.oauth.authorization_url.startswith("https://"), provider.key
        assert provider.oauth.token_url.startswith("https://"), provider.key
        assert provider.oauth.credential_kind == f"{provider.key}_oauth2"  # what a connection makes
    for key in ("stripe", "salesforce", "hubspot", "github", "slack", "googledrive"):  # others: the app's scopes
        assert catalogue.provider(key).oauth.default_scopes, key
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


def test_providers_ask_for_the_account_facts_their_docs_name_right_after_connecting():
    catalogue = ProviderCatalogue.default()

    def asked(provider):
        return [(r.path, r.query, r.properties, r.optional) for r in catalogue.provider(provider).oauth.account_requests]

    # HubSpot's token metadata: the portal (hub) the token reaches, and who authorized it
    assert asked("hubspot") == [("oauth/v1/access-tokens/{access_token}", {},
                                 {"hub_id": "hub_id", "hub_domain": "hub_domain", "user_email": "user"}, frozenset())]
    assert asked("github") == [("user", {}, {"login": "login", "user_id": "id"}, frozenset())]
    assert asked("slack") == [("auth.test", {}, {"team_url": "url"}, frozenset())]  # the workspace's URL
    # Drive's about.get, which drive.readonly allows (Google's userinfo would need the openid or email scope);
    # its emailAddress "may not be present" when the user hides it
    assert asked("googledrive") == [("about", {"fields": "user"}, {"email": "user.emailAddress",
                                                                   "permission_id": "user.permissionId"},
                                     frozenset({"email"}))]
    assert catalogue.provider("salesforce").oauth.account_requests == ()  # its token answer says it all
    assert all(r.method == "GET" for p in catalogue.providers.values() if p.oauth for r in p.oauth.account_requests)


def test_an_account_request_may_use_the_token_the_token_answers_facts_and_earlier_facts():
    oauth = ACME_OAUTH | {"account_properties": {"site": "site.id"}, "account_requests": [
        {"path": "sites/{site}/owner", "properties": {"owner_id": "owner.id"}},
        {"path": "https://api.acme.example/people/{owner_id}", "query": {"token": "{key}"}, "properties": {"name": "0.name"}},
    ]}

    requests = ProviderCatalogue.from_dict(catalogue_with(oauth)).provider("acme").oauth.account_requests

    assert [(r.method, r.path, r.placeholders) for r in requests] == [
        ("GET", "sites/{site}/owner", {"site"}), ("GET", "https://api.acme.example/people/{owner_id}", {"owner_id", "key"})]


@pytest.mark.parametrize("request_spec, why", [
    ({"properties": {"id": "id"}}, "path"),
    ({"path": "me", "properties": {"id": "id"}, "body": {}}, "body"),
    ({"method": "POST", "path": "me", "properties": {"id": "id"}}, "GET"),
    ({"path": "me"}, "properties"),
    ({"path": "me", "properties": {"id": 1}}, "properties"),
    ({"path": "me", "properties": {"id": "id"}, "query": {"n": 1}}, "query"),
    ({"path": "me", "properties": {"id": "id"}, "optional": ["name"]}, "optional"),
    ({"path": "people/{person}", "properties": {"id": "id"}}, "{person}"),  # nothing gives a person
    ({"path": "me", "properties": {"key": "token"}}, "key"),  # a fact never replaces the token
    ({"path": "me", "properties": {"kind": "type"}}, "kind"),
    ({"path": "http://api.acme.example/me", "properties": {"id": "id"}}, "https"),
    ({"path": "https://evil.example/me", "properties": {"id": "id"}}, "evil.example"),  # not a permitted host
])
def test_a_malformed_account_request_is_refused_at_start_up_naming_it(request_spec, why):
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(catalogue_with(ACME_OAUTH | {"account_requests": [request_spec]}))

    assert "acme.oauth.account_requests[0]" in str(refused.value)
    assert why in str(refused.value)


def test_account_requests_must_be_a_list():
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(catalogue_with(ACME_OAUTH | {"account_requests": {"path": "me"}}))

    assert "acme.oauth.account_requests" in str(refused.value) and "list" in str(refused.value)


def test_a_fact_is_found_by_dotted_path_or_list_index():
    answer = {"user": {"login": "paul", "id": 7, "email": ""}, "sites": [{"id": "cloud-1"}, {"id": "cloud-2"}]}

    found = facts_at(answer, {"login": "user.login", "user_id": "user.id", "email": "user.email",
                              "cloud_id": "sites.0.id", "second": "sites.1.id", "third": "sites.2.id", "bad": "user.0"})

    assert found == {"login": "paul", "user_id": 7, "cloud_id": "cloud-1", "second": "cloud-2"}  # "" is no fact


# --- the whole catalogue is checked at start-up, every block by its keys ------------------------

def shipped() -> dict:
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files("headwater.upstream").joinpath("catalogue.yaml").read_text())


@pytest.mark.parametrize("where, key, message", [
    (("github", "collections", "issue", "read", "list"), "itmes",
     'providers.github.collections.issue.read.list: unknown key "itmes" (did you mean "items"?)'),
    (("github", "credential_kinds", "github_token", "auth"), "proprety",
     'providers.github.credential_kinds.github_token.auth (type bearer): unknown key "proprety" (did you mean "property"?)'),
    (("github", "limits"), "remianing", 'providers.github.limits: unknown key "remianing" (did you mean "remaining"?)'),
    (("stripe", "retry"), "idempotency", 'providers.stripe.retry: unknown key "idempotency" (did you mean "idempotency_header"?)'),
    (("stripe",), "permited_hosts", 'providers.stripe: unknown key "permited_hosts" (did you mean "permitted_hosts"?)'),
    (("stripe", "collections", "customer"), "raed", 'providers.stripe.collections.customer: unknown key "raed" (did you mean "read"?)'),
    (("stripe", "collections", "customer", "read", "list", "next"), "wihle",
     'providers.stripe.collections.customer.read.list.next: unknown key "wihle" (did you mean "while"?)'),
    (("salesforce", "default_rate_limit"), "allowed", 'providers.salesforce.default_rate_limit: unknown key "allowed"'),
])
def test_a_typo_anywhere_in_the_catalogue_fails_start_up_naming_its_path(where, key, message):
    data = shipped()
    block = data["providers"]
    for step in where:
        block = block[step]
    block[key] = "x"

    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(data)

    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("limits, why", [
    ({"rate_limited": [{"status": 403, "heder": "x-ratelimit-remaining"}]}, 'rate_limited[0]: unknown key "heder"'),
    ({"rate_limited": [{"header": "x"}]}, "rate_limited[0]: give `status`"),
    ({"rate_limited": [{"status": 200}]}, "a 2xx answer is rate limited only by its body: give body_contains"),
    ({"rate_limited": [{"status": 302, "body_contains": "slow"}]}, "not an HTTP error status"),
    ({"wait": [{"header": "x-reset", "unit": "minutes"}]}, "wait[0].unit: must be one of seconds, ms, epoch"),
    ({"remaining": [{"header": "x-left", "form": "percent"}]}, "remaining[0].form: must be one of number, usage, ietf"),
    ({"remaining": {"header": "x-left"}}, "remaining: must be a list"),
    ({"reserve": -1}, "reserve: must be a number, 0 or more"),
])
def test_a_malformed_limits_block_is_refused_naming_it(limits, why):
    data = catalogue_with()
    data["providers"]["acme"]["limits"] = limits

    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(data)

    assert str(refused.value).startswith("providers.acme.limits") and why in str(refused.value)


def test_the_shipped_providers_say_how_they_rate_limit():
    catalogue = ProviderCatalogue.default()
    github = catalogue.provider("github").credential_kinds["github_token"]

    assert [(r.status, r.header, r.equals) for r in github.limits.rate_limited][:2] == [
        (429, "", ""), (403, "x-ratelimit-remaining", "0")]
    assert catalogue.provider("stripe").retry.idempotency_header == "Idempotency-Key"
    assert catalogue.collection("stripe:customer").write.idempotency_header == "Idempotency-Key"
    assert not catalogue.provider("github").retry.idempotency_header  # GitHub does not deduplicate writes
    assert catalogue.collection("salesforce:contact").write.error_message == "message"


@pytest.mark.parametrize("change, why", [
    ({"permitted_hosts": "api.acme.example"}, "providers.acme.permitted_hosts: must be a list of host names"),
    ({"headers": {"X-Version": 2}}, "providers.acme.headers: must map names to strings"),
    ({"default_rate_limit": {"allowed_requests": "100", "interval": 1}},
     "providers.acme.default_rate_limit.allowed_requests: must be a number"),
    ({"name": ["Acme"]}, "providers.acme.name: must be a string"),
])
def test_a_provider_value_of_the_wrong_type_is_refused_naming_it(change, why):
    data = catalogue_with()
    data["providers"]["acme"].update(change)

    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(data)

    assert str(refused.value) == why
