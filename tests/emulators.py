"""Upstream emulators: real HTTP servers on loopback that record what reaches them.

`RecordingUpstream` answers by path, so one server plays every upstream behaviour a test needs:

    /echo/...             200, JSON of what arrived (method, path, query, headers, body)
    /slow?seconds=S       answers after S seconds
    /status/CODE          that status; ?retry_after=N adds Retry-After (?retry_after_date=N: as the
                          HTTP date N s from now); ?times=K only the first K calls (later ones 200),
                          per path+query
    /binary               256 bytes 0..255, application/octet-stream
    /redirect             302 to {base}/echo/after-redirect
    /paged?page=N         JSON page with a Link header of absolute "next" and "last" URLs
    /text                 text/plain
    /oauth/token          OAuth2 refresh: POST grant_type=refresh_token with the current refresh
                          token gets a new access and refresh token (?delay=S answers slowly)
    /protected            200 only with the access token issued last (else 401)
    anything else         404

`reset_server()` starts a TCP server that accepts and closes at once (a connection reset).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import uvicorn


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic)
    raw_path: str = ""  # the path as it came on the request line, percent-encoding and all

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name.lower()), None)


async def read_request(scope, receive) -> Received:
    """The whole request of an ASGI http scope (its body read to the end)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    return Received(scope["method"], scope["path"], scope["query_string"].decode(), headers, body,
                    raw_path=(scope.get("raw_path") or b"").decode("latin-1"))


@dataclass
class RecordingUpstream:
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _calls: dict = field(default_factory=lambda: defaultdict(int))
    # The OAuth2 state: what /oauth/token accepts and /protected wants.
    refresh_token: str = "rt-0"
    access_token: str = "at-0"
    token_refreshes: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        received = await read_request(scope, receive)
        self.requests.append(received)
        path, query, headers, body = received.path, received.query, received.headers, received.body
        status, out_headers, out_body = await self._answer(scope["method"], path, query, headers, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in out_headers]})
        await send({"type": "http.response.body", "body": out_body})

    async def _answer(self, method, path, query, headers, body):
        params = {k: v[0] for k, v in parse_qs(query).items()}
        json_type = ("content-type", "application/json")
        if path.startswith("/echo"):
            echoed = {"method": method, "path": path, "query": query, "headers": headers,
                      "body": base64.b64encode(body).decode()}
            return 200, [json_type], json.dumps(echoed).encode()
        if path == "/slow":
            await asyncio.sleep(float(params.get("seconds", "5")))
            return 200, [json_type], b'{"slow": true}'
        if path.startswith("/status/"):
            key = (path, query)
            self._calls[key] += 1
            if "times" in params and self._calls[key] > int(params["times"]):
                return 200, [json_type], json.dumps({"ok": True, "calls": self._calls[key]}).encode()
            extra = [("retry-after", params["retry_after"])] if "retry_after" in params else []
            if "retry_after_date" in params:  # as an HTTP date, that many seconds from now
                at = time.time() + float(params["retry_after_date"])
                extra.append(("retry-after", email.utils.formatdate(at, usegmt=True)))
            return int(path.rsplit("/", 1)[1]), [json_type, *extra], b'{"error": "as you asked"}'
        if path == "/binary":
            return 200, [("content-type", "application/octet-stream")], bytes(range(256))
        if path == "/redirect":
            return 302, [("location", f"{self.base_url}/echo/after-redirect")], b""
        if path == "/paged":
            page = int(params.get("page", "1"))
            link = (f'<{self.base_url}/paged?page={page + 1}>; rel="next", '
                    f'<{self.base_url}/paged?page=3>; rel="last"')
            data = {"page": page, "next_url": f"{self.base_url}/paged?page={page + 1}"}
            return 200, [json_type, ("link", link)], json.dumps(data).encode()
        if path == "/oauth/token":
            await asyncio.sleep(float(params.get("delay", "0")))
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
                return 400, [json_type], b'{"error": "invalid_grant"}'
            self.token_refreshes += 1
            self.access_token = f"at-{self.token_refreshes}"
            self.refresh_token = f"rt-{self.token_refreshes}"
            answer = {"access_token": self.access_token, "refresh_token": self.refresh_token,
                      "expires_in": 3600, "token_type": "bearer"}
            return 200, [json_type], json.dumps(answer).encode()
        if path == "/protected":
            sent = dict(headers).get("authorization")
            if sent != f"Bearer {self.access_token}":
                return 401, [json_type], b'{"error": "invalid_token"}'
            return 200, [json_type], b'{"ok": true}'
        if path == "/text":
            return 200, [("content-type", "text/plain")], b"plain words"
        return 404, [json_type], b'{"error": "no such path"}'


async def serve_on_loopback(app) -> tuple[int, uvicorn.Server, asyncio.Task]:
    """Serves an ASGI app on 127.0.0.1 and a free port, in this loop; stop with server.should_exit."""
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on those
    # (without it every answer written in two parts waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    # Stopping waits for answers in flight (a /slow one, a fake's delayed one) at most 2 s, then
    # cancels them: uvicorn would otherwise wait for them however long they take.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    server.install_signal_handlers = lambda: None
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return sock.getsockname()[1], server, task


async def serve_until_stopped(start: Callable[[], Awaitable[list[str]]], ready: Callable[[list[str]], None]) -> None:
    """Runs `start` (it starts servers and answers the shell lines that say where they are), calls
    `ready(lines)`, and serves until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    ready(await start())
    await stop.wait()


def serve_in_background(serve: Callable[[Callable[[list[str]], None]], Awaitable[None]], pid_variable: str) -> int:
    """Runs `serve(ready)` in a forked process and returns once it called `ready(lines)`: prints
    those lines and `export PID_VARIABLE=<its pid>`, for `eval "$(...)"` in a shell. Exit status."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the server: it tells the parent when it listens, and keeps nothing of its stdout
        os.close(read_end)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # `$(...)` ends with the parent

        def ready(lines):
            with os.fdopen(write_end, "w") as parent:
                parent.write("\n".join(lines) + "\n")

        asyncio.run(serve(ready))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as child_says:
        lines = child_says.read()
    if not lines:
        print(f"{sys.argv[0]}: the background server did not start (see above)", file=sys.stderr)
        return 1
    print(lines + f"export {pid_variable}={child}", flush=True)
    return 0


async def start_upstream() -> tuple[RecordingUpstream, uvicorn.Server, asyncio.Task]:
    upstream = RecordingUpstream()
    upstream.port, server, task = await serve_on_loopback(upstream)
    return upstream, server, task


async def reset_server() -> tuple[int, asyncio.base_events.Server]:
    """A server that resets every connection as soon as the request arrives."""

    async def handle(reader, writer):
        await reader.read(1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1], server
