"""OAuth2 credentials are refreshed before they expire and once on a 401, one refresh at a time."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import httpx
import pytest
from conftest import Running, settings_for

from headwater.server import Server


async def hubspot_credential(client, upstream, *, access_token: str, expires_in: float, delay: float = 0) -> str:
    response = await client.rest.post("/v1/credentials", json={
        "provider": "hubspot",
        "properties": {
            "kind": "hubspot_oauth2", "access_token": access_token, "refresh_token": "rt-0",
            "client_id": "app-1", "client_secret": "shh", "expires_at": int(time.time() + expires_in),
            "base_url": upstream.base_url, "token_url": f"{upstream.base_url}/oauth/token?delay={delay}",
        },
    })
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def test_expiring_token_is_refreshed_before_the_call(client, upstream):
    credential_id = await hubspot_credential(client, upstream, access_token="at-0", expires_in=10)

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/protected")

    assert response.status_code == 200, response.text
    assert upstream.token_refreshes == 1
    assert [r.path for r in upstream.requests] == ["/oauth/token", "/protected"]
    assert upstream.requests[-1].header("authorization") == "Bearer at-1"
    stored = (await client.rest.get(f"/v1/credentials/{credential_id}")).json()["properties"]
    assert stored["access_token"] == stored["refresh_token"] == "***********"
    assert stored["expires_at"] > time.time() + 3000


async def test_rejected_token_is_refreshed_once_and_the_call_repeated(client, upstream):
    credential_id = await hubspot_credential(client, upstream, access_token="revoked", expires_in=3600)

    response = await client.rest.post(f"/v1/proxy/credential/{credential_id}/protected", content=b"x")

    assert response.status_code == 200, response.text
    assert [r.path for r in upstream.requests] == ["/protected", "/oauth/token", "/protected"]


async def test_concurrent_callers_share_one_refresh(client, upstream):
    credential_id = await hubspot_credential(client, upstream, access_token="at-0", expires_in=0, delay=0.3)

    responses = await asyncio.gather(*(
        client.rest.get(f"/v1/proxy/credential/{credential_id}/protected") for _ in range(20)
    ))

    assert [r.status_code for r in responses] == [200] * 20
    assert upstream.token_refreshes == 1


async def test_a_caller_waits_for_a_slow_refresh_only_until_its_deadline(client, upstream):
    credential_id = await hubspot_credential(client, upstream, access_token="at-0", expires_in=0, delay=1.5)

    hurried = await client.rest.get(
        f"/v1/proxy/credential/{credential_id}/protected", headers={"x-headwater-timeout": "0.3"}
    )
    patient = await client.rest.get(f"/v1/proxy/credential/{credential_id}/protected")

    assert hurried.status_code == 504
    assert "timed out" in hurried.json()["message"]
    # The refresh went on without the caller that gave up, and the next caller used it.
    assert patient.status_code == 200, patient.text
    assert upstream.token_refreshes == 1
    assert upstream.requests[-1].header("authorization") == "Bearer at-1"


async def test_failed_refresh_says_to_reconnect_and_hides_the_tokens(client, upstream):
    credential_id = await hubspot_credential(client, upstream, access_token="at-0", expires_in=0)
    upstream.refresh_token = "rotated-elsewhere"

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/protected")

    assert response.status_code == 401
    assert "reconnect" in response.json()["message"]
    assert "rt-0" not in response.text and "shh" not in response.text


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_servers_on_one_database_share_one_refresh(server, client, upstream):
    """Rotating refresh tokens die on first use: a second replica must not refresh again."""
    credential_id = await hubspot_credential(client, upstream, access_token="at-0", expires_in=0, delay=0.3)
    second = await Server.start(settings_for(server.settings.database_url, secret_key=server.settings.secret_key))
    try:
        other = httpx.AsyncClient(base_url=Running(second, server.settings).http_url, headers=client.rest.headers)
        async with other:
            responses = await asyncio.gather(*(
                rest.get(f"/v1/proxy/credential/{credential_id}/protected") for rest in [client.rest, other] * 10
            ))
    finally:
        await second.stop(grace=1)

    assert [r.status_code for r in responses] == [200] * 20
    assert upstream.token_refreshes == 1


async def test_a_credential_whose_auth_sends_no_token_is_never_refreshed(client, upstream):
    """Basic auth sends a password, not an access token: a `refresh_token` on such a credential
    (imported with the account, say) has nothing to refresh, so calls go out with the password."""
    response = await client.rest.post("/v1/credentials", json={"provider": "custom", "properties": {
        "kind": "custom_basic", "base_url": upstream.base_url, "username": "u", "password": "p",
        "refresh_token": "rt-0", "token_url": f"{upstream.base_url}/oauth/token", "expires_at": 0,
    }})
    assert response.status_code == 200, response.text

    answer = await client.rest.get(f"/v1/proxy/credential/{response.json()['id']}/protected")

    assert answer.status_code != 500, answer.text
    assert upstream.token_refreshes == 0
    assert [r.path for r in upstream.requests] == ["/protected"]
    assert upstream.requests[-1].header("authorization") == "Basic dTpw"


# --- Through the credential's OAuth app (against the authorization-server emulator) ------------


async def connected_through_app(client, oauth_server, *, app: dict | None = None, own: dict | None = None,
                                token_url_property: bool = False, oauth_app_id: str | None = None) -> str:
    """A GitHub credential whose access token has expired, connected through an OAuth app whose
    client is registered at the emulator ("client-1"); `own` adds properties of the credential's."""
    oauth_server.register("client-1", "secret-1")
    tokens = oauth_server.issue((own or {}).get("client_id", "client-1"), ["repo"])
    oauth_server.expire(tokens["access_token"])
    if oauth_app_id is None:
        made = await client.rest.post("/v1/oauth-apps", json={
            "provider": "github", "client_id": "client-1", "client_secret": "secret-1",
            "token_url": oauth_server.token_url, **(app or {}),
        })
        assert made.status_code == 200, made.text
        oauth_app_id = made.json()["id"]
    properties = {
        "kind": "github_oauth2", "access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
        "expires_at": int(time.time()) - 10, "base_url": f"{oauth_server.base_url}/api", **(own or {}),
    }
    if token_url_property:
        properties["token_url"] = oauth_server.token_url
    response = await client.rest.post("/v1/credentials", json={
        "provider": "github", "oauth_app_id": oauth_app_id, "properties": properties,
    })
    assert response.status_code == 200, response.text
    return response.json()["id"]


def client_authentication(form: dict) -> tuple[str, str]:
    """The client id and secret a token request authenticated with (form or HTTP basic)."""
    if form["authorization"].startswith("Basic "):
        client_id, _, secret = base64.b64decode(form["authorization"][6:]).decode().partition(":")
        return client_id, secret
    return form.get("client_id", ""), form.get("client_secret", "")


async def test_an_expired_token_is_refreshed_with_the_client_secret_of_the_credentials_app(client, oauth_server, caplog):
    caplog.set_level(logging.DEBUG)
    credential_id = await connected_through_app(client, oauth_server, token_url_property=True)

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert response.status_code == 200, response.text
    assert response.json() == {"account": "user-1", "client_id": "client-1", "scopes": ["repo"]}
    (refresh,) = oauth_server.token_requests
    assert refresh["grant_type"] == "refresh_token"
    assert client_authentication(refresh) == ("client-1", "secret-1")
    assert "secret-1" not in caplog.text and refresh["refresh_token"] not in caplog.text
    again = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")  # the new token was kept
    assert again.status_code == 200 and len(oauth_server.token_requests) == 1


async def test_the_apps_token_url_is_where_the_refresh_goes(client, oauth_server):
    credential_id = await connected_through_app(client, oauth_server)

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert response.status_code == 200, response.text
    assert [r.path for r in oauth_server.requests] == ["/token", "/api/me"]


async def test_a_credentials_own_client_id_and_secret_win_over_its_apps(client, oauth_server):
    """Imported tokens were issued to the client that issued them, whatever app is named now."""
    oauth_server.register("imported-client", "imported-secret")
    credential_id = await connected_through_app(
        client, oauth_server, own={"client_id": "imported-client", "client_secret": "imported-secret"},
        token_url_property=True,
    )

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert response.status_code == 200, response.text
    assert client_authentication(oauth_server.token_requests[0]) == ("imported-client", "imported-secret")


async def test_an_apps_new_secret_is_used_at_once(client, oauth_server):
    credential_id = await connected_through_app(client, oauth_server, app={"client_secret": "stale"})
    app_id = (await client.rest.get(f"/v1/credentials/{credential_id}")).json()["oauth_app_id"]

    refused = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")
    await client.rest.patch(f"/v1/oauth-apps/{app_id}", json={"client_secret": "secret-1"})
    accepted = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert refused.status_code == 401 and "invalid_client" in refused.json()["message"]
    assert accepted.status_code == 200, accepted.text


async def test_a_refresh_token_the_provider_revoked_is_an_invalid_grant_to_reconnect(client, oauth_server):
    credential_id = await connected_through_app(client, oauth_server)
    for token in list(oauth_server.refresh_tokens):
        oauth_server.revoke(token)

    response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")

    assert response.status_code == 401
    assert response.json()["message"] == (
        "GitHub refused the credential's refresh token (HTTP 400 invalid_grant); reconnect the account, "
        "or update its tokens"
    )


async def test_the_instances_default_app_refreshes_the_credentials_that_name_it(database_url, oauth_server):
    from conftest import _client_for

    from headwater.settings import InstanceOAuthApp

    default = InstanceOAuthApp("github", "client-1", "secret-1", token_url=oauth_server.token_url)
    settings = settings_for(database_url, oauth_apps={"github": default})
    server = await Server.start(settings)
    try:
        client = await _client_for(Running(server, settings), "acme")
        credential_id = await connected_through_app(client, oauth_server, oauth_app_id="headwater:github")
        response = await client.rest.get(f"/v1/proxy/credential/{credential_id}/me")
        await client.rest.aclose()
        await client.channel.close()
    finally:
        await server.stop(grace=1)

    assert response.status_code == 200, response.text
    assert client_authentication(oauth_server.token_requests[0]) == ("client-1", "secret-1")
