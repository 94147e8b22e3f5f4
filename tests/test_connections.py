"""The REST front's connections, seen from raw sockets: slow heads, idle keep-alives, the cap, and
requests that are not HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import pytest

from conftest import Running, settings_for
from headwater.server import Server

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

REQUEST = b"GET /v1/syncs HTTP/1.1\r\nHost: headwater\r\n\r\n"  # no token: a 401, and the connection kept


@contextlib.asynccontextmanager
async def serving(database_url, **limits):
    settings = settings_for(database_url, **limits)
    server = await Server.start(settings)
    try:
        yield Running(server, settings)
    finally:
        await server.stop(grace=1)


async def connect(running: Running):
    return await asyncio.open_connection("127.0.0.1", running.server.http_port)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: status, headers (lower-case names), body (by Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return int(status_line.split()[1]), headers, body


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (reading and dropping what it sends)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await asyncio.wait_for(reader.read(65536), 10):
        pass
    return loop.time() - started


async def test_a_client_trickling_its_headers_is_answered_408_and_closed_within_the_header_timeout(database_url):
    async with serving(database_url, http_header_timeout=0.5) as running:
        reader, writer = await connect(running)
        writer.write(b"GET /v1/syncs HTTP/1.1\r\n")

        async def trickle():
            for byte in b"X-Slow: 1234567890":
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        try:
            status, headers, body = await read_answer(reader)
            closed = await closed_after(reader)
        finally:
            trickling.cancel()
            writer.close()

    assert status == 408
    assert json.loads(body)["error"] == "Error: the request line and headers did not arrive within 0.5 s"
    assert headers["connection"] == "close"
    assert closed < 1


async def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(database_url):
    async with serving(database_url, http_header_timeout=0.5) as running:
        reader, writer = await connect(running)
        try:
            closed = await closed_after(reader)
        finally:
            writer.close()

    assert 0.4 < closed < 2


async def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout(database_url):
    async with serving(database_url, http_header_timeout=0.3, http_idle_timeout=1.5) as running:
        reader, writer = await connect(running)
        try:
            writer.write(REQUEST)
            first, _, _ = await read_answer(reader)
            await asyncio.sleep(0.6)  # idle for longer than the header timeout: still open
            writer.write(REQUEST)
            second, _, _ = await read_answer(reader)
            closed = await closed_after(reader)
        finally:
            writer.close()

    assert first == second == 401
    assert 1.2 < closed < 3.5


async def test_past_the_connection_cap_a_new_connection_is_answered_503_and_closed(database_url):
    async with serving(database_url, http_max_connections=3) as running:
        kept = [await connect(running) for _ in range(3)]
        for reader, writer in kept:
            writer.write(REQUEST)
            assert (await read_answer(reader))[0] == 401
        reader, writer = await connect(running)
        writer.write(REQUEST)
        status, headers, body = await read_answer(reader)
        closed = await closed_after(reader)
        writer.close()

        kept[0][1].close()  # one of the three goes: a place is free again
        await asyncio.sleep(0.2)
        reader, writer = await connect(running)
        writer.write(REQUEST)
        again, _, _ = await read_answer(reader)
        for _, kept_writer in [*kept, (reader, writer)]:
            kept_writer.close()

    assert status == 503
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert json.loads(body)["message"] == "the server has its 3 connections open; retry shortly"
    assert closed < 2
    assert again == 401


@pytest.mark.parametrize("request_bytes, why", [
    (b"GARBAGE\x00hw_secret_token / HTTP/1.1\r\n\r\n",
     "the request does not begin with an HTTP method (HTTPS sent to an HTTP port, perhaps)"),
    (b"GET /v1/syncs HTTP/1.1\r\nAuthorization: Bearer hw_secret_token\r\nno colon hw_secret_token\r\n\r\n",
     "the request is not valid HTTP/1.x (a malformed header or body framing)"),
    (b"GET /v1/syncs?hw_secret_token HTTP/1.1\r\nX-Long: " + b"x" * 9000 + b"\r\n\r\n",
     "the request line or a header is longer than the server accepts"),
])
async def test_a_request_that_is_not_http_gets_a_json_400_that_never_quotes_it(database_url, caplog, request_bytes, why):
    caplog.set_level(logging.DEBUG)
    async with serving(database_url) as running:
        reader, writer = await connect(running)
        try:
            writer.write(request_bytes)
            status, headers, body = await read_answer(reader)
        finally:
            writer.close()

    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == f"Error: {why}"
    assert b"hw_secret" not in body
    assert "hw_secret" not in caplog.text
