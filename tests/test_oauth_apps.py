"""OAuth apps (/v1/oauth-apps, gRPC OAuthAppService): an organisation's client id and secret per
provider, which its credentials name with `oauth_app_id`; and the instance's default apps."""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from conftest import Running, settings_for

from headwater.server import Server
from headwater.settings import InstanceOAuthApp
from headwater.store.models import OAuthApp
from headwater.v1 import oauth_app_pb2
from test_hostile_input import refused_fields, table_rows

GITHUB_APP = {
    "provider": "github", "client_id": "Iv1.8a61f9b3a7aba766", "client_secret": "gh-app-secret",
    "scopes": ["repo", "read:user"], "metadata": {"team": "growth"},
}
MASK = "***********"


async def create_app(client, **fields) -> dict:
    response = await client.rest.post("/v1/oauth-apps", json=GITHUB_APP | fields)
    assert response.status_code == 200, response.text
    return response.json()


async def github_credential(client, **fields):
    return await client.rest.post("/v1/credentials", json={
        "provider": "github", "properties": {"kind": "github_oauth2", "access_token": "gho_user"}, **fields,
    })


# --- The resource ----------------------------------------------------------------------------


async def test_an_app_answers_every_field_with_its_client_secret_masked(client):
    app = await create_app(client, token_url="https://github.example.com/login/oauth/access_token")

    assert list(app) == [
        "id", "org_id", "provider", "client_id", "client_secret", "scopes", "authorization_url", "token_url",
        "metadata", "created_at", "updated_at",
    ]
    assert app["client_secret"] == MASK
    assert (app["provider"], app["client_id"], app["scopes"]) == ("github", "Iv1.8a61f9b3a7aba766", ["repo", "read:user"])
    assert app["authorization_url"] is None  # the provider's own (the catalogue's)
    assert app["token_url"] == "https://github.example.com/login/oauth/access_token"
    assert app["metadata"] == {"team": "growth"}
    read = (await client.rest.get(f"/v1/oauth-apps/{app['id']}")).json()
    assert read == app
    assert "gh-app-secret" not in json.dumps(read)


async def test_the_list_filters_by_provider_and_client_id(client):
    github = await create_app(client)
    other_github = await create_app(client, client_id="Iv1.other")
    hubspot = await create_app(client, provider="hubspot", client_id="hub-1", scopes=[])

    def ids(response):
        assert response.status_code == 200, response.text
        return [app["id"] for app in response.json()["data"]]

    assert ids(await client.rest.get("/v1/oauth-apps")) == [github["id"], other_github["id"], hubspot["id"]]
    assert ids(await client.rest.get("/v1/oauth-apps", params={"provider": "github"})) == [github["id"], other_github["id"]]
    assert ids(await client.rest.get("/v1/oauth-apps", params={"client_id": "hub-1"})) == [hubspot["id"]]
    first = (await client.rest.get("/v1/oauth-apps", params={"page_size": 2})).json()
    rest = (await client.rest.get("/v1/oauth-apps", params={"page_size": 2, "page_token": first["next_page_token"]})).json()
    assert [a["id"] for a in first["data"] + rest["data"]] == [github["id"], other_github["id"], hubspot["id"]]
    assert rest["next_page_token"] == ""


async def test_an_app_made_over_grpc_reads_back_over_rest(client):
    stub = client.oauth_apps
    made = await stub.CreateOAuthApp(oauth_app_pb2.CreateOAuthAppRequest(oauth_app=oauth_app_pb2.OAuthClient(
        provider="salesforce", client_id="3MVG9-consumer-key", client_secret="sf-secret", scopes=["api", "refresh_token"],
        authorization_url="https://acme.my.salesforce.com/services/oauth2/authorize",
    )), metadata=client.metadata)

    assert made.oauth_app.client_secret == MASK
    listed = await stub.ListOAuthApps(oauth_app_pb2.ListOAuthAppsRequest(provider="salesforce"), metadata=client.metadata)
    assert [a.id for a in listed.data] == [made.oauth_app.id]
    read = (await client.rest.get(f"/v1/oauth-apps/{made.oauth_app.id}")).json()
    assert read["authorization_url"] == "https://acme.my.salesforce.com/services/oauth2/authorize"
    assert read["scopes"] == ["api", "refresh_token"]


async def test_patch_changes_only_the_fields_sent_and_a_masked_secret_keeps_its_value(client, server):
    app = await create_app(client)

    changed = await client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"scopes": ["gist"], "client_secret": MASK})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["scopes"], changed.json()["client_id"], changed.json()["metadata"]) == (
        ["gist"], GITHUB_APP["client_id"], {"team": "growth"})
    assert (await stored_secret(server, app["id"])) == "gh-app-secret"

    rotated = await client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"client_secret": "gh-rotated"})
    assert rotated.status_code == 200, rotated.text
    assert (await stored_secret(server, app["id"])) == "gh-rotated"

    moved = await client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"provider": "hubspot", "id": "mine"})
    assert refused_fields(moved) == ["oauth_app.id", "oauth_app.provider"]
    emptied = await client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"client_secret": "", "client_id": ""})
    assert refused_fields(emptied) == ["oauth_app.client_id", "oauth_app.client_secret"]
    assert (await stored_secret(server, app["id"])) == "gh-rotated"


async def stored_secret(server: Running, app_id: str) -> str:
    backend = server.server.backend
    return await backend.store.run(lambda: backend.box.decrypt(OAuthApp.get_by_id(app_id).client_secret))


async def test_the_client_secret_is_encrypted_at_rest_and_never_logged(client, server, caplog):
    caplog.set_level(logging.DEBUG)
    app = await create_app(client)
    await client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"client_secret": "gh-rotated"})

    row = await server.server.store.run(lambda: OAuthApp.get_by_id(app["id"]))
    assert "gh-rotated" not in row.client_secret  # Fernet, under the server's key
    assert "gh-app-secret" not in caplog.text and "gh-rotated" not in caplog.text


@pytest.mark.parametrize("body, fields", [
    ({}, ["oauth_app.provider", "oauth_app.client_id", "oauth_app.client_secret"]),
    (GITHUB_APP | {"provider": "myspace"}, ["oauth_app.provider"]),
    (GITHUB_APP | {"scopes": ["repo", "read user", ""]}, ["oauth_app.scopes[1]", "oauth_app.scopes[2]"]),
    (GITHUB_APP | {"token_url": "ftp://github.com/token", "authorization_url": "not a url"},
     ["oauth_app.authorization_url", "oauth_app.token_url"]),
    (GITHUB_APP | {"provider": "custom"}, ["oauth_app.authorization_url", "oauth_app.token_url"]),
    (GITHUB_APP | {"colour": "red"}, ["oauth_app.colour"]),
])
async def test_a_bad_app_is_refused_naming_each_field_and_nothing_is_written(client, server, body, fields):
    before = await table_rows(server)

    response = await client.rest.post("/v1/oauth-apps", json=body)

    assert refused_fields(response) == fields
    assert await table_rows(server) == before


async def test_a_custom_apis_app_names_its_own_urls(client):
    app = await create_app(client, provider="custom", authorization_url="https://auth.acme.example/authorize",
                           token_url="https://auth.acme.example/token")

    assert app["provider"] == "custom"


async def test_another_organisations_app_is_not_found(client, other_client):
    app = await create_app(client)

    assert (await other_client.rest.get(f"/v1/oauth-apps/{app['id']}")).status_code == 404
    assert (await other_client.rest.patch(f"/v1/oauth-apps/{app['id']}", json={"scopes": []})).status_code == 404
    assert (await other_client.rest.delete(f"/v1/oauth-apps/{app['id']}")).status_code == 404
    assert (await other_client.rest.get("/v1/oauth-apps")).json()["data"] == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other_client.oauth_apps.GetOAuthApp(oauth_app_pb2.GetOAuthAppRequest(id=app["id"]),
                                                  metadata=other_client.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# --- Credentials name their app ------------------------------------------------------------


async def test_a_credential_shows_the_app_it_names(client):
    app = await create_app(client)

    created = await github_credential(client, oauth_app_id=app["id"])

    assert created.status_code == 200, created.text
    credential = created.json()
    assert credential["oauth_app_id"] == app["id"]
    assert credential["oauth_app"] == {"id": app["id"], "kind": "custom", "provider": "github",
                                       "client_id": "Iv1.8a61f9b3a7aba766"}
    listed = (await client.rest.get("/v1/credentials")).json()["data"]
    assert listed[0]["oauth_app"] == credential["oauth_app"]
    without = (await github_credential(client)).json()
    assert (without["oauth_app_id"], without["oauth_app"]) == (None, None)


async def test_a_credential_naming_an_unknown_foreign_or_other_providers_app_is_refused(client, other_client, server):
    hubspot_app = await create_app(client, provider="hubspot", client_id="hub-1")
    foreign_app = await create_app(other_client)
    before = await table_rows(server)

    for app_id in ("no-such-app", foreign_app["id"], hubspot_app["id"], "headwater:github"):
        response = await github_credential(client, oauth_app_id=app_id)
        assert refused_fields(response) == ["credential.oauth_app_id"], app_id
    assert "is a hubspot app" in (await github_credential(client, oauth_app_id=hubspot_app["id"])).text
    assert await table_rows(server) == before


async def test_a_syncs_inline_credential_and_a_patch_are_checked_alike(client):
    stream = (await client.rest.post("/v1/streams", json={"name": "s"})).json()
    hubspot_app = await create_app(client, provider="hubspot", client_id="hub-1")

    sync = await client.rest.post("/v1/syncs", json={
        "provider": "github", "stream_id": stream["id"], "collection_ids": ["github:issue"],
        "credential": {"properties": {"kind": "github_token", "token": "ghp_x"}, "oauth_app_id": hubspot_app["id"]},
    })
    assert refused_fields(sync) == ["sync.credential.oauth_app_id"]

    credential = (await github_credential(client)).json()
    patched = await client.rest.patch(f"/v1/credentials/{credential['id']}", json={"oauth_app_id": hubspot_app["id"]})
    assert refused_fields(patched) == ["credential.oauth_app_id"]
    github_app = await create_app(client)
    patched = await client.rest.patch(f"/v1/credentials/{credential['id']}", json={"oauth_app_id": github_app["id"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["oauth_app"]["id"] == github_app["id"]


async def test_deleting_an_app_that_credentials_name_is_refused_naming_them(client):
    app = await create_app(client)
    first = (await github_credential(client, oauth_app_id=app["id"])).json()
    second = (await github_credential(client, oauth_app_id=app["id"])).json()

    refused = await client.rest.delete(f"/v1/oauth-apps/{app['id']}")

    assert refused.status_code == 400
    assert first["id"] in refused.json()["message"] and second["id"] in refused.json()["message"]
    for credential in (first, second):
        await client.rest.delete(f"/v1/credentials/{credential['id']}")
    deleted = await client.rest.delete(f"/v1/oauth-apps/{app['id']}")
    assert deleted.json() == {"id": app["id"], "deleted": True}
    assert (await client.rest.get(f"/v1/oauth-apps/{app['id']}")).status_code == 404


# --- The instance's default apps ---------------------------------------------------------------


INSTANCE_GITHUB = InstanceOAuthApp("github", "Iv1.instance", "instance-secret", ("repo",))


@pytest.fixture
async def instance_server(database_url):
    """A server whose operator configured a default GitHub app (HEADWATER_OAUTH_APPS)."""
    settings = settings_for(database_url, oauth_apps={"github": INSTANCE_GITHUB})
    server = await Server.start(settings)
    try:
        yield Running(server, settings)
    finally:
        await server.stop(grace=1)


async def test_a_credential_may_name_the_instances_default_app_of_its_provider(instance_server):
    from conftest import _client_for

    client = await _client_for(instance_server, "acme")
    async with client.rest:
        created = await github_credential(client, oauth_app_id="headwater:github")
        hubspot = await client.rest.post("/v1/credentials", json={
            "provider": "hubspot", "properties": {"kind": "hubspot_oauth2", "access_token": "x"},
            "oauth_app_id": "headwater:hubspot",
        })
        listed = (await client.rest.get("/v1/oauth-apps")).json()["data"]
    await client.channel.close()

    assert created.status_code == 200, created.text
    assert created.json()["oauth_app"] == {"id": "headwater:github", "kind": "headwater", "provider": "github",
                                           "client_id": "Iv1.instance"}
    assert refused_fields(hubspot) == ["credential.oauth_app_id"]  # no default app for HubSpot
    assert listed == []  # the operator's apps are not the organisation's


async def test_an_instance_app_of_a_provider_the_catalogue_lacks_stops_the_server(database_url):
    from headwater.settings import ConfigError

    settings = settings_for(database_url, oauth_apps={"myspace": InstanceOAuthApp("myspace", "id", "secret")})

    with pytest.raises(ConfigError, match="myspace"):
        await Server.start(settings)


def test_the_instance_default_apps_are_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()

    assert "HEADWATER_OAUTH_APPS" in readme and "headwater:github" in readme


async def test_rest_and_grpc_refuse_an_app_alike(client):
    rest = await client.rest.post("/v1/oauth-apps", json={"provider": "github"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.oauth_apps.CreateOAuthApp(
            oauth_app_pb2.CreateOAuthAppRequest(oauth_app=oauth_app_pb2.OAuthClient(provider="github")),
            metadata=client.metadata,
        )

    assert rest.status_code == 400 and caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == rest.json()["message"]


async def test_an_app_is_refused_without_a_token(server):
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        assert (await anonymous.get("/v1/oauth-apps")).status_code == 401


async def test_an_app_deleted_while_a_credential_names_it_leaves_either_the_app_or_no_credential(client):
    """The delete and the credential race: one of the two must lose, never both win."""
    for _ in range(10):
        app = await create_app(client)
        deleted, created = await asyncio.gather(
            client.rest.delete(f"/v1/oauth-apps/{app['id']}"), github_credential(client, oauth_app_id=app["id"]),
        )
        assert not (deleted.status_code == 200 and created.status_code == 200), (deleted.text, created.text)
        if created.status_code == 200:
            await client.rest.delete(f"/v1/credentials/{created.json()['id']}")


async def test_grpc_updates_the_fields_its_mask_names_and_deletes(client):
    app = await create_app(client)
    stub = client.oauth_apps

    updated = await stub.UpdateOAuthApp(oauth_app_pb2.UpdateOAuthAppRequest(
        id=app["id"], oauth_app=oauth_app_pb2.OAuthClient(scopes=["gist"], client_id="ignored-not-in-mask"),
        update_mask=field_mask_pb2.FieldMask(paths=["scopes"]),
    ), metadata=client.metadata)
    deleted = await stub.DeleteOAuthApp(oauth_app_pb2.DeleteOAuthAppRequest(id=app["id"]), metadata=client.metadata)

    assert (list(updated.oauth_app.scopes), updated.oauth_app.client_id) == (["gist"], GITHUB_APP["client_id"])
    assert deleted.deleted and (await client.rest.get(f"/v1/oauth-apps/{app['id']}")).status_code == 404
