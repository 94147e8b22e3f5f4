"""OAuth2 credentials are refreshed before they expire and once on a 401, one refresh at a time."""

from __future__ import annotations

import asyncio
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
