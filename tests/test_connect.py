"""Connect sessions and the hosted connect page, driven over HTTP as a browser would (httpx, with
its cookie jar), against the OAuth2 authorization-server emulator (tests/oauth_server.py) and the
fake providers: the whole OAuth flow, reconnecting, API keys, and every way in that must be refused.
The same flow in a real browser is tests/test_connect_browser.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from conftest import Running, _client_for, settings_for
from oauth_server import account_number
from sync_support import eventually
from test_connected_users import key_pair
from test_webhooks import Receiver, receiver  # noqa: F401 (fixture: a webhook receiver on loopback)

from headwater.server import Server

APP_ORIGIN = "https://app.example.com"
REDIRECT_URL = f"{APP_ORIGIN}/connected?from=headwater"


async def allow_app_origin(client, *origins: str) -> None:
    answer = await client.rest.patch("/v1/connect/settings", json={"allowed_redirect_origins": list(origins or [APP_ORIGIN])})
    assert answer.status_code == 200, answer.text


async def oauth_app(client, server: Running, oauth_server, provider: str, **fields) -> str:
    """An OAuth app of the organisation for `provider` whose client is registered at the emulator,
    with Headwater's callback as its redirect URI."""
    oauth_server.register("client-1", "secret-1", redirect_uris=[f"{server.http_url}/v1/connect/callback"])
    made = await client.rest.post("/v1/oauth-apps", json={
        "provider": provider, "client_id": "client-1", "client_secret": "secret-1",
        "authorization_url": oauth_server.authorization_url, "token_url": oauth_server.token_url, **fields,
    })
    assert made.status_code == 200, made.text
    return made.json()["id"]


async def github_app(client, server: Running, oauth_server) -> str:
    return await oauth_app(client, server, oauth_server, "github", scopes=["repo"])


async def new_session(client, oauth_server=None, **fields) -> dict:
    body = {"end_user": {"id": "user-42", "email": "paul@arrakis.org"}, "allowed_integrations": ["github"],
            "redirect_url": REDIRECT_URL, **fields}
    if oauth_server is not None:  # the credential calls the emulator's API, not api.github.com
        body.setdefault("integration_properties", {"github": {"base_url": f"{oauth_server.base_url}/api"}})
    answer = await client.rest.post("/v1/connect/sessions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


@dataclass
class Browser:
    """What an end user's browser does on the connect page, one step at a time (no redirect is
    followed by itself, so each step's answer can be looked at)."""

    http: httpx.AsyncClient

    async def open(self, connect_url: str) -> httpx.Response:
        """The connect link, then the page it leads to."""
        opened = await self.http.get(connect_url)
        if opened.status_code != 303:
            return opened
        return await self.http.get(opened.headers["location"])

    @staticmethod
    def form(page: httpx.Response, button_id: str) -> tuple[str, dict[str, str]]:
        """The action and hidden fields of the form holding the button."""
        for form in re.findall(r"<form\b.*?</form>", page.text, re.S):
            if f'id="{button_id}"' in form:
                action = html.unescape(re.search(r'action="([^"]*)"', form).group(1))
                fields = {html.unescape(n): html.unescape(v) for n, v in
                          re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', form)}
                return action, fields
        raise AssertionError(f"no form with #{button_id} on the page:\n{page.text}")

    async def submit(self, page: httpx.Response, button_id: str, **typed: str) -> httpx.Response:
        action, fields = self.form(page, button_id)
        return await self.http.post(action, data={**fields, **typed})

    async def consent(self, authorization_url: str, decision: str = "approve") -> httpx.Response:
        """The provider's consent page and the end user's decision: the answer redirecting to the callback."""
        consent_page = await self.http.get(authorization_url)
        assert consent_page.status_code == 200, consent_page.text
        action, fields = self.form(consent_page, decision)
        return await self.http.post(urlsplit(authorization_url)._replace(path=action, query="").geturl(),
                                    data={**fields, "decision": decision})

    async def connect_with_oauth(self, connect_url: str, decision: str = "approve",
                                 integration: str = "github") -> httpx.Response:
        """The whole flow: the page, the provider's consent, the callback: its answer."""
        page = await self.open(connect_url)
        started = await self.submit(page, f"connect-{integration}")
        assert started.status_code == 303, started.text
        back = await self.consent(started.headers["location"], decision)
        assert back.status_code == 302, back.text
        return await self.http.get(back.headers["location"])


@pytest.fixture
async def browser():
    async with httpx.AsyncClient(timeout=10) as http:
        yield Browser(http)


def server_log(caplog) -> str:
    """What the server logged (the test's own HTTP client logs the URLs it was sent to)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


# --- the OAuth flow ----------------------------------------------------------------------------


async def test_an_end_user_connects_github_and_the_proxy_calls_with_the_issued_token(
        server, client, oauth_server, browser, caplog):
    caplog.set_level(logging.DEBUG)
    app_id = await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    session = await new_session(client, oauth_server)

    landed = await browser.connect_with_oauth(session["connect_url"])

    assert landed.status_code == 303
    location = landed.headers["location"]
    assert location.startswith(REDIRECT_URL + "&")
    back = query_of(location)
    assert back["integration"] == "github" and set(back) == {"from", "integration", "credential_id"}
    credential = (await client.rest.get(f"/v1/credentials/{back['credential_id']}")).json()
    assert credential["external_id"] == "user-42" and credential["oauth_app_id"] == app_id
    assert credential["oauth_app"] == {"id": app_id, "kind": "custom", "provider": "github", "client_id": "client-1"}
    properties = credential["properties"]
    assert properties["kind"] == "github_oauth2"
    assert properties["access_token"] == properties["refresh_token"] == "***********"
    assert properties["expires_at"] > time.time() + 3000
    (exchange,) = oauth_server.token_requests
    assert exchange["grant_type"] == "authorization_code" and exchange["code_verifier"]  # GitHub: PKCE
    assert exchange["redirect_uri"] == f"{server.http_url}/v1/connect/callback"

    proxied = await client.rest.get(f"/v1/proxy/credential/{back['credential_id']}/me")
    assert proxied.status_code == 200, proxied.text
    assert proxied.json() == {"account": "user-1", "client_id": "client-1", "scopes": ["repo"]}
    issued = [t for t in oauth_server.access_tokens]
    secrets_seen = [exchange["code"], exchange["code_verifier"], "secret-1", *issued, *oauth_server.refresh_tokens]
    assert not [s for s in secrets_seen if s in server_log(caplog)]


async def test_a_forced_expiry_refreshes_through_the_apps_client_secret(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    landed = await browser.connect_with_oauth((await new_session(client, oauth_server))["connect_url"])
    credential_id = query_of(landed.headers["location"])["credential_id"]
    for token in oauth_server.access_tokens:
        oauth_server.expire(token)

    proxied = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert proxied.status_code == 200, proxied.text
    refresh = oauth_server.token_requests[-1]
    assert refresh["grant_type"] == "refresh_token"
    assert (refresh["client_id"], refresh["client_secret"]) == ("client-1", "secret-1")


async def test_connecting_again_replaces_the_tokens_of_the_same_credential(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    first = await browser.connect_with_oauth((await new_session(client, oauth_server))["connect_url"])
    second = await browser.connect_with_oauth((await new_session(client, oauth_server))["connect_url"])

    first_id, second_id = (query_of(r.headers["location"])["credential_id"] for r in (first, second))
    assert first_id == second_id
    listed = (await client.rest.get("/v1/credentials", params={"external_id": "user-42"})).json()["data"]
    assert [c["id"] for c in listed] == [first_id]
    old_token = oauth_server.token_requests[0]  # the first grant's tokens are no longer used
    proxied = await client.rest.get(f"/v1/proxy/credential/{second_id}/me")
    assert proxied.status_code == 200
    assert len(oauth_server.token_requests) == 2 and old_token["grant_type"] == "authorization_code"


async def test_the_accounts_facts_in_the_token_answer_are_kept_salesforces_instance_url(
        server, client, oauth_server, browser):
    oauth_server.register("client-1", "secret-1", redirect_uris=[f"{server.http_url}/v1/connect/callback"])
    oauth_server.token_extras = {"instance_url": f"{oauth_server.base_url}/api"}  # the org's own API host
    await client.rest.post("/v1/oauth-apps", json={
        "provider": "salesforce", "client_id": "client-1", "client_secret": "secret-1",
        "authorization_url": oauth_server.authorization_url, "token_url": oauth_server.token_url,
    })
    await allow_app_origin(client)
    session = await new_session(client, allowed_integrations=["salesforce"])

    landed = await browser.connect_with_oauth(session["connect_url"], integration="salesforce")

    credential_id = query_of(landed.headers["location"])["credential_id"]
    properties = (await client.rest.get(f"/v1/credentials/{credential_id}")).json()["properties"]
    assert properties["kind"] == "salesforce_oauth2" and properties["instance_url"] == f"{oauth_server.base_url}/api"
    proxied = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")  # to the instance
    assert proxied.status_code == 200, proxied.text


# What each provider's account call (catalogue: oauth.account_requests) says of the emulator's user-1
ACCOUNT_FACTS = {
    "hubspot": {"hub_id": account_number("user-1"), "hub_domain": "user-1.example.com", "user_email": "user-1@example.com"},
    "github": {"login": "user-1", "user_id": account_number("user-1")},
    "slack": {"team_url": "https://user-1.slack.com/"},
    "googledrive": {"email": "user-1@example.com", "permission_id": str(account_number("user-1"))},
}


async def connect_through_the_emulator(client, server, oauth_server, browser, provider: str) -> httpx.Response:
    """`provider` connected at the emulator (its API at the emulator's /api): the callback's answer."""
    await oauth_app(client, server, oauth_server, provider)
    await allow_app_origin(client)
    session = await new_session(client, allowed_integrations=[provider],
                                integration_properties={provider: {"base_url": f"{oauth_server.base_url}/api"}})
    return await browser.connect_with_oauth(session["connect_url"], integration=provider)


@pytest.mark.parametrize("provider", sorted(ACCOUNT_FACTS))
async def test_the_accounts_facts_a_follow_up_call_answers_land_on_the_credential(
        server, client, oauth_server, browser, provider):
    landed = await connect_through_the_emulator(client, server, oauth_server, browser, provider)

    credential_id = query_of(landed.headers["location"])["credential_id"]
    properties = (await client.rest.get(f"/v1/credentials/{credential_id}")).json()["properties"]
    assert properties.items() >= ACCOUNT_FACTS[provider].items()
    assert properties["access_token"] == "***********"
    (issued,) = oauth_server.access_tokens
    (asked,) = [r for r in oauth_server.requests if r.path.startswith("/api/")]
    assert asked.header("authorization") == f"Bearer {issued}"  # asked with the new token, as its kind sends it


@pytest.mark.parametrize("provider, name, said", [
    ("github", "GitHub", "GET user answered HTTP 401"),
    ("slack", "Slack", "the answer to GET auth.test lacks url"),  # Slack refuses with HTTP 200 and {"ok": false}
])
async def test_a_failing_follow_up_call_stores_nothing_and_raises_connection_failed(
        server, client, oauth_server, browser, receiver, caplog, provider, name, said):
    caplog.set_level(logging.DEBUG)
    secret = await event_endpoint(client, receiver)
    oauth_server.refuse_account_requests = True

    landed = await connect_through_the_emulator(client, server, oauth_server, browser, provider)

    assert landed.status_code == 303
    back = query_of(landed.headers["location"])
    assert back["error"] == "account_facts_failed" and "credential_id" not in back
    assert back["error_description"].startswith(f"{name} did not say which account it is: ")
    assert said in back["error_description"]
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []
    (event,) = await received(receiver, secret, 1)
    assert event["type"] == "connection.failed" and event["data"]["error"] == "account_facts_failed"
    assert event["data"]["message"] == back["error_description"]
    (issued,) = oauth_server.access_tokens
    assert issued not in server_log(caplog) and issued not in json.dumps(event)


async def test_reconnecting_asks_for_the_accounts_facts_again_and_keeps_only_the_new_ones(
        server, client, oauth_server, browser):
    first = await connect_through_the_emulator(client, server, oauth_server, browser, "googledrive")
    oauth_server.account, oauth_server.hide_email = "user-2", True  # another Google account, its email hidden
    session = await new_session(client, allowed_integrations=["googledrive"])

    second = await browser.connect_with_oauth(session["connect_url"], integration="googledrive")

    first_id, second_id = (query_of(r.headers["location"])["credential_id"] for r in (first, second))
    assert first_id == second_id
    properties = (await client.rest.get(f"/v1/credentials/{second_id}")).json()["properties"]
    assert properties["permission_id"] == str(account_number("user-2"))
    assert "email" not in properties  # user-1's address is not user-2's
    assert properties["base_url"] == f"{oauth_server.base_url}/api"  # asked where the credential's calls go


@pytest.mark.parametrize("provider, expected, absent", [
    # Google: a refresh token only with offline access and consent asked again; PKCE
    ("googledrive", {"access_type": "offline", "prompt": "consent", "code_challenge_method": "S256",
                     "scope": "https://www.googleapis.com/auth/drive.readonly"}, []),
    ("slack", {"scope": "channels:read,users:read", "code_challenge_method": "S256"}, []),  # commas
    ("stripe", {"scope": "read_write"}, ["code_challenge", "code_challenge_method"]),  # no PKCE at Stripe
])
async def test_the_authorization_request_follows_the_catalogue(server, client, oauth_server, browser,
                                                              provider, expected, absent):
    oauth_server.register("client-1", "secret-1", redirect_uris=[f"{server.http_url}/v1/connect/callback"])
    made = await client.rest.post("/v1/oauth-apps", json={
        "provider": provider, "client_id": "client-1", "client_secret": "secret-1",
        "authorization_url": oauth_server.authorization_url, "token_url": oauth_server.token_url,
    })
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, allowed_integrations=[provider]))["connect_url"])

    started = await browser.submit(page, f"connect-{provider}")

    assert made.status_code == 200 and started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith(oauth_server.authorization_url + "?")
    asked = query_of(location)
    assert asked.items() >= {"response_type": "code", "client_id": "client-1",
                             "redirect_uri": f"{server.http_url}/v1/connect/callback", **expected}.items()
    assert len(asked["state"]) >= 43 and not [name for name in absent if name in asked]
    assert (await browser.consent(location)).status_code == 302  # the emulator takes the request


async def test_a_denied_consent_goes_back_with_the_error_and_stores_nothing(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)

    landed = await browser.connect_with_oauth((await new_session(client, oauth_server))["connect_url"], "deny")

    assert landed.status_code == 303
    back = query_of(landed.headers["location"])
    assert back["error"] == "access_denied" and "credential_id" not in back
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []
    assert oauth_server.token_requests == []


# --- state, tokens and forms that must be refused ---------------------------------------------


async def started_sign_in(client, server, oauth_server, browser) -> str:
    """A sign-in approved at the provider: the callback URL it sends the browser to."""
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, oauth_server))["connect_url"])
    started = await browser.submit(page, "connect-github")
    return (await browser.consent(started.headers["location"])).headers["location"]


async def test_a_tampered_state_is_refused_on_a_page_of_its_own(server, client, oauth_server, browser):
    callback = await started_sign_in(client, server, oauth_server, browser)
    query = query_of(callback)

    answer = await browser.http.get(f"{server.http_url}/v1/connect/callback",
                                    params={**query, "state": query["state"][:-2] + "xy"})

    assert answer.status_code == 400 and "location" not in answer.headers
    assert "not valid" in answer.text and query["code"] not in answer.text
    assert oauth_server.token_requests == []


async def test_a_replayed_state_is_refused(server, client, oauth_server, browser):
    callback = await started_sign_in(client, server, oauth_server, browser)
    first = await browser.http.get(callback)

    replayed = await browser.http.get(callback)

    assert first.status_code == 303
    assert replayed.status_code == 400 and "used already" in replayed.text
    assert len(oauth_server.token_requests) == 1


async def test_a_state_comes_back_only_to_the_browser_that_started_it(server, client, oauth_server, browser):
    callback = await started_sign_in(client, server, oauth_server, browser)

    async with httpx.AsyncClient() as elsewhere:
        answer = await elsewhere.get(callback)

    assert answer.status_code == 400 and "another browser" in answer.text
    assert oauth_server.token_requests == []


async def test_a_session_token_opens_the_page_once(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    session = await new_session(client, oauth_server)
    first = await browser.open(session["connect_url"])

    async with httpx.AsyncClient() as other_browser:
        again = await other_browser.get(session["connect_url"])
    reused = await browser.http.get(session["connect_url"])

    assert first.status_code == 200 and "Connect with GitHub" in first.text
    assert again.status_code == reused.status_code == 409
    assert "used already" in again.text


async def test_the_page_is_only_for_the_browser_that_opened_it(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    opened = await browser.http.get((await new_session(client, oauth_server))["connect_url"])

    async with httpx.AsyncClient() as other_browser:
        answer = await other_browser.get(opened.headers["location"])

    assert answer.status_code == 403


async def test_an_expired_session_opens_nothing(database_url, oauth_server):
    settings = settings_for(database_url, connect_session_seconds=0.5)
    server = await Server.start(settings)
    try:
        running = Running(server, settings)
        client = await _client_for(running, "acme")
        await github_app(client, running, oauth_server)
        await allow_app_origin(client)
        session = await new_session(client, oauth_server)
        await asyncio.sleep(0.6)
        async with httpx.AsyncClient() as http:
            answer = await http.get(session["connect_url"])
        await client.rest.aclose()
        await client.channel.close()
    finally:
        await server.stop(grace=1)

    assert answer.status_code == 410 and "expired" in answer.text


async def test_a_form_without_the_pages_csrf_token_is_refused(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, oauth_server))["connect_url"])
    action, fields = browser.form(page, "connect-github")

    forged = await browser.http.post(action, data={**fields, "csrf_token": "guessed"})
    elsewhere = await browser.http.post(action, data=fields, headers={"origin": "https://evil.example"})

    assert forged.status_code == elsewhere.status_code == 403
    assert "location" not in forged.headers and "location" not in elsewhere.headers


async def test_the_page_sets_a_strict_content_security_policy_and_loads_nothing_from_elsewhere(
        server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)

    page = await browser.open((await new_session(client, oauth_server))["connect_url"])

    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    form_action = next(d for d in policy.split("; ") if d.startswith("form-action "))
    assert sorted(form_action.split()[1:]) == sorted(["'self'", APP_ORIGIN, oauth_server.base_url])
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == [f"{server.http_url}/v1/connect/assets/connect.css"]
    assert '<label for="' not in page.text or 'id="' in page.text
    css = await browser.http.get(f"{server.http_url}/v1/connect/assets/connect.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


# --- creating sessions -------------------------------------------------------------------------


async def test_a_redirect_url_outside_the_allowed_origins_is_refused(server, client, oauth_server):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)

    answers = [await client.rest.post("/v1/connect/sessions", json={
        "end_user": {"id": "user-42"}, "allowed_integrations": ["github"], "redirect_url": url,
    }) for url in ("https://evil.example/connected", "http://app.example.com/connected",
                   "https://app.example.com.evil.example/", "https://user@app.example.com/x")]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        (violation,) = answer.json()["details"][0]["field_violations"]
        assert violation["field"] == "redirect_url"
    assert "not one of the organisation's allowed redirect origins" in answers[0].json()["message"]


async def test_a_long_redirect_url_is_fine_and_one_past_2048_characters_is_refused(server, client):
    await allow_app_origin(client)
    long_url = f"{APP_ORIGIN}/connected?state=" + "x" * 1900

    fine = await client.rest.post("/v1/connect/sessions", json={
        "end_user": {"id": "user-42"}, "allowed_integrations": ["github"], "redirect_url": long_url})
    refused = await client.rest.post("/v1/connect/sessions", json={
        "end_user": {"id": "user-42"}, "allowed_integrations": ["github"], "redirect_url": long_url + "x" * 200})

    assert fine.status_code == 200, fine.text
    assert fine.json()["redirect_url"] == long_url
    assert refused.status_code == 400 and "at most 2048" in refused.json()["message"]


async def test_a_session_lists_every_mistake_and_stores_nothing(server, client):
    answer = await client.rest.post("/v1/connect/sessions", json={
        "end_user": {"email": "x@example.com"}, "allowed_integrations": ["github", "nosuch", "custom", "slack"],
        "redirect_url": "https://app.example.com/x", "integration_properties": {"github": {"access_token": "x"}},
    })

    assert answer.status_code == 400
    fields = [v["field"] for v in answer.json()["details"][0]["field_violations"]]
    # github connects with a token here; slack needs an OAuth app, which the organisation lacks
    assert fields == ["end_user.id", "allowed_integrations[1]", "allowed_integrations[2]", "allowed_integrations[3]",
                      "redirect_url", "integration_properties['github'].access_token"]
    assert "POST /v1/oauth-apps" in answer.json()["message"]


async def test_the_session_answer_carries_its_token_connect_url_and_expiry(server, client, oauth_server):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)

    session = await new_session(client, oauth_server)

    assert session["connect_url"] == f"{server.http_url}/v1/connect?session_token={session['token']}"
    assert session["end_user"] == {"id": "user-42", "email": "paul@arrakis.org", "display_name": None}
    assert session["allowed_integrations"] == ["github"] and session["redirect_url"] == REDIRECT_URL
    assert session["expires_at"].endswith("Z")


async def test_a_session_is_made_over_grpc_as_over_rest(server, client, oauth_server):
    from headwater.v1 import connect_pb2, connect_pb2_grpc

    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    sessions = connect_pb2_grpc.ConnectServiceStub(client.channel)

    answer = await sessions.CreateConnectSession(connect_pb2.CreateConnectSessionRequest(
        end_user=connect_pb2.EndUser(id="user-42"), allowed_integrations=["github"], redirect_url=REDIRECT_URL,
    ), metadata=client.metadata)

    assert answer.session.connect_url == f"{server.http_url}/v1/connect?session_token={answer.session.token}"
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(answer.session.connect_url)).status_code == 303


async def test_the_page_connects_only_the_sessions_integrations(server, client, oauth_server, fake_provider, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    page = await browser.open((await new_session(client, oauth_server))["connect_url"])  # github only
    action, fields = browser.form(page, "connect-github")
    stripe = await fake_provider("stripe")

    answer = await browser.http.post(action.removesuffix("github") + "stripe", data={
        **fields, "method": "key", "kind": "stripe_api_key", "secret": stripe.token})

    assert answer.status_code == 404 and "location" not in answer.headers
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []


async def test_allowed_redirect_origins_are_origins_alone_and_each_organisations_own(server, client, other_client):
    refused = await client.rest.patch("/v1/connect/settings", json={
        "allowed_redirect_origins": ["https://app.example.com/path", "ftp://files.example.com", "https://ok.example.com"]})
    kept = await client.rest.patch("/v1/connect/settings", json={
        "allowed_redirect_origins": ["HTTPS://App.Example.com:443", "http://localhost:3000"]})

    assert refused.status_code == 400
    assert [v["field"] for v in refused.json()["details"][0]["field_violations"]] == [
        "settings.allowed_redirect_origins[0]", "settings.allowed_redirect_origins[1]"]
    assert kept.json()["allowed_redirect_origins"] == ["https://app.example.com", "http://localhost:3000"]
    assert (await client.rest.get("/v1/connect/settings")).json()["allowed_redirect_origins"] == [
        "https://app.example.com", "http://localhost:3000"]
    assert (await other_client.rest.get("/v1/connect/settings")).json()["allowed_redirect_origins"] == []


async def test_a_connected_users_token_opens_a_session_for_its_sub(server, client, oauth_server, browser):
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    private, public = key_pair()
    project = (await client.rest.post("/v1/projects", json={"name": "app", "signing_public_key": public})).json()
    user_token = jwt.encode({"sub": "user-7", "exp": int(time.time()) + 600}, private, algorithm="RS256")

    answer = await browser.http.post(f"{server.http_url}/projects/{project['id']}/sdk/connect/github",
                                     json={"redirect_url": REDIRECT_URL}, headers={"authorization": f"Bearer {user_token}"})
    foreign = await browser.http.post(f"{server.http_url}/projects/{project['id']}/sdk/connect/github",
                                      json={"redirect_url": REDIRECT_URL}, headers={"authorization": f"Bearer {client.token}"})

    assert answer.status_code == 200, answer.text
    session = answer.json()
    assert session["end_user"]["id"] == "user-7" and session["allowed_integrations"] == ["github"]
    assert foreign.status_code == 401
    page = await browser.open(session["connect_url"])
    assert page.status_code == 200 and "Connect with GitHub" in page.text


# --- API keys ------------------------------------------------------------------------------------


async def stripe_session(client, stripe) -> dict:
    await allow_app_origin(client)
    return await new_session(client, allowed_integrations=["stripe"],
                             integration_properties={"stripe": {"base_url": stripe.base_url}})


async def test_an_api_key_is_checked_by_the_providers_verification_request_then_stored(
        server, client, fake_provider, browser):
    stripe = await fake_provider("stripe")
    page = await browser.open((await stripe_session(client, stripe))["connect_url"])

    answer = await browser.submit(page, "submit-stripe_api_key", secret=stripe.token)

    assert answer.status_code == 303, answer.text
    back = query_of(answer.headers["location"])
    credential = (await client.rest.get(f"/v1/credentials/{back['credential_id']}")).json()
    assert credential["properties"] == {"kind": "stripe_api_key", "secret": "***********", "base_url": stripe.base_url}
    assert credential["external_id"] == "user-42" and credential["oauth_app"] is None


async def test_a_wrong_api_key_shows_the_providers_error_and_stores_nothing(server, client, fake_provider, browser):
    stripe = await fake_provider("stripe")
    page = await browser.open((await stripe_session(client, stripe))["connect_url"])

    answer = await browser.submit(page, "submit-stripe_api_key", secret="sk_test_wrong")

    assert answer.status_code == 400 and "location" not in answer.headers
    assert 'role="alert"' in answer.text and "Stripe refused it (HTTP 401): " in answer.text
    assert "sk_test_wrong" not in answer.text
    assert (await client.rest.get("/v1/credentials")).json()["data"] == []


# --- events ------------------------------------------------------------------------------------


async def event_endpoint(client, receiver: Receiver) -> str:
    """An event endpoint of the organisation at the receiver; its secret."""
    made = await client.rest.post("/v1/event-endpoints", json={"url": receiver.url})
    assert made.status_code == 200, made.text
    return made.json()["secret"]


async def received(receiver: Receiver, secret: str, count: int) -> list[dict]:
    """The first `count` events the receiver got, each POST's signature checked."""
    await eventually(lambda: sum(len(json.loads(post.body)["data"]) for _, post in receiver.posts) >= count, timeout=10)
    for _, post in receiver.posts:
        signed = "sha256=" + hmac.new(secret.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.header("x-headwater-signature") == signed
    return [event for body in receiver.bodies() for event in body["data"]][:count]


async def test_a_connection_raises_connection_created_for_the_organisations_endpoints(
        server, client, oauth_server, browser, receiver):
    secret = await event_endpoint(client, receiver)
    await github_app(client, server, oauth_server)
    await allow_app_origin(client)
    session = await new_session(client, oauth_server)

    landed = await browser.connect_with_oauth(session["connect_url"])

    credential_id = query_of(landed.headers["location"])["credential_id"]
    (event,) = await received(receiver, secret, 1)
    assert event["type"] == "connection.created"
    assert event["data"] == {
        "credential_id": credential_id, "provider": "github", "end_user_id": "user-42",
        "session_id": session["id"], "reconnected": False,
    }


async def test_a_denied_consent_and_a_wrong_key_raise_connection_failed_saying_why(
        server, client, oauth_server, fake_provider, browser, receiver):
    secret = await event_endpoint(client, receiver)
    await github_app(client, server, oauth_server)
    stripe = await fake_provider("stripe")
    await allow_app_origin(client)
    denied = await new_session(client, oauth_server)
    await browser.connect_with_oauth(denied["connect_url"], "deny")
    wrong = await stripe_session(client, stripe)
    page = await browser.open(wrong["connect_url"])
    await browser.submit(page, "submit-stripe_api_key", secret="sk_test_wrong")

    events = await received(receiver, secret, 2)

    assert [(e["type"], e["data"]["provider"], e["data"]["session_id"]) for e in events] == [
        ("connection.failed", "github", denied["id"]), ("connection.failed", "stripe", wrong["id"])]
    assert events[0]["data"]["end_user_id"] == "user-42"
    assert events[0]["data"]["message"] == "GitHub did not authorize the connection (access_denied)"
    assert events[1]["data"]["message"].startswith("Stripe refused it (HTTP 401): Invalid API Key provided")
    assert "sk_test_wrong" not in json.dumps(events)
