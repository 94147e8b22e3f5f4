"""The `headwater` command as operators run it: organisations and API tokens listed and revoked.

Each test runs the CLI as a subprocess against the database of a running server (SQLite file or
PostgreSQL), as an operator would beside `headwater serve`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
import pytest

from headwater.auth import Auth
from headwater.server import Server
from headwater.store import ApiToken


async def headwater(running, *args: str) -> tuple[int, str, str]:
    """Runs `headwater ARGS` on the server's database; (exit status, stdout, stderr)."""
    env = {
        "HEADWATER_DATABASE_URL": running.settings.database_url,
        "HEADWATER_SECRET_KEY": running.settings.secret_key.decode(),
        "PATH": "/usr/bin:/bin",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headwater", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def listed_tokens(running, *args: str) -> list[dict]:
    status, out, err = await headwater(running, "tokens", "list", "--json", *args)
    assert status == 0, err
    return json.loads(out)


async def test_orgs_list_shows_each_organisation_and_how_many_tokens_it_has(server, client, other_client):
    await Auth(server.server.store).issue_token("globex", "ci")

    status, out, err = await headwater(server, "orgs", "list")

    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "ID", "CREATED", "TOKENS"]
    assert [(row.split()[0], row.split()[-1]) for row in rows] == [("acme", "1"), ("globex", "2")]


async def test_tokens_list_shows_names_times_and_last_use_but_never_the_token(server, client, other_client):
    second = await Auth(server.server.store).issue_token("acme", "ci")
    assert (await client.rest.get("/v1/streams")).status_code == 200  # acme's first token, used once

    status, table, err = await headwater(server, "tokens", "list")
    everything = await listed_tokens(server)
    acme = await listed_tokens(server, "--org", "acme")

    assert status == 0, err
    assert table.splitlines()[0].split() == ["ID", "NAME", "ORGANISATION", "CREATED", "LAST", "USED"]
    assert [(t["org"], t["name"]) for t in everything] == [("acme", ""), ("globex", ""), ("acme", "ci")]
    assert [t["name"] for t in acme] == ["", "ci"]
    used, unused = acme
    assert set(used) == {"id", "name", "org", "created_at", "last_used_at"}
    assert used["created_at"] <= used["last_used_at"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert unused["last_used_at"] is None
    hashes = await server.server.store.run(lambda: [t.token_hash for t in ApiToken.select()])
    for secret in (client.token, other_client.token, second, *hashes):
        assert secret not in table and secret not in json.dumps(everything)


async def test_last_use_is_written_at_most_once_a_minute_not_on_every_request(server, client):
    assert (await client.rest.get("/v1/streams")).status_code == 200
    (first,) = await listed_tokens(server)
    # A second server has nothing cached: it looks the token up again, and leaves last use as it is.
    replica = await Server.start(server.settings)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{replica.http_port}") as other_front:
            again = await other_front.get("/v1/streams", headers={"authorization": f"Bearer {client.token}"})
    finally:
        await replica.stop(grace=1)

    assert again.status_code == 200
    assert (await listed_tokens(server))[0]["last_used_at"] == first["last_used_at"]


async def test_a_revoked_token_is_refused_by_a_running_server_within_two_seconds(server, client):
    other = await Auth(server.server.store).issue_token("acme", "keep")
    assert (await client.rest.get("/v1/streams")).status_code == 200  # now in the server's cache
    revoked_id = next(t["id"] for t in await listed_tokens(server) if t["name"] == "")

    status, out, err = await headwater(server, "tokens", "revoke", revoked_id)
    revoked_at = time.monotonic()
    while (await client.rest.get("/v1/streams")).status_code != 401:
        assert time.monotonic() - revoked_at < Auth.CACHE_SECONDS + 0.5, "the revoked token still works"
        await asyncio.sleep(0.1)

    assert status == 0, err
    assert revoked_id in out
    assert [t["name"] for t in await listed_tokens(server)] == ["keep"]
    kept = await client.rest.get("/v1/streams", headers={"authorization": f"Bearer {other}"})
    assert kept.status_code == 200


async def test_the_process_that_revokes_a_token_refuses_it_at_once(server, client):
    auth = server.server.backend.auth
    assert (await client.rest.get("/v1/streams")).status_code == 200  # now in the server's cache
    (token,) = await listed_tokens(server)

    await auth.revoke_token(token["id"])

    assert (await client.rest.get("/v1/streams")).status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tokens", "revoke", "no-such-id"], "no API token with id 'no-such-id'"),
        (["tokens", "list", "--org", "initech"], "no organisation named 'initech'"),
    ],
)
async def test_unknown_names_and_ids_fail_saying_which(server, client, args, message):
    status, out, err = await headwater(server, *args)

    assert status == 2
    assert message in err and out == ""
    assert len(await listed_tokens(server)) == 1


# --- the console's lists, over REST ------------------------------------------------------------------


async def listed(running, client, what: str, *args: str) -> tuple[int, str, str]:
    """`headwater WHAT list` against the running server's REST front, with the client's token."""
    return await headwater(running, what, "list", "--url", running.http_url, "--token", client.token, *args)


async def test_syncs_credentials_and_consumers_list_the_consoles_columns_for_the_tokens_organisation(
        server, client, other_client):
    from test_consumers import make_consumer, make_sync, next_batch, write

    from headwater.store.records import Change

    sync = await make_sync(client, collections=("stripe:customer",))
    await client.rest.patch(f"/v1/syncs/{sync['id']}", json={"name": "Choam"})
    consumer = await make_consumer(client, name="orders", filters=[{"sync_id": sync["id"]}])
    await write(server, sync["id"], "stripe:customer", Change("cus_1", {}), Change("cus_2", {}))
    await next_batch(client, consumer["id"])  # one delivered, waiting for its ack
    theirs = await make_sync(other_client)

    outputs = {what: await listed(server, client, what) for what in ("syncs", "credentials", "consumers")}
    as_json = {what: await listed(server, client, what, "--json") for what in ("syncs", "credentials", "consumers")}

    for status, out, err in [*outputs.values(), *as_json.values()]:
        assert status == 0, err
        assert theirs["id"] not in out and theirs["credential_id"] not in out
        assert client.token not in out
    headings = {what: out.splitlines()[0].split("  ") for what, (_, out, _) in outputs.items()}
    assert [h.strip() for h in headings["syncs"] if h] == [
        "ID", "NAME", "PROVIDER", "STATUS", "HEALTH", "BACKFILL", "RECORDS", "LAST PASS"]
    assert [h.strip() for h in headings["consumers"] if h] == [
        "ID", "NAME", "KIND", "STREAM", "PENDING", "ACK PENDING", "PARKED"]
    assert [h.strip() for h in headings["credentials"] if h] == [
        "ID", "PROVIDER", "NAME", "EXTERNAL ID", "HEALTH", "BUDGET USED"]
    (synced,) = json.loads(as_json["syncs"][1])
    assert synced == {"id": sync["id"], "name": "Choam", "provider": "stripe", "status": "active", "health": "healthy",
                      "backfill": "0/1 done", "records_synced": 0, "last_synced_at": None}
    (credential,) = json.loads(as_json["credentials"][1])
    assert credential["id"] == sync["credential_id"] and credential["budget"] == "0/100 per 60 s"
    (queued,) = json.loads(as_json["consumers"][1])
    assert queued == {"id": consumer["id"], "name": "orders", "kind": "pull", "stream_id": sync["stream_id"],
                      "num_pending": 1, "num_ack_pending": 1, "num_parked": 0}


async def test_the_lists_need_a_token_and_say_when_it_is_refused(server, client):
    without = await headwater(server, "syncs", "list", "--url", server.http_url)
    refused = await headwater(server, "consumers", "list", "--url", server.http_url, "--token", "hw_wrong")

    assert without[0] == 2 and "syncs list needs --token or $HEADWATER_TOKEN" in without[2]
    assert refused[0] == 1 and "the API token is not valid" in refused[2]
