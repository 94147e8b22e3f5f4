"""Every provider of the catalogue, through the proxy and the connect flow, against a recording
upstream on loopback (tests/emulators.py) and a real Headwater server:

- the proxy sends each credential kind's auth as the provider expects it (header name and scheme,
  Basic pair, query parameter) and the provider's required headers;
- a per-account base URL template is filled from the credential (and a value that would change
  the host's shape is refused when the credential is made, naming the property);
- the connect page's key form sends the kind's verification request;
- the connect page's OAuth button leads to the provider's authorization URL with its scope
  separator, its PKCE parameters and its extra parameters.

What each provider expects is written here from its own documentation (the comments on its
catalogue entry name it), not read from the catalogue, so that a catalogue typo fails a test that
names the entry.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from test_connect import allow_app_origin, browser, new_session, oauth_app, query_of  # noqa: F401 (browser: a fixture)

from headwater.upstream.catalogue import ProviderCatalogue

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the store is not what is tested

CATALOGUE = ProviderCatalogue.default()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# How each kind's credential reaches the provider: ("header", NAME, VALUE) or ("query", NAME, VALUE);
# VALUE is formatted with the credential's properties (see `properties_for`).
AUTH = {
    "stripe_oauth2": ("header", "Authorization", "Bearer {secret}"),
    "stripe_api_key": ("header", "Authorization", "Bearer {secret}"),
    "salesforce_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "hubspot_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "hubspot_private_app": ("header", "Authorization", "Bearer {access_token}"),
    "github_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "github_token": ("header", "Authorization", "Bearer {token}"),
    "slack_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "googledrive_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "gitlab_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "gitlab_token": ("header", "PRIVATE-TOKEN", "{token}"),
    "jira_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "confluence_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "linear_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "linear_api_key": ("header", "Authorization", "{api_key}"),  # no scheme
    "asana_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "asana_pat": ("header", "Authorization", "Bearer {token}"),
    "notion_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "notion_integration_token": ("header", "Authorization", "Bearer {token}"),
    "airtable_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "airtable_pat": ("header", "Authorization", "Bearer {token}"),
    "zendesk_api_token": ("header", "Authorization", "basic:{username}:{api_token}"),
    "zendesk_oauth_token": ("header", "Authorization", "Bearer {access_token}"),
    "intercom_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "intercom_access_token": ("header", "Authorization", "Bearer {access_token}"),
    "shopify_access_token": ("header", "X-Shopify-Access-Token", "{access_token}"),
    "quickbooks_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "xero_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "pipedrive_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "pipedrive_api_token": ("query", "api_token", "{api_token}"),
    "close_api_key": ("header", "Authorization", "basic:{api_key}:"),  # the key, an empty password
    "zoho_crm_oauth2": ("header", "Authorization", "Zoho-oauthtoken {access_token}"),
    "sendgrid_api_key": ("header", "Authorization", "Bearer {api_key}"),
    "twilio_auth_token": ("header", "Authorization", "basic:{account_sid}:{auth_token}"),
    "twilio_api_key": ("header", "Authorization", "basic:{api_key_sid}:{api_key_secret}"),
    "zoom_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "dropbox_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "box_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "box_developer_token": ("header", "Authorization", "Bearer {access_token}"),
    "microsoft_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "googlecalendar_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "gmail_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "monday_oauth2": ("header", "Authorization", "{access_token}"),  # no scheme
    "monday_api_token": ("header", "Authorization", "{api_token}"),
    "clickup_oauth2": ("header", "Authorization", "{access_token}"),  # no scheme
    "clickup_personal_token": ("header", "Authorization", "{token}"),
    "bitbucket_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "bitbucket_app_password": ("header", "Authorization", "basic:{username}:{app_password}"),
    "discord_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "discord_bot": ("header", "Authorization", "Bot {bot_token}"),
    "calendly_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "calendly_pat": ("header", "Authorization", "Bearer {token}"),
    "greenhouse_api_key": ("header", "Authorization", "basic:{api_key}:"),  # the key, a blank password
    "okta_api_token": ("header", "Authorization", "SSWS {api_token}"),
    "pagerduty_api_key": ("header", "Authorization", "Token token={api_key}"),
    "servicenow_basic": ("header", "Authorization", "basic:{username}:{password}"),
    "bigcommerce_api_token": ("header", "X-Auth-Token", "{access_token}"),
    "square_access_token": ("header", "Authorization", "Bearer {access_token}"),
    "typeform_oauth2": ("header", "Authorization", "Bearer {access_token}"),
    "typeform_pat": ("header", "Authorization", "Bearer {token}"),
    "figma_pat": ("header", "X-Figma-Token", "{token}"),
    "sentry_auth_token": ("header", "Authorization", "Bearer {token}"),
    "marketo_access_token": ("header", "Authorization", "Bearer {access_token}"),
    "auth0_management_token": ("header", "Authorization", "Bearer {access_token}"),
    "gusto_oauth2": ("header", "Authorization", "Bearer {access_token}"),
}

# Headers the provider requires on every request.
HEADERS = {
    "github": {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"},
    "notion": {"notion-version": "2022-06-28"},
    "quickbooks": {"accept": "application/json"},
    "bigcommerce": {"accept": "application/json"},
}

# Where a credential's calls go when its account's facts fill the provider's base URL.
TEMPLATED_BASE_URLS = {
    "jira": "https://api.atlassian.com/ex/jira/acme",
    "confluence": "https://api.atlassian.com/ex/confluence/acme",
    "zendesk": "https://acme.zendesk.com/api/v2",
    "shopify": "https://acme.myshopify.com/admin/api/2025-01",
    "quickbooks": "https://quickbooks.api.intuit.com/v3/company/acme",
    "twilio": "https://api.twilio.com/2010-04-01/Accounts/acme",
    "okta": "https://acme.okta.com",
    "servicenow": "https://acme.service-now.com",
    "bigcommerce": "https://api.bigcommerce.com/stores/acme",
    "marketo": "https://acme.mktorest.com/rest",
    "auth0": "https://acme.auth0.com/api/v2",
}

# The verification GET of each kind whose secret is typed in: (path, query).
VERIFICATION = {
    "stripe_api_key": ("/v1/balance", {}),
    "hubspot_private_app": ("/crm/v3/objects/contacts", {"limit": "1"}),
    "github_token": ("/user", {}),
    "gitlab_token": ("/user", {}),
    "asana_pat": ("/users/me", {}),
    "notion_integration_token": ("/users/me", {}),
    "airtable_pat": ("/meta/whoami", {}),
    "zendesk_api_token": ("/users/me.json", {}),
    "zendesk_oauth_token": ("/users/me.json", {}),
    "intercom_access_token": ("/me", {}),
    "shopify_access_token": ("/shop.json", {}),
    "pipedrive_api_token": ("/v1/users/me", {}),
    "close_api_key": ("/me/", {}),
    "sendgrid_api_key": ("/scopes", {}),
    "twilio_auth_token": ("/Calls.json", {"PageSize": "1"}),
    "twilio_api_key": ("/Calls.json", {"PageSize": "1"}),
    "box_developer_token": ("/users/me", {}),
    "clickup_personal_token": ("/user", {}),
    "bitbucket_app_password": ("/user", {}),
    "discord_bot": ("/users/@me", {}),
    "calendly_pat": ("/users/me", {}),
    "okta_api_token": ("/api/v1/users/me", {}),
    "pagerduty_api_key": ("/abilities", {}),
    "servicenow_basic": ("/api/now/table/sys_user", {"sysparm_limit": "1"}),
    "bigcommerce_api_token": ("/v2/store", {}),
    "square_access_token": ("/v2/locations", {}),
    "typeform_pat": ("/me", {}),
    "figma_pat": ("/me", {}),
    "sentry_auth_token": ("/organizations/", {}),
}

# The authorization request of each provider with OAuth: its URL, whether scopes are joined by
# commas, whether PKCE (S256) is sent, and further parameters it needs.
OAUTH = {
    "stripe": ("https://connect.stripe.com/oauth/authorize", " ", False, {}),
    "salesforce": ("https://login.salesforce.com/services/oauth2/authorize", " ", True, {}),
    "hubspot": ("https://app.hubspot.com/oauth/authorize", " ", False, {}),
    "github": ("https://github.com/login/oauth/authorize", " ", True, {}),
    "slack": ("https://slack.com/oauth/v2/authorize", ",", True, {}),
    "googledrive": ("https://accounts.google.com/o/oauth2/v2/auth", " ", True,
                    {"access_type": "offline", "prompt": "consent"}),
    "gitlab": ("https://gitlab.com/oauth/authorize", " ", True, {}),
    "jira": ("https://auth.atlassian.com/authorize", " ", False, {"audience": "api.atlassian.com", "prompt": "consent"}),
    "confluence": ("https://auth.atlassian.com/authorize", " ", False,
                   {"audience": "api.atlassian.com", "prompt": "consent"}),
    "linear": ("https://linear.app/oauth/authorize", ",", True, {}),
    "asana": ("https://app.asana.com/-/oauth_authorize", " ", False, {}),
    "notion": ("https://api.notion.com/v1/oauth/authorize", " ", False, {"owner": "user"}),
    "airtable": ("https://airtable.com/oauth2/v1/authorize", " ", True, {}),
    "intercom": ("https://app.intercom.com/oauth", " ", False, {}),
    "xero": ("https://login.xero.com/identity/connect/authorize", " ", False, {}),
    "pipedrive": ("https://oauth.pipedrive.com/oauth/authorize", " ", False, {}),
    "quickbooks": ("https://appcenter.intuit.com/connect/oauth2", " ", False, {}),
    "zoho_crm": ("https://accounts.zoho.com/oauth/v2/auth", ",", False, {"access_type": "offline", "prompt": "consent"}),
    "zoom": ("https://zoom.us/oauth/authorize", " ", False, {}),
    "dropbox": ("https://www.dropbox.com/oauth2/authorize", " ", True, {"token_access_type": "offline"}),
    "box": ("https://account.box.com/api/oauth2/authorize", " ", False, {}),
    "microsoft": ("https://login.microsoftonline.com/common/oauth2/v2.0/authorize", " ", True, {}),
    "googlecalendar": ("https://accounts.google.com/o/oauth2/v2/auth", " ", True,
                       {"access_type": "offline", "prompt": "consent"}),
    "gmail": ("https://accounts.google.com/o/oauth2/v2/auth", " ", True, {"access_type": "offline", "prompt": "consent"}),
    "monday": ("https://auth.monday.com/oauth2/authorize", " ", False, {}),
    "clickup": ("https://app.clickup.com/api", " ", False, {}),
    "bitbucket": ("https://bitbucket.org/site/oauth2/authorize", " ", False, {}),
    "discord": ("https://discord.com/oauth2/authorize", " ", False, {}),
    "calendly": ("https://auth.calendly.com/oauth/authorize", " ", True, {}),
    "typeform": ("https://api.typeform.com/oauth/authorize", " ", False, {}),
    "gusto": ("https://api.gusto.com/oauth/authorize", " ", False, {}),
}

PROVIDERS = [key for key in CATALOGUE.providers if key != "custom"]  # custom: tests/test_proxy.py
KINDS = [(provider, kind) for provider in PROVIDERS for kind in CATALOGUE.providers[provider].credential_kinds]


def properties_for(provider: str, kind: str, base_url: str | None) -> dict:
    """A credential of `kind`: each required property a sample value (an account's name for those
    that fill the base URL), its calls sent to `base_url` if given."""
    spec = CATALOGUE.providers[provider]
    own = spec.credential_kinds[kind].base_url_property
    properties = {"kind": kind}
    for name in spec.credential_kinds[kind].required:
        properties[name] = "acme" if name in spec.template_properties else f"{name}-of-{kind}"
    if own:
        properties[own] = base_url or f"https://{provider}.example.com"
    if base_url:
        properties["base_url"] = base_url
    return properties


def expected_auth(kind: str, properties: dict) -> tuple[str, str, str]:
    where, name, value = AUTH[kind]
    value = value.format(**properties)
    if value.startswith("basic:"):
        username, _, password = value.removeprefix("basic:").partition(":")
        value = basic(username, password)
    return where, name, value


def test_every_provider_and_kind_has_its_expectations_written_here():
    assert len(PROVIDERS) >= 40
    assert sorted(kind for _, kind in KINDS) == sorted(AUTH)
    assert sorted(p for p in PROVIDERS if CATALOGUE.providers[p].template_properties) == sorted(TEMPLATED_BASE_URLS)
    assert sorted(k for p, k in KINDS if CATALOGUE.providers[p].credential_kinds[k].verification) == sorted(VERIFICATION)
    assert sorted(p for p in PROVIDERS if CATALOGUE.providers[p].oauth) == sorted(OAUTH)
    assert sorted(p for p in OAUTH if CATALOGUE.providers[p].oauth.client_auth == "basic") == sorted(BASIC_CLIENT_AUTH)


async def make_credential(client, properties: dict, provider: str) -> dict:
    made = await client.rest.post("/v1/credentials", json={"provider": provider, "properties": properties})
    assert made.status_code == 200, made.text
    return made.json()


@SQLITE
@pytest.mark.parametrize("provider, kind", KINDS)
async def test_the_proxy_sends_the_kinds_auth_as_the_provider_expects(client, upstream, provider, kind):
    properties = properties_for(provider, kind, f"{upstream.base_url}/echo")
    credential = await make_credential(client, properties, provider)

    answer = await client.rest.get(f"/v1/proxy/credential/{credential['id']}/some/records", params={"limit": "2"})

    assert answer.status_code == 200, answer.text
    seen = upstream.requests[-1]
    assert seen.path == "/echo/some/records"
    where, name, value = expected_auth(kind, properties)
    if where == "header":
        assert seen.header(name) == value
        assert seen.query == "limit=2"
    else:
        assert dict(parse_qsl(seen.query)) == {"limit": "2", name: value}
        assert seen.header("authorization") is None
    for header, wanted in HEADERS.get(provider, {}).items():
        assert seen.header(header) == wanted


@SQLITE
@pytest.mark.parametrize("provider", sorted(TEMPLATED_BASE_URLS))
async def test_a_per_account_base_url_is_filled_from_the_credential(server, client, provider):
    spec = CATALOGUE.providers[provider]
    for kind in spec.credential_kinds:
        credential = await make_credential(client, properties_for(provider, kind, None), provider)

        account = await server.server.backend.accounts.for_credential(credential["org_id"], credential["id"])

        assert account.base_url == TEMPLATED_BASE_URLS[provider]
        assert urlsplit(TEMPLATED_BASE_URLS[provider]).hostname in account.permitted_hosts


@SQLITE
@pytest.mark.parametrize("provider", sorted(TEMPLATED_BASE_URLS))
@pytest.mark.parametrize("value", ["evil.com/x", "acme.evil.com", "evil.com#", "a@evil.com", "a:8443", "a b", ""])
async def test_a_value_that_would_change_the_hosts_shape_is_refused_naming_the_property(client, provider, value):
    spec = CATALOGUE.providers[provider]
    name = spec.template_properties[0]
    kind = next(iter(spec.credential_kinds))
    properties = {**properties_for(provider, kind, None), name: value}

    made = await client.rest.post("/v1/credentials", json={"provider": provider, "properties": properties})

    assert made.status_code == 400, made.text
    assert f"credential.properties.{name}" in made.text
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []


@SQLITE
@pytest.mark.parametrize("provider, kind", [(p, k) for p, k in KINDS if k in VERIFICATION])
async def test_the_connect_pages_key_form_sends_the_kinds_verification_request(client, upstream, browser,
                                                                               provider, kind):
    await allow_app_origin(client)
    preset = {"base_url": f"{upstream.base_url}/echo"}
    session = await new_session(client, allowed_integrations=[provider], integration_properties={provider: preset})
    page = await browser.open(session["connect_url"])
    typed = {name: value for name, value in properties_for(provider, kind, None).items()
             if name in CATALOGUE.providers[provider].credential_kinds[kind].required}

    answer = await browser.submit(page, f"submit-{kind}", **typed)

    assert answer.status_code == 303, answer.text
    assert "credential_id" in answer.headers["location"]
    seen = upstream.requests[-1]
    path, query = VERIFICATION[kind]
    where, name, value = expected_auth(kind, typed)
    assert seen.method == "GET" and seen.path == "/echo" + path
    if where == "header":
        assert seen.header(name) == value and dict(parse_qsl(seen.query)) == query
    else:
        assert dict(parse_qsl(seen.query)) == {**query, name: value}


@SQLITE
@pytest.mark.parametrize("provider", sorted(OAUTH))
async def test_the_connect_pages_oauth_button_leads_to_the_providers_authorization_url(server, client, browser,
                                                                                       provider):
    url, separator, pkce, params = OAUTH[provider]
    made = await client.rest.post("/v1/oauth-apps", json={
        "provider": provider, "client_id": "client-1", "client_secret": "secret-1", "scopes": ["one:read", "two"],
    })
    assert made.status_code == 200, made.text
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, allowed_integrations=[provider]))["connect_url"])

    started = await browser.submit(page, f"connect-{provider}")

    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.split("?")[0] == url
    asked = dict(parse_qsl(urlsplit(location).query))
    assert asked.items() >= {"response_type": "code", "client_id": "client-1", "scope": f"one:read{separator}two",
                             "redirect_uri": f"{server.http_url}/v1/connect/callback", **params}.items()
    assert ("code_challenge" in asked) is pkce
    assert asked.get("code_challenge_method") == ("S256" if pkce else None)


@SQLITE
@pytest.mark.parametrize("realm, connected", [("9130354512345678", True), ("evil.com/x", False)])
async def test_a_quickbooks_connection_keeps_the_company_named_on_the_redirect(server, client, oauth_server, browser,
                                                                              realm, connected):
    await oauth_app(client, server, oauth_server, "quickbooks")
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, allowed_integrations=["quickbooks"]))["connect_url"])
    started = await browser.submit(page, "connect-quickbooks")
    back = await browser.consent(started.headers["location"])

    # Intuit's redirect names the company the user chose: realmId, beside code and state
    landed = await browser.http.get(f"{back.headers['location']}&{urlencode({'realmId': realm})}")

    if not connected:  # a realm id that would change the API's URL is not stored
        assert landed.status_code == 502 and "realm_id" in landed.text
        assert (await client.rest.get("/v1/credentials")).json()["data"] == []
        return
    assert landed.status_code == 303, landed.text
    credential = (await client.rest.get(f"/v1/credentials/{query_of(landed.headers['location'])['credential_id']}")).json()
    assert credential["properties"]["realm_id"] == realm and credential["properties"]["kind"] == "quickbooks_oauth2"
    account = await server.server.backend.accounts.for_credential(credential["org_id"], credential["id"])
    assert account.base_url == f"https://quickbooks.api.intuit.com/v3/company/{realm}"


# Providers whose token endpoint wants the app's id and secret as HTTP Basic (the rest: in the form).
BASIC_CLIENT_AUTH = {"notion", "zoom", "pipedrive", "xero", "quickbooks", "airtable", "bitbucket"}
# Their account requests name the provider's own host (api.atlassian.com, api.xero.com), which a
# test cannot reach: their exchange is the same code path as the others'.
UNREACHABLE_FACTS = {"jira", "confluence", "xero"}


@SQLITE
@pytest.mark.parametrize("provider", sorted(set(OAUTH) - UNREACHABLE_FACTS))
async def test_the_code_exchange_authenticates_the_app_as_the_provider_wants(server, client, oauth_server, browser,
                                                                            provider):
    await oauth_app(client, server, oauth_server, provider)
    await allow_app_origin(client)
    session = await new_session(client, allowed_integrations=[provider],
                                integration_properties={provider: {"base_url": f"{oauth_server.base_url}/api"}})

    await browser.connect_with_oauth(session["connect_url"], integration=provider)

    (exchange,) = oauth_server.token_requests
    assert exchange["grant_type"] == "authorization_code"
    if provider in BASIC_CLIENT_AUTH:
        assert exchange["authorization"] == basic("client-1", "secret-1") and "client_secret" not in exchange
    else:
        assert exchange["client_secret"] == "secret-1" and exchange["authorization"] == ""
    assert ("code_verifier" in exchange) is OAUTH[provider][2]  # PKCE: the verifier comes back
