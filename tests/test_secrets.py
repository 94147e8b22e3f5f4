"""Every property that authenticates is a secret, and a query-parameter key never comes back.

Secrets are derived from the catalogue, not listed by hand: the properties a kind's `auth` names
and the OAuth refresh properties (`refresh_token`, `client_secret`, `access_token`) are encrypted
at rest and shown as "***********" for every kind, tokens written back by a refresh included, and
rows stored in the clear by older versions are encrypted when the server starts.

A credential whose auth is a query parameter (`custom_query`) never hands its key back: it is
removed from every URL in the answer's Link, Location and Content-Location headers and JSON body,
over REST and gRPC alike, before the URLs are pointed back at the proxy.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import pytest
from conftest import Running, settings_for
from emulators import serve_on_loopback

from headwater.auth import Auth
from headwater.crypto import SECRET_MASK, SecretBox
from headwater.server import Server
from headwater.store import Credential
from headwater.upstream.catalogue import CatalogueError, ProviderCatalogue
from headwater.upstream.requests import without_query_param
from headwater.v1 import proxy_pb2

REFRESH_PROPERTIES = ("refresh_token", "client_secret", "access_token")


def auth_secrets(auth: dict) -> set[str]:
    """The properties an auth block sends upstream as the credential's proof."""
    if auth["type"] == "basic":
        return {auth["password"]}
    return {auth["property"]} if "property" in auth else set()


def example_properties(kind) -> dict:
    """A credential of `kind` with every property it requires, the refresh ones too, each value unique."""
    # hyphens, not underscores: a value may fill a host label of the provider's base URL (`{shop}`)
    props = {name: f"{kind.name}-{name}-value".replace("_", "-") for name in kind.required}
    for name in ("base_url", "instance_url", kind.base_url_property):
        if name in props:
            props[name] = f"https://{kind.name.replace('_', '-')}.example.com"
    props |= {name: f"{kind.name}-{name}-value" for name in REFRESH_PROPERTIES}
    return {"kind": kind.name, **props}


async def stored_row(running: Running, credential_id: str) -> dict:
    return await running.server.store.run(lambda: Credential.select().where(Credential.id == credential_id).dicts().get())


# --- Every kind: auth and refresh properties are secret -----------------------------------------

async def test_every_kind_hides_the_properties_its_auth_and_refresh_send(server, client):
    catalogue = ProviderCatalogue.default()

    for provider in catalogue.providers.values():
        for kind in provider.credential_kinds.values():
            props = example_properties(kind)
            secret = auth_secrets(kind.auth) | set(REFRESH_PROPERTIES)

            created = await client.rest.post("/v1/credentials", json={"provider": provider.key, "properties": props})

            assert created.status_code == 200, created.text
            shown = created.json()["properties"]
            assert shown == {name: SECRET_MASK if name in secret else value for name, value in props.items()}, kind.name
            row = await stored_row(server, created.json()["id"])
            assert not any(props[name] in json.dumps(row, default=str) for name in secret), kind.name


async def test_a_kind_changed_by_patch_keeps_the_old_kinds_secret_hidden(client):
    created = (await client.rest.post("/v1/credentials", json={"provider": "custom", "properties": {
        "kind": "custom_bearer", "base_url": "https://api.example.com", "token": "tok_KEEP_HIDDEN",
    }})).json()

    patched = await client.rest.patch(f"/v1/credentials/{created['id']}", json={"properties": {
        "kind": "custom_basic", "username": "ann", "password": "pw_HIDDEN",
    }})

    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"] == {
        "kind": "custom_basic", "base_url": "https://api.example.com", "username": "ann",
        "token": SECRET_MASK, "password": SECRET_MASK,
    }


async def test_a_refreshed_token_is_stored_encrypted_whatever_the_kind(server, client, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    created = (await client.rest.post("/v1/credentials", json={"provider": "custom", "properties": {
        "kind": "custom_bearer", "base_url": upstream.base_url, "token": "at-0", "refresh_token": "rt-0",
        "client_id": "app-1", "client_secret": "cs_CUSTOM_SHH", "expires_at": int(time.time()),
        "token_url": f"{upstream.base_url}/oauth/token",
    }})).json()

    response = await client.rest.get(f"/v1/proxy/credential/{created['id']}/protected")

    assert response.status_code == 200, response.text
    assert upstream.requests[-1].header("authorization") == "Bearer at-1"
    shown = (await client.rest.get(f"/v1/credentials/{created['id']}")).json()["properties"]
    assert shown["token"] == shown["refresh_token"] == shown["client_secret"] == SECRET_MASK
    row = json.dumps(await stored_row(server, created["id"]), default=str)
    for value in ("at-0", "at-1", "rt-0", "rt-1", "cs_CUSTOM_SHH"):
        assert value not in row
        assert value not in caplog.text


# --- Rows written in the clear by older versions -------------------------------------------------

async def test_secrets_stored_in_the_clear_by_older_versions_are_encrypted_at_start_up(database_url, upstream):
    settings = settings_for(database_url)
    box = SecretBox(settings.secret_key)
    first = await Server.start(settings)
    try:
        auth = Auth(first.store)
        org = await auth.create_org("acme")
        token = await auth.issue_token("acme")

        def write_as_older_versions_did():
            # Before client_secret (of every OAuth2 kind) and refresh_token (of custom_bearer)
            # were secret, they were stored in the clear beside the masked secrets.
            stripe = Credential.create(org=org.id, provider="stripe", kind="stripe_oauth2", properties={
                "kind": "stripe_oauth2", "secret": SECRET_MASK, "refresh_token": SECRET_MASK,
                "client_id": "ca_1", "client_secret": "cs_OLD_PLAIN", "expires_at": int(time.time()),
                "base_url": upstream.base_url, "token_url": f"{upstream.base_url}/oauth/token",
            }, secrets=box.encrypt(json.dumps({"secret": "sk_old", "refresh_token": "rt-0"})))
            custom = Credential.create(org=org.id, provider="custom", kind="custom_bearer", properties={
                "kind": "custom_bearer", "base_url": upstream.base_url, "token": SECRET_MASK,
                "refresh_token": "rt_OLD_PLAIN",
            }, secrets=box.encrypt(json.dumps({"token": "tok_old"})))
            return stripe.id, custom.id

        stripe_id, custom_id = await first.store.run(write_as_older_versions_did)
    finally:
        await first.stop(grace=1)

    second = Running(await Server.start(settings), settings)
    try:
        async with httpx.AsyncClient(base_url=second.http_url, headers={"authorization": f"Bearer {token}"}) as rest:
            shown = {cid: (await rest.get(f"/v1/credentials/{cid}")).json()["properties"] for cid in (stripe_id, custom_id)}
            # The secret moved, it was not lost: the refresh still sends it.
            proxied = await rest.get(f"/v1/proxy/credential/{stripe_id}/protected")
        rows = {cid: await stored_row(second, cid) for cid in (stripe_id, custom_id)}
    finally:
        await second.server.stop(grace=1)

    assert shown[stripe_id]["client_secret"] == shown[custom_id]["refresh_token"] == SECRET_MASK
    assert "cs_OLD_PLAIN" not in json.dumps(rows[stripe_id]["properties"])
    assert "rt_OLD_PLAIN" not in json.dumps(rows[custom_id]["properties"])
    assert json.loads(box.decrypt(rows[custom_id]["secrets"])) == {"token": "tok_old", "refresh_token": "rt_OLD_PLAIN"}
    assert proxied.status_code == 200, proxied.text
    refresh = next(r for r in upstream.requests if r.path == "/oauth/token")
    assert dict(parse_qsl(refresh.body.decode()))["client_secret"] == "cs_OLD_PLAIN"


# --- The catalogue: derived secrets, malformed auth refused at start-up ---------------------------

def catalogue_with_kind(kind: dict) -> dict:
    return {"providers": {"acme": {
        "base_url": "https://api.acme.example", "default_rate_limit": {"allowed_requests": 1, "interval": 1},
        "credential_kinds": {"acme_key": kind},
    }}}


def test_a_kinds_auth_and_refresh_properties_are_secret_without_being_listed():
    catalogue = ProviderCatalogue.from_dict(catalogue_with_kind(
        {"required": ["key"], "auth": {"type": "header", "name": "X-Key", "property": "key"}, "secret": ["pin"]},
    ))

    kind = catalogue.provider("acme").credential_kinds["acme_key"]

    assert kind.secret == {"key", "pin", *REFRESH_PROPERTIES}


@pytest.mark.parametrize("auth, why", [
    ({"type": "query", "property": "key"}, "`name` or `name_property`"),
    ({"type": "bearer"}, "`property`"),
    ({"type": "basic", "username": "user"}, "`password`"),
    ({"type": "oauth", "property": "key"}, "type"),
    ({"type": "header", "name": "X-Key", "property": "key", "value": "k"}, "value"),
    ({"type": "bearer", "property": ""}, "`property`"),
])
def test_a_kind_with_malformed_auth_is_refused_naming_the_entry(auth, why):
    with pytest.raises(CatalogueError) as refused:
        ProviderCatalogue.from_dict(catalogue_with_kind({"required": ["key"], "auth": auth}))

    assert "acme.credential_kinds.acme_key.auth" in str(refused.value)
    assert why in str(refused.value)


# --- A query-parameter key never comes back ------------------------------------------------------

# A key that percent-encoding spells more than one way (a space, "+", "/", "=").
QUERY_KEY = "k y+Z/=="


async def echoing_api(scope, receive, send):
    """An API that echoes its own URL, query and all, as many do in links and bodies: absolute in
    Link, relative in Location, re-encoded and under another name of its host in Content-Location,
    and in a JSON body (once with "&" escaped as "\\u0026", as Go's encoder writes it)."""
    host, port = scope["server"]
    query = scope["query_string"].decode()
    own = f"http://{host}:{port}{scope['path']}?{query}"
    reencoded = f"http://localhost:{port}{scope['path']}?{urlencode(parse_qsl(query))}"
    body = '{"self": "%s", "next": "%s"}' % (own, own.replace("&", "\\u0026"))
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"),
        (b"link", f'<{own}>; rel="self"'.encode()),
        (b"location", f"{scope['path']}?{query}".encode()),
        (b"content-location", reencoded.encode()),
    ]})
    await send({"type": "http.response.body", "body": body.encode()})


@pytest.fixture
async def echoing_upstream():
    port, server, task = await serve_on_loopback(echoing_api)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def query_key_credential(client, base_url: str) -> str:
    created = await client.rest.post("/v1/credentials", json={"provider": "custom", "properties": {
        "kind": "custom_query", "base_url": base_url, "query_param": "api_key", "api_key": QUERY_KEY,
    }})
    assert created.status_code == 200, created.text
    return created.json()["id"]


def key_spellings_in(text: str) -> list[str]:
    spellings = (QUERY_KEY, quote(QUERY_KEY, safe=""), quote(QUERY_KEY, safe="").replace("%20", "+"))
    return [spelling for spelling in spellings if spelling in text]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_query_key_never_comes_back_in_links_or_bodies_over_rest(client, echoing_upstream, caplog):
    caplog.set_level(logging.DEBUG)
    credential_id = await query_key_credential(client, echoing_upstream)
    route = f"{client.rest.base_url}/v1/proxy/credential/{credential_id}/"

    plain = await client.rest.get(f"/v1/proxy/credential/{credential_id}/items", params={"page": "1"})
    rewritten = await client.rest.get(f"/v1/proxy/credential/{credential_id}/items", params={"page": "1"},
                                      headers={"x-headwater-rewrite-body-urls": "true"})

    assert plain.status_code == rewritten.status_code == 200, plain.text
    for answer in (plain, rewritten):
        everything = json.dumps(dict(answer.headers)) + answer.text
        assert "api_key" not in everything and not key_spellings_in(everything)
    assert plain.headers["link"] == f'<{route}items?page=1>; rel="self"'
    assert plain.headers["location"] == "/items?page=1"
    assert plain.headers["content-location"] == f"{echoing_upstream.replace('127.0.0.1', 'localhost')}/items?page=1"
    assert plain.json() == {"self": f"{echoing_upstream}/items?page=1", "next": f"{echoing_upstream}/items?page=1"}
    assert rewritten.json() == {"self": f"{route}items?page=1", "next": f"{route}items?page=1"}
    assert not key_spellings_in(caplog.text)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_query_key_never_comes_back_over_grpc_with_or_without_link_base(client, echoing_upstream):
    credential_id = await query_key_credential(client, echoing_upstream)

    def forward(**extra):
        return client.proxy.Forward(proxy_pb2.ForwardRequest(
            credential_id=credential_id, method="GET", path="items", query="page=1", **extra,
        ), metadata=client.metadata)

    linked = await forward(link_base="https://app.example/hw/", rewrite_body_urls=True)
    unlinked = await forward()

    for answer in (linked, unlinked):
        assert answer.status == 200
        everything = json.dumps([(h.name, h.value) for h in answer.headers]) + answer.body.decode()
        assert "api_key" not in everything and not key_spellings_in(everything)
    assert dict((h.name, h.value) for h in linked.headers)["link"] == '<https://app.example/hw/items?page=1>; rel="self"'
    assert json.loads(linked.body)["self"] == "https://app.example/hw/items?page=1"
    assert dict((h.name, h.value) for h in unlinked.headers)["link"] == f'<{echoing_upstream}/items?page=1>; rel="self"'


@pytest.mark.parametrize("text, expected", [
    ("https://api.x.com/a?key=K&page=2", "https://api.x.com/a?page=2"),
    ("https://api.x.com/a?page=2&key=K", "https://api.x.com/a?page=2"),
    ("https://api.x.com/a?page=2&key=K&size=9", "https://api.x.com/a?page=2&size=9"),
    ("https://api.x.com/a?key=K#top", "https://api.x.com/a#top"),
    ("/a?key=K&key=K&page=2", "/a?page=2"),
    ('{"next": "/a?page=2\\u0026key=K", "prev": "/a?key=K\\u0026page=1"}', '{"next": "/a?page=2", "prev": "/a?page=1"}'),
    ("<https://api.x.com/a?key=K>; rel=next, <https://cdn.x.com/b?key=K&v=1>", "<https://api.x.com/a>; rel=next, <https://cdn.x.com/b?v=1>"),
    ("https://api.x.com/a?key=Kx&monkey=K&key=other", "https://api.x.com/a?key=Kx&monkey=K&key=other"),
])
def test_only_the_credentials_own_key_leaves_a_url_and_the_rest_stays_as_it_was(text, expected):
    assert without_query_param(text, "key", "K") == expected
