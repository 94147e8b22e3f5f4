"""The OAuth2 authorization-server emulator (tests/oauth_server.py) holds to the protocol: what the
connect flow and the refresh are tested against must refuse what a real provider refuses."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

REDIRECT_URI = "http://127.0.0.1:9/callback"


@pytest.fixture
async def browser(oauth_server):
    """An HTTP client of the emulator that does not follow redirects (the test reads them)."""
    oauth_server.register("client-1", "secret-1", redirect_uris=[REDIRECT_URI])
    async with httpx.AsyncClient(base_url=oauth_server.base_url) as client:
        yield client


def authorization_params(verifier: str | None = None, **extra) -> dict:
    params = {"response_type": "code", "client_id": "client-1", "redirect_uri": REDIRECT_URI,
              "scope": "read write", "state": "st-1"}
    if verifier:
        params |= {"code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    return params | extra


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


async def approve(browser, verifier: str | None = None, decision: str = "approve") -> dict[str, list[str]]:
    """Opens the consent page, presses a button; the query the browser is redirected with."""
    page = await browser.get("/authorize", params=authorization_params(verifier))
    assert page.status_code == 200, page.text
    answer = await browser.post("/authorize", data=form_fields(page.text) | {"decision": decision})
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return parse_qs(location.query)


async def exchange(browser, code: str, verifier: str | None = None, **changes) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": "client-1", "client_secret": "secret-1"}
    if verifier:
        form["code_verifier"] = verifier
    return await browser.post("/token", data={k: v for k, v in (form | changes).items() if v is not None})


async def test_the_consent_page_is_a_form_with_approve_and_deny_buttons(browser):
    page = await browser.get("/authorize", params=authorization_params())

    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/authorize">' in page.text
    assert 'name="decision" value="approve"' in page.text and 'name="decision" value="deny"' in page.text
    assert "<li>read</li><li>write</li>" in page.text
    assert form_fields(page.text)["state"] == "st-1"


async def test_approving_redirects_with_a_code_that_buys_tokens_once(browser):
    query = await approve(browser)
    assert query["state"] == ["st-1"]

    first = await exchange(browser, query["code"][0])
    again = await exchange(browser, query["code"][0])

    assert first.status_code == 200, first.text
    tokens = first.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600 and tokens["refresh_token"]
    me = await browser.get("/api/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert me.json() == {"account": "user-1", "client_id": "client-1", "scopes": ["read", "write"]}
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_denying_redirects_with_access_denied(browser):
    query = await approve(browser, decision="deny")

    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"] and "code" not in query


async def test_the_code_needs_its_redirect_uri_the_clients_secret_and_the_pkce_verifier(browser):
    verifier = generate_token(48)

    async def refusal(**changes) -> tuple[int, str]:
        code = (await approve(browser, verifier))["code"][0]
        answer = await exchange(browser, code, verifier, **changes)
        return answer.status_code, answer.json()["error"]

    assert await refusal(redirect_uri="http://127.0.0.1:9/elsewhere") == (400, "invalid_grant")
    assert await refusal(client_secret="wrong") == (401, "invalid_client")
    assert await refusal(code_verifier="not-the-verifier") == (400, "invalid_grant")
    assert await refusal(code_verifier=None) == (400, "invalid_grant")
    code = (await approve(browser, verifier))["code"][0]
    assert (await exchange(browser, code, verifier)).status_code == 200


async def test_the_client_may_authenticate_with_http_basic(browser):
    code = (await approve(browser))["code"][0]
    basic = base64.b64encode(b"client-1:secret-1").decode()

    answer = await browser.post("/token", headers={"authorization": f"Basic {basic}"}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})

    assert answer.status_code == 200, answer.text


async def test_a_refresh_rotates_the_refresh_token_and_a_reused_or_revoked_one_is_an_invalid_grant(browser, oauth_server):
    tokens = oauth_server.issue("client-1", ["read"])

    def refresh(token: str):
        return browser.post("/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                            "client_id": "client-1", "client_secret": "secret-1"})

    fresh = await refresh(tokens["refresh_token"])
    reused = await refresh(tokens["refresh_token"])
    oauth_server.revoke(fresh.json()["refresh_token"])
    revoked = await refresh(fresh.json()["refresh_token"])

    assert fresh.status_code == 200 and fresh.json()["refresh_token"] != tokens["refresh_token"]
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert (revoked.status_code, revoked.json()["error"]) == (400, "invalid_grant")


async def test_the_api_refuses_an_expired_or_unknown_access_token(browser, oauth_server):
    tokens = oauth_server.issue("client-1")
    oauth_server.expire(tokens["access_token"])

    expired = await browser.get("/api/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
    unknown = await browser.get("/api/me", headers={"authorization": "Bearer nope"})

    assert (expired.status_code, expired.json()["error"]) == (401, "invalid_token")
    assert unknown.status_code == 401 and "invalid_token" in unknown.headers["www-authenticate"]


async def test_an_unregistered_redirect_uri_is_refused_on_the_page_not_redirected_to(browser):
    page = await browser.get("/authorize", params=authorization_params(redirect_uri="https://evil.example/cb"))

    assert page.status_code == 400 and "location" not in page.headers
