"""The web console over HTTP, as a browser meets it: signing in with an API token (the cookie's
flags), forms refused without their CSRF token or from another origin, another organisation's ids
answering 404, signing out; and what the pages show (syncs, credentials with their last hour,
consumers with a redeliver button, recent upstream calls without their query string).

tests/test_console_browser.py drives the same pages in a real browser.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import httpx
import pytest
from conftest import finish, settings_for
from test_consumers import make_consumer, make_sync, next_batch, write

from headwater.auth import Auth
from headwater.server import Server
from headwater.store.records import Change

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    """The answer's Set-Cookie headers by cookie name (the header as sent)."""
    found = {}
    for header in answer.headers.get_list("set-cookie"):
        found[header.partition("=")[0]] = header
    return found


def hidden_csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


class Browser:
    """An httpx client that keeps cookies as a browser does (only loopback http here)."""

    def __init__(self, base_url: str, origin: str | None = None):
        self.http = httpx.AsyncClient(base_url=base_url)
        self.origin = origin or base_url

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.http.get("/console/sign-in")
        assert form.status_code == 200, form.text
        return await self.post("/console/sign-in", {"csrf_token": hidden_csrf(form.text), "token": token})

    async def post(self, path: str, data: dict, origin: str | None = None) -> httpx.Response:
        return await self.http.post(path, data=data, headers={"origin": origin or self.origin})

    async def csrf(self, path: str = "/console/syncs") -> str:
        return hidden_csrf((await self.http.get(path)).text)

    async def aclose(self):
        await finish("closing the browser's client", self.http.aclose())


@pytest.fixture
async def browser(server):
    b = Browser(server.http_url)
    yield b
    await b.aclose()


async def test_signing_in_sets_an_httponly_samesite_strict_cookie_that_does_not_hold_the_token(server, client, browser):
    sync = await make_sync(client)
    await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"name": "Choam Stripe"})

    before = await browser.http.get("/console")
    signed_in = await browser.sign_in(client.token)
    syncs = await browser.http.get("/console/syncs")

    assert before.status_code == 303 and before.headers["location"].endswith("/console/sign-in")
    assert signed_in.status_code == 303 and signed_in.headers["location"].endswith("/console/syncs")
    cookie = set_cookies(signed_in)["hw_console"]
    flags = [part.strip() for part in cookie.split(";")[1:]]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/console" in flags
    assert "Secure" not in flags  # plain http on loopback: see test_over_https_the_cookie_is_secure
    assert client.token not in cookie
    assert syncs.status_code == 200
    assert "Choam Stripe" in syncs.text and "acme" in syncs.text
    assert syncs.headers["content-security-policy"].startswith("default-src 'none'")
    assert syncs.headers["x-frame-options"] == "DENY"


async def test_a_token_that_is_not_valid_gets_the_form_again_and_no_session(server, browser):
    answer = await browser.sign_in("hw_not_a_token")

    assert answer.status_code == 401
    assert "That is not a valid API token." in answer.text
    assert "hw_console" not in set_cookies(answer)
    assert (await browser.http.get("/console/syncs")).status_code == 303


async def test_forms_without_their_csrf_token_or_from_another_origin_are_refused(server, client, browser):
    sync = await make_sync(client)
    consumer = await make_consumer(client, filters=[{"sync_id": sync["id"]}])
    form = await browser.http.get("/console/sign-in")
    foreign_sign_in = await browser.post(
        "/console/sign-in", {"csrf_token": hidden_csrf(form.text), "token": client.token}, origin="https://evil.example")
    no_cookie_token = await Browser(server.http_url).post("/console/sign-in", {"csrf_token": "x", "token": client.token})
    await browser.sign_in(client.token)
    csrf = await browser.csrf()

    without_token = await browser.post("/console/sign-out", {})
    wrong_token = await browser.post(f"/console/consumers/{consumer['id']}/redeliver", {"csrf_token": "0" * 64})
    foreign = await browser.post(f"/console/consumers/{consumer['id']}/redeliver", {"csrf_token": csrf},
                                 origin="https://evil.example")
    still_signed_in = await browser.http.get("/console/consumers")

    assert foreign_sign_in.status_code == 403 and "hw_console" not in set_cookies(foreign_sign_in)
    assert no_cookie_token.status_code == 403
    for refused in (without_token, wrong_token, foreign):
        assert refused.status_code == 403, refused.text
        assert "This form came from elsewhere" in refused.text
    assert still_signed_in.status_code == 200


async def test_another_organisations_ids_answer_404_in_the_console(server, client, other_client, browser):
    theirs = await make_sync(other_client)
    their_consumer = await make_consumer(other_client, filters=[{"sync_id": theirs["id"]}])
    await browser.sign_in(client.token)
    csrf = await browser.csrf()

    pages = [
        await browser.http.get(f"/console/syncs/{theirs['id']}"),
        await browser.http.get(f"/console/credentials/{theirs['credential_id']}"),
        await browser.http.get(f"/console/consumers/{their_consumer['id']}"),
        await browser.post(f"/console/consumers/{their_consumer['id']}/redeliver", {"csrf_token": csrf}),
        await browser.http.get("/console/syncs/not%20an%20id"),
    ]
    listed = await browser.http.get("/console/syncs")

    assert [p.status_code for p in pages] == [404] * 5
    assert theirs["id"] not in listed.text


async def test_signing_out_clears_the_cookie(server, client, browser):
    await browser.sign_in(client.token)

    answer = await browser.post("/console/sign-out", {"csrf_token": await browser.csrf()})
    after = await browser.http.get("/console/syncs")

    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")
    cleared = SimpleCookie(set_cookies(answer)["hw_console"])["hw_console"]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert after.status_code == 303 and after.headers["location"].endswith("/console/sign-in")


async def test_a_revoked_token_signs_the_browser_out(server, client, browser):
    auth = Auth(server.server.store)
    token = await auth.issue_token("acme", "console")
    await browser.sign_in(token)
    (row,) = [t for t in await auth.list_tokens("acme") if t.name == "console"]
    await server.server.backend.auth.revoke_token(row.id)

    answer = await browser.http.get("/console/syncs")

    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")


async def start_with(database_url: str, **settings):
    running = await Server.start(settings_for(database_url, **settings))
    org = await Auth(running.store).create_org("acme")
    token = await Auth(running.store).issue_token(org.name)
    return running, token


async def test_over_https_the_cookie_is_secure(database_url):
    running, token = await start_with(database_url, public_url="https://console.example.com")
    browser = Browser(f"http://127.0.0.1:{running.http_port}", origin="https://console.example.com")
    try:
        form = await browser.http.get("/console/sign-in")
        sign_in_cookie = SimpleCookie(set_cookies(form)["hw_console_sign_in"])["hw_console_sign_in"]
        answer = await browser.http.post(  # httpx keeps a Secure cookie for https only: sent by hand here
            "/console/sign-in", data={"csrf_token": hidden_csrf(form.text), "token": token},
            headers={"origin": browser.origin, "cookie": f"hw_console_sign_in={sign_in_cookie.value}"})
    finally:
        await browser.aclose()
        await finish("stopping the server", running.stop(grace=1))

    assert sign_in_cookie["secure"] is True
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://console.example.com/console/syncs"
    assert "; Secure" in set_cookies(answer)["hw_console"]


async def test_over_plain_http_away_from_loopback_the_console_does_not_sign_in(database_url):
    running, token = await start_with(database_url, public_url="http://console.example.com")
    browser = Browser(f"http://127.0.0.1:{running.http_port}", origin="http://console.example.com")
    try:
        form = await browser.http.get("/console/sign-in")
        posted = await browser.post("/console/sign-in", {"csrf_token": "x", "token": token})
    finally:
        await browser.aclose()
        await finish("stopping the server", running.stop(grace=1))

    assert form.status_code == 403 and "Serve it over https" in form.text
    assert posted.status_code == 403 and "hw_console" not in set_cookies(posted)


async def test_consumers_show_their_backlog_and_a_parked_message_is_redelivered(server, client, browser):
    sync = await make_sync(client)
    consumer = await make_consumer(client, name="orders", filters=[{"sync_id": sync["id"]}], max_deliver=1)
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {"v": 1}), Change("cus_2", {"v": 1}))
    token = (await next_batch(client, consumer["id"]))["data"][0]["ack_token"]
    await client.rest.post(f"/v1/http-consumers/{consumer['id']}/nack", json={"ack_tokens": [token]})  # parked
    await browser.sign_in(client.token)

    listed = await browser.http.get("/console/consumers")
    page = await browser.http.get(f"/console/consumers/{consumer['id']}")
    message_id = re.search(r'name="message_id" value="(\d+)"', page.text).group(1)
    redelivered = await browser.post(f"/console/consumers/{consumer['id']}/redeliver",
                                     {"csrf_token": hidden_csrf(page.text), "message_id": message_id})
    after = await browser.http.get(redelivered.headers["location"])

    row = re.search(r"<tr>\s*<th scope=\"row\"><a href=\"/console/consumers/[^\"]+\">orders</a>.*?</tr>", listed.text, re.S)
    assert re.findall(r'<td class="num">(?:<strong>)?(\d+)', row.group(0)) == ["1", "0", "1"]  # pending, ack pending, parked
    assert redelivered.status_code == 303
    assert "1 message(s) delivered again." in after.text
    assert re.search(r'id="num-parked">0<', after.text) and re.search(r'id="num-pending">2<', after.text)
    assert (await client.rest.get(f"/v1/http-consumers/{consumer['id']}/parked")).json()["data"] == []


async def test_credentials_show_the_last_hour_and_recent_calls_never_show_a_query_string(
        server, client, browser, upstream):
    created = await client.rest.post("/v1/credentials", json={"provider": "custom", "properties": {
        "kind": "custom_query", "query_param": "api_key", "api_key": "sk_secret_key", "base_url": upstream.base_url, "name": "Echo"}})
    assert created.status_code == 200, created.text
    credential = created.json()
    for _ in range(3):
        answer = await client.rest.get(f"/v1/proxy/credential/{credential['id']}/echo/v1/items", params={"q": "private"})
        assert answer.status_code == 200, answer.text
    await browser.sign_in(client.token)

    credentials = await browser.http.get("/console/credentials")
    one = await browser.http.get(f"/console/credentials/{credential['id']}")
    calls = await browser.http.get("/console/calls")

    assert "Echo" in credentials.text
    assert "3 requests in the last hour" in credentials.text and "<svg" in credentials.text
    host = upstream.base_url.split("//")[1]
    for page in (one, calls):
        assert page.status_code == 200
        assert page.text.count("/echo/v1/items</td>") == 3 and host in page.text
        assert "private" not in page.text and "sk_secret_key" not in page.text and "api_key" not in page.text


@pytest.mark.parametrize("cookie", ["hw_console=not-a-session", "hw_console=gAAAAA%%%", "hw_console=\"a;b\"; x=1", "==="])
async def test_a_cookie_that_is_not_a_session_of_ours_goes_to_the_sign_in_form(server, cookie):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        answer = await http.get("/console/consumers", headers={"cookie": cookie})

    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")
