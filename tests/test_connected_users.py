"""The connected-user proxy: a project's user token (RS256 JWT, sub = user id) picks the user's account."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def key_pair() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public_pem


def user_token(private_key, sub: str, expires_in: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + expires_in}, private_key, algorithm="RS256")


@pytest.fixture(scope="module")
def keys():
    return key_pair()


@pytest.fixture
async def project(client, keys, upstream):
    """A project with a signing key, and user-42's Salesforce and custom 'tasklab' accounts."""
    _, public_pem = keys
    created = await client.rest.post("/v1/projects", json={"name": "App", "signing_public_key": public_pem})
    assert created.status_code == 200, created.text
    for body in (
        {"provider": "salesforce", "external_id": "user-42", "properties": {
            "kind": "salesforce_oauth2", "access_token": "00D-user42", "instance_url": upstream.base_url}},
        {"provider": "salesforce", "external_id": "user-7", "properties": {
            "kind": "salesforce_oauth2", "access_token": "00D-user7", "instance_url": upstream.base_url}},
        {"provider": "custom", "external_id": "user-42", "properties": {
            "kind": "custom_bearer", "token": "tasklab-token", "base_url": upstream.base_url,
            "integration": "tasklab", "integration_id": "int-9"}},
    ):
        response = await client.rest.post("/v1/credentials", json=body)
        assert response.status_code == 200, response.text
    return created.json()


def sdk(client) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=str(client.rest.base_url))


async def test_user_token_selects_that_users_credential(client, keys, project, upstream):
    private, _ = keys

    async with sdk(client) as app:
        response = await app.get(
            f"/projects/{project['id']}/sdk/proxy/salesforce/echo/services/data/v59.0/sobjects/Contact",
            headers={"authorization": f"Bearer {user_token(private, 'user-42')}"},
        )

    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/echo/services/data/v59.0/sobjects/Contact"
    assert upstream.requests[-1].header("authorization") == "Bearer 00D-user42"


@pytest.mark.parametrize("integration", ["custom.tasklab", "custom/int-9"])
async def test_custom_integrations_by_name_or_id(client, keys, project, upstream, integration):
    private, _ = keys

    async with sdk(client) as app:
        response = await app.post(
            f"/projects/{project['id']}/sdk/proxy/{integration}/echo/tasks", json={"title": "x"},
            headers={"authorization": f"Bearer {user_token(private, 'user-42')}"},
        )

    assert response.status_code == 200, response.text
    assert upstream.requests[-1].header("authorization") == "Bearer tasklab-token"


async def test_non_json_answer_needs_the_raw_response_header(client, keys, project):
    private, _ = keys
    headers = {"authorization": f"Bearer {user_token(private, 'user-42')}"}

    async with sdk(client) as app:
        refused = await app.get(f"/projects/{project['id']}/sdk/proxy/salesforce/binary", headers=headers)
        raw = await app.get(f"/projects/{project['id']}/sdk/proxy/salesforce/binary",
                            headers={**headers, "x-paragon-use-raw-response": "1"})

    assert refused.status_code == 400
    assert "X-Paragon-Use-Raw-Response: 1" in refused.json()["message"]
    assert len(refused.headers["x-headwater-request-id"]) == 32
    assert raw.status_code == 200
    assert raw.content == bytes(range(256))
    assert raw.headers["content-type"] == "application/octet-stream"


async def test_fully_qualified_url_outside_the_integration_is_refused(client, keys, project, upstream):
    private, _ = keys

    async with sdk(client) as app:
        response = await app.get(
            f"/projects/{project['id']}/sdk/proxy/salesforce/https://sheets.googleapis.com/v4/spreadsheets",
            headers={"authorization": f"Bearer {user_token(private, 'user-42')}"},
        )

    assert response.status_code == 400
    assert response.json()["message"] == "This domain is invalid for the current integration"
    assert upstream.requests == []


async def test_bad_tokens_are_unauthenticated(client, keys, project, upstream):
    private, _ = keys
    stranger, _ = key_pair()
    path = f"/projects/{project['id']}/sdk/proxy/salesforce/echo"
    cases = {
        "no token": {},
        "api token instead of user token": {"authorization": f"Bearer {client.token}"},
        "signed by another key": {"authorization": f"Bearer {user_token(stranger, 'user-42')}"},
        "expired": {"authorization": f"Bearer {user_token(private, 'user-42', expires_in=-120)}"},
        "wrong algorithm": {"authorization": "Bearer " + jwt.encode(
            {"sub": "user-42", "exp": int(time.time()) + 60}, "secret", algorithm="HS256")},
    }

    async with sdk(client) as app:
        for case, headers in cases.items():
            response = await app.get(path, headers=headers)
            assert response.status_code == 401, case
        wrong_project = await app.get(
            "/projects/no-such-project/sdk/proxy/salesforce/echo",
            headers={"authorization": f"Bearer {user_token(private, 'user-42')}"},
        )

    assert wrong_project.status_code == 401
    assert upstream.requests == []


async def test_unknown_user_or_integration_is_not_found(client, keys, project, upstream):
    private, _ = keys

    async with sdk(client) as app:
        unknown_user = await app.get(f"/projects/{project['id']}/sdk/proxy/salesforce/echo",
                                     headers={"authorization": f"Bearer {user_token(private, 'user-999')}"})
        not_connected = await app.get(f"/projects/{project['id']}/sdk/proxy/hubspot/echo",
                                      headers={"authorization": f"Bearer {user_token(private, 'user-42')}"})

    assert unknown_user.status_code == 404
    assert not_connected.status_code == 404
    assert upstream.requests == []


async def test_project_key_must_be_an_rsa_public_key(client):
    response = await client.rest.post("/v1/projects", json={"name": "x", "signing_public_key": "not a key"})

    assert response.status_code == 400
    assert "project.signing_public_key" in json.dumps(response.json())


async def test_another_organisation_cannot_see_the_project(client, other_client, project):
    response = await other_client.rest.get(f"/v1/projects/{project['id']}")

    assert response.status_code == 404
